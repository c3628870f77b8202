//! Docker's tarsum v1, as nixpkgs' Go `tarsum` computes it (`NewTarSum(stdin, true, Version1)`).
//!
//! Input: a tar stream, read with Go `archive/tar` semantics ([`dockertools_common::tar::reader`]).
//! Output: `tarsum.v1+sha256:<hex>`.
//! Each entry is hashed as `name<name>mode<mode>uid<uid>gid<gid>size<size>typeflag<t>linkname<l>`
//! `unamegnamedevmajor<major>devminor<minor>` followed by its `SCHILY.xattr` records sorted by key
//! (empty values included, as moby does since v25) and its data; the final digest is SHA-256
//! over the hex entry sums in the order Go's `sort.Sort` leaves them: by sum, and entries with
//! the same cleaned name by position, which is no total order, so the private `gosort` module
//! repeats Go's sort step for step.
//! Deterministic: a pure function of the input bytes. Memory grows with the number of entries
//! (one name and one sum each), never with file sizes.
//!
//! [`TarSum`] is also fed directly by writers (layer-packer) that know each entry's header,
//! so the sum comes out of the same pass that writes the tar.
//!
//! tidy: lookup only (a hash set finds repeated names; nothing iterates it).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use dockertools_common::hash::hex;
use dockertools_common::tar::reader::{ReadError, Reader};
use sha2::{Digest, Sha256};

mod gosort;

/// Errors of the tarsum computation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The archive could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A hashing thread stopped (a bug; never silently a wrong sum).
    #[error("internal error: a hashing thread stopped")]
    Worker,
    /// An entry Go's tar writer refuses to re-encode (tarsum re-encodes every entry).
    #[error("entry {index} at byte offset {offset} ({name}): header cannot be re-encoded (for example a regular file whose name ends in '/')")]
    Unencodable {
        /// Entry index.
        index: u64,
        /// Byte offset of the entry.
        offset: u64,
        /// Entry name, lossily shown.
        name: String,
    },
}

/// The header fields tarsum v1 hashes, as Go's reader returns them.
#[derive(Clone, Debug, Default)]
pub struct EntryHeader<'a> {
    /// Name.
    pub name: &'a [u8],
    /// Whole mode field (file-type bits included when the archive has them).
    pub mode: i64,
    /// Owner id.
    pub uid: i64,
    /// Group id.
    pub gid: i64,
    /// Size field.
    pub size: i64,
    /// Typeflag (NUL already resolved to `0` or `5`).
    pub typeflag: u8,
    /// Link target.
    pub linkname: &'a [u8],
    /// Device major.
    pub devmajor: i64,
    /// Device minor.
    pub devminor: i64,
    /// `SCHILY.xattr` records, key without the prefix.
    pub xattrs: Option<&'a BTreeMap<Vec<u8>, Vec<u8>>>,
}

/// The hash of one entry being fed its data.
pub struct EntrySum {
    hasher: Sha256,
    cleaned: Vec<u8>,
}

impl EntrySum {
    /// Feeds entry data.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }
}

/// Collects entry sums and produces the archive's tarsum.
#[derive(Default)]
pub struct TarSum {
    /// (cleaned name, hex sum) in archive order.
    sums: Vec<(Vec<u8>, [u8; 64])>,
}

fn push_num(buf: &mut Vec<u8>, key: &[u8], n: i64) {
    buf.extend_from_slice(key);
    buf.extend_from_slice(n.to_string().as_bytes());
}

/// Go's `path.Join(".", path.Join("/", name))`: the name as tarsum compares duplicates.
pub fn clean_name(name: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return b".".to_vec();
    }
    parts.join(&b"/"[..])
}

impl TarSum {
    /// An empty tarsum.
    pub fn new() -> Self {
        TarSum::default()
    }

    /// Starts the sum of one entry: hashes its header fields.
    pub fn begin(&self, h: &EntryHeader<'_>) -> EntrySum {
        let mut buf = Vec::with_capacity(256 + h.name.len() + h.linkname.len());
        buf.extend_from_slice(b"name");
        buf.extend_from_slice(h.name);
        push_num(&mut buf, b"mode", h.mode);
        push_num(&mut buf, b"uid", h.uid);
        push_num(&mut buf, b"gid", h.gid);
        push_num(&mut buf, b"size", h.size);
        buf.extend_from_slice(b"typeflag");
        buf.push(h.typeflag);
        buf.extend_from_slice(b"linkname");
        buf.extend_from_slice(h.linkname);
        // Owner names are hashed with empty values (compatibility with Go before 1.10).
        buf.extend_from_slice(b"unamegname");
        push_num(&mut buf, b"devmajor", h.devmajor);
        push_num(&mut buf, b"devminor", h.devminor);
        if let Some(x) = h.xattrs {
            for (k, v) in x {
                buf.extend_from_slice(k);
                buf.extend_from_slice(v);
            }
        }
        let mut hasher = Sha256::new();
        hasher.update(&buf);
        EntrySum {
            hasher,
            cleaned: clean_name(h.name),
        }
    }

    /// Finishes one entry's sum and records it.
    pub fn end(&mut self, e: EntrySum) {
        let digest = e.hasher.finalize();
        let mut hexsum = [0u8; 64];
        hexsum.copy_from_slice(hex(&digest).as_bytes());
        self.sums.push((e.cleaned, hexsum));
    }

    /// Number of entries summed so far.
    pub fn len(&self) -> usize {
        self.sums.len()
    }

    /// True when no entry was summed.
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// The final `tarsum.v1+sha256:<hex>` string.
    pub fn finish(self) -> String {
        let order = sorted_order(&self.sums);
        let mut h = Sha256::new();
        for i in order {
            h.update(self.sums[i].1);
        }
        format!("tarsum.v1+sha256:{}", hex(&h.finalize()))
    }
}

/// The entries as Docker's `SortBySums` sees them: positions in archive order, permuted by
/// the sort.
struct BySum<'a> {
    sums: &'a [(Vec<u8>, [u8; 64])],
    order: Vec<usize>,
    /// Whether some cleaned name repeats; only then do equal names compare by position.
    dups: bool,
}

impl gosort::SortData for BySum<'_> {
    fn len(&self) -> usize {
        self.order.len()
    }

    fn less(&self, i: usize, j: usize) -> bool {
        let (x, y) = (self.order[i], self.order[j]);
        let (a, b) = (&self.sums[x], &self.sums[y]);
        if self.dups && a.0 == b.0 {
            x < y
        } else {
            a.1 < b.1
        }
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.order.swap(i, j);
    }
}

/// The order in which Docker's `SortBySums` leaves the entries.
/// With a repeated name its comparison is not a total order, so the result is whatever Go's
/// `sort.Sort` makes of it: [`gosort`] repeats Go's steps exactly.
fn sorted_order(sums: &[(Vec<u8>, [u8; 64])]) -> Vec<usize> {
    let mut seen = HashSet::with_capacity(sums.len());
    let dups = sums.iter().any(|(name, _)| !seen.insert(name.as_slice()));
    let mut data = BySum {
        sums,
        order: (0..sums.len()).collect(),
        dups,
    };
    gosort::sort(&mut data);
    data.order
}

/// Computes the tarsum of the tar stream `input`, hashing entries on all cores.
pub fn tarsum_of<R: Read>(input: R) -> Result<String, Error> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    tarsum_with_threads(input, threads)
}

fn check_entry(e: &dockertools_common::tar::reader::Entry) -> Result<(), Error> {
    if e.writer_rejects() {
        return Err(Error::Unencodable {
            index: e.index,
            offset: e.offset,
            name: String::from_utf8_lossy(&e.name).into_owned(),
        });
    }
    Ok(())
}

fn entry_header(e: &dockertools_common::tar::reader::Entry) -> EntryHeader<'_> {
    EntryHeader {
        name: &e.name,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        size: e.size,
        typeflag: e.typeflag,
        linkname: &e.linkname,
        devmajor: e.devmajor,
        devminor: e.devminor,
        xattrs: Some(&e.xattrs),
    }
}

/// Size of the data chunks handed to hashing threads.
const CHUNK: usize = 256 * 1024;
/// Small entries are sent to the hashers in batches of about this many bytes.
const BATCH_BYTES: usize = 1 << 20;
/// ... or of this many entries.
const BATCH_ENTRIES: usize = 512;

enum Msg {
    /// Whole small entries: index, header sum, data.
    Batch(Vec<(usize, EntrySum, Vec<u8>)>),
    /// A large entry streamed in chunks.
    Start(usize, EntrySum),
    Data(Vec<u8>),
    End,
}

type Finished = Vec<(usize, Vec<u8>, [u8; 64])>;

fn finish_sum(index: usize, sum: EntrySum, done: &mut Finished) {
    let digest = sum.hasher.finalize();
    let mut hexsum = [0u8; 64];
    hexsum.copy_from_slice(hex(&digest).as_bytes());
    done.push((index, sum.cleaned, hexsum));
}

/// Computes the tarsum with `threads` hashing threads. The reading thread parses the archive;
/// small entries go to the least busy hasher in batches, large ones stream to one hasher in
/// 256 KiB chunks, through bounded channels, so memory stays bounded whatever the entry sizes.
/// The result does not depend on `threads`.
pub fn tarsum_with_threads<R: Read>(input: R, threads: usize) -> Result<String, Error> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::sync::Arc;

    let mut reader = Reader::new(input);
    let ts = TarSum::new();
    if threads <= 1 {
        let mut ts = ts;
        let mut buf = vec![0u8; CHUNK];
        while let Some(e) = reader.next_entry()? {
            check_entry(&e)?;
            let mut sum = ts.begin(&entry_header(&e));
            loop {
                let n = reader.read_data(&mut buf)?;
                if n == 0 {
                    break;
                }
                sum.update(&buf[..n]);
            }
            ts.end(sum);
        }
        return Ok(ts.finish());
    }

    let pending: Arc<Vec<AtomicUsize>> =
        Arc::new((0..threads).map(|_| AtomicUsize::new(0)).collect());
    let mut senders = Vec::with_capacity(threads);
    let mut workers = Vec::with_capacity(threads);
    for w in 0..threads {
        let (tx, rx) = mpsc::sync_channel::<Msg>(4);
        senders.push(tx);
        let pending = pending.clone();
        workers.push(std::thread::spawn(move || {
            let mut done: Finished = Vec::new();
            let mut current: Option<(usize, EntrySum)> = None;
            for msg in rx {
                match msg {
                    Msg::Batch(jobs) => {
                        let mut bytes = 0;
                        for (index, mut sum, data) in jobs {
                            sum.update(&data);
                            bytes += data.len() + 1;
                            finish_sum(index, sum, &mut done);
                        }
                        pending[w].fetch_sub(bytes, Ordering::Relaxed);
                    }
                    Msg::Start(index, sum) => current = Some((index, sum)),
                    Msg::Data(buf) => {
                        if let Some((_, sum)) = current.as_mut() {
                            sum.update(&buf);
                        }
                        pending[w].fetch_sub(buf.len(), Ordering::Relaxed);
                    }
                    Msg::End => {
                        if let Some((index, sum)) = current.take() {
                            finish_sum(index, sum, &mut done);
                        }
                    }
                }
            }
            done
        }));
    }
    let least_busy = || {
        (0..threads)
            .min_by_key(|&i| pending[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    };
    let result = (|| -> Result<(), Error> {
        let send = |w: usize, m: Msg| senders[w].send(m).map_err(|_| Error::Worker);
        let mut batch: Vec<(usize, EntrySum, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0usize;
        let flush = |batch: &mut Vec<(usize, EntrySum, Vec<u8>)>,
                     batch_bytes: &mut usize|
         -> Result<(), Error> {
            if batch.is_empty() {
                return Ok(());
            }
            let w = least_busy();
            pending[w].fetch_add(*batch_bytes, Ordering::Relaxed);
            *batch_bytes = 0;
            send(w, Msg::Batch(std::mem::take(batch)))
        };
        let mut index = 0usize;
        while let Some(e) = reader.next_entry()? {
            check_entry(&e)?;
            let sum = ts.begin(&entry_header(&e));
            let size = usize::try_from(e.size.max(0)).unwrap_or(usize::MAX);
            if size <= CHUNK {
                let data = reader.read_to_vec(CHUNK as u64)?;
                batch_bytes += data.len() + 1;
                batch.push((index, sum, data));
                if batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_ENTRIES {
                    flush(&mut batch, &mut batch_bytes)?;
                }
            } else {
                flush(&mut batch, &mut batch_bytes)?;
                let w = least_busy();
                send(w, Msg::Start(index, sum))?;
                loop {
                    let mut buf = vec![0u8; CHUNK];
                    let mut filled = 0;
                    while filled < CHUNK {
                        let n = reader.read_data(&mut buf[filled..])?;
                        if n == 0 {
                            break;
                        }
                        filled += n;
                    }
                    if filled == 0 {
                        break;
                    }
                    buf.truncate(filled);
                    pending[w].fetch_add(filled, Ordering::Relaxed);
                    send(w, Msg::Data(buf))?;
                    if filled < CHUNK {
                        break;
                    }
                }
                send(w, Msg::End)?;
            }
            index += 1;
        }
        flush(&mut batch, &mut batch_bytes)
    })();
    drop(senders);
    let mut all: Finished = Vec::new();
    let mut worker_failed = false;
    for h in workers {
        match h.join() {
            Ok(done) => all.extend(done),
            Err(_) => worker_failed = true,
        }
    }
    result?;
    if worker_failed {
        return Err(Error::Worker);
    }
    all.sort_by_key(|(i, _, _)| *i);
    let mut ts = TarSum::new();
    ts.sums = all
        .into_iter()
        .map(|(_, cleaned, sum)| (cleaned, sum))
        .collect();
    Ok(ts.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockertools_common::tar::writer::{Data, TarWriter};
    use dockertools_common::tar::{Dialect, Header};

    #[test]
    fn empty_input_is_sha256_of_nothing() -> Result<(), Error> {
        let want =
            "tarsum.v1+sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(tarsum_of(&b""[..])?, want);
        assert_eq!(tarsum_of(&[0u8; 1024][..])?, want);
        Ok(())
    }

    #[test]
    fn clean_names_like_go() {
        assert_eq!(clean_name(b"./usr/"), b"usr");
        assert_eq!(clean_name(b"/usr"), b"usr");
        assert_eq!(clean_name(b"a/b/../c"), b"a/c");
        assert_eq!(clean_name(b"./"), b".");
        assert_eq!(clean_name(b"../x"), b"x");
    }

    #[test]
    fn thread_count_does_not_change_the_sum() -> Result<(), Error> {
        // A small archive: one directory and two files, one of them several chunks long.
        let mut w = TarWriter::new(Vec::new(), Dialect::Pax);
        for (name, size) in [("d/", 0usize), ("d/a", 3 * CHUNK + 17), ("d/b", 5)] {
            let h = Header {
                name: name.as_bytes().to_vec(),
                mode: 0o644,
                size: size as u64,
                typeflag: if size == 0 { b'5' } else { b'0' },
                ..Default::default()
            };
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            w.append(&h, Data::Bytes(&data)).unwrap();
        }
        let tar = w.finish().unwrap();
        let one = tarsum_with_threads(&tar[..], 1)?;
        assert_eq!(tarsum_with_threads(&tar[..], 2)?, one);
        assert_eq!(tarsum_with_threads(&tar[..], 7)?, one);
        Ok(())
    }

    #[test]
    fn sparse_data_left_over_is_an_error_for_any_thread_count() {
        // Found by the fuzzer: a sparse entry whose data outlasts its map.
        let input = include_bytes!("../fuzz/seeds/tarsum_reader/regression-sparse-leftover-data");
        assert!(tarsum_with_threads(&input[..], 1).is_err());
        assert!(tarsum_with_threads(&input[..], 2).is_err());
    }

    /// `n` regular files whose names repeat every `names` entries (some spelled with `./`),
    /// each holding its own index as text.
    fn repeated_names(n: usize, names: usize) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new(), Dialect::Pax);
        for i in 0..n {
            let dot = if i % 3 == 0 { "./" } else { "" };
            let data = i.to_string().into_bytes();
            let h = Header {
                name: format!("{dot}d/f{}", i % names).into_bytes(),
                mode: 0o644,
                size: data.len() as u64,
                typeflag: b'0',
                ..Default::default()
            };
            w.append(&h, Data::Bytes(&data)).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn repeated_names_are_ordered_as_go_sorts_them() -> Result<(), Error> {
        // Expected sums: moby's tarsum built with Go, on the same archives. Beyond 12 entries a
        // generic sort panicked here ("does not correctly implement a total order").
        for (n, names, want) in [
            (
                12,
                5,
                "5149595e97cb2c4a046dc52df29a6d8ad26391adcd12c6c517e4b6ec5971317f",
            ),
            (
                13,
                12,
                "3e7cd2da86ea70ff68d88eb1f4afa018fdd6b73d7c6f70dbfd31d04d3bd143ff",
            ),
            (
                50,
                7,
                "0480bb5c95647d5c76bb16e56c2ed26ea8db4f280109f39f063862930fb7744d",
            ),
            (
                300,
                3,
                "4e509754371d4334a4b352589a97465fb7bcdc35b12ffe8e712548bb95046a26",
            ),
            (
                3000,
                40,
                "6a9a11ca67c12951031bbaa85e455fca66fa3488fa6b03634299a50490f5ec97",
            ),
        ] {
            let tar = repeated_names(n, names);
            let want = format!("tarsum.v1+sha256:{want}");
            assert_eq!(tarsum_with_threads(&tar[..], 1)?, want, "{n} entries");
            assert_eq!(tarsum_with_threads(&tar[..], 3)?, want, "{n} entries");
        }
        Ok(())
    }

    #[test]
    fn an_empty_xattr_value_is_hashed() -> Result<(), Error> {
        // moby since v25 hashes every SCHILY.xattr record Go's reader keeps, empty ones too.
        let h = Header {
            name: b"f".to_vec(),
            mode: 0o644,
            typeflag: b'0',
            pax_records: vec![
                (b"SCHILY.xattr.user.empty".to_vec(), Vec::new()),
                (b"SCHILY.xattr.user.set".to_vec(), b"1".to_vec()),
            ],
            ..Default::default()
        };
        let mut w = TarWriter::new(Vec::new(), Dialect::Pax);
        w.append(&h, Data::Empty).unwrap();
        let tar = w.finish().unwrap();
        // Go's result; v24's rule (empty values dropped) gave eb82328d...
        let want =
            "tarsum.v1+sha256:558ba622cf3c4e536b734100a740cf423e97bf435b1b75d7b7e497219613d9e8";
        assert_eq!(tarsum_of(&tar[..])?, want);
        Ok(())
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(tarsum_of(&[b'x'; 1024][..]), Err(Error::Read(_))));
    }
}
