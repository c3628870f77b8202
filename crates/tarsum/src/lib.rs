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
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use dockertools_common::hash::hex;
use dockertools_common::tar::reader::{ReadError, ReadErrorKind, Reader};
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

/// Computes the tarsum of the tar stream `input`, hashing entries on rayon's threads (as many
/// as its pool has: `$RAYON_NUM_THREADS`, `$NIX_BUILD_CORES` through the `main` wrapper, or
/// the cores). With one thread, or when called on one of rayon's own threads, it hashes on
/// the calling thread.
pub fn tarsum_of<R: Read>(input: R) -> Result<String, Error> {
    if rayon::current_num_threads() <= 1 || rayon::current_thread_index().is_some() {
        return sum_serial(Reader::new(input));
    }
    sum_parallel(Reader::new(NoSeek(input)), None, None)
}

/// Computes the tarsum of the tar in `file`, from its current offset, as [`tarsum_of`] does;
/// a regular file's large entries are read by the hashing tasks themselves, at their offsets,
/// while the calling thread reads the headers and seeks past their data.
pub fn tarsum_of_file(file: &File) -> Result<String, Error> {
    let mut r = file;
    let start = r.stream_position().map_err(|e| {
        Error::Read(ReadError {
            index: 0,
            offset: 0,
            kind: ReadErrorKind::Io(e),
        })
    })?;
    let reader = Reader::new(io::BufReader::with_capacity(64 << 10, r));
    if rayon::current_num_threads() <= 1 || rayon::current_thread_index().is_some() {
        return sum_serial(reader);
    }
    sum_parallel(reader, None, Some((file, start)))
}

/// A stream for a reader that wants `Seek` and is never asked to seek (no file is given).
struct NoSeek<R: Read>(R);

impl<R: Read> Read for NoSeek<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Seek for NoSeek<R> {
    fn seek(&mut self, _: io::SeekFrom) -> io::Result<u64> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "not seekable"))
    }
}

/// Computes the tarsum with a pool of its own of `threads` hashing threads (1: on the calling
/// thread). The result does not depend on `threads`.
pub fn tarsum_with_threads<R: Read>(input: R, threads: usize) -> Result<String, Error> {
    if threads <= 1 {
        return sum_serial(Reader::new(input));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|_| Error::Worker)?;
    sum_parallel(Reader::new(NoSeek(input)), Some(&pool), None)
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

/// Hashes every entry on the calling thread.
fn sum_serial<R: Read>(mut reader: Reader<R>) -> Result<String, Error> {
    let mut ts = TarSum::new();
    let mut buf = vec![0u8; SMALL];
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
    Ok(ts.finish())
}

/// The calling thread parses the archive and hands the data to [`Hashers`] on `pool` (rayon's
/// global pool when `None`); the scope ends once every task has, so the sums are all there.
/// With `file` (the archive's file and the offset it starts at), large entries are read by
/// the tasks at their offsets.
fn sum_parallel<R: Read + Seek>(
    mut reader: Reader<R>,
    pool: Option<&rayon::ThreadPool>,
    file: Option<(&File, u64)>,
) -> Result<String, Error> {
    let shared = Arc::new(Shared::default());
    match pool {
        Some(pool) => pool.in_place_scope(|scope| read_all(scope, &shared, &mut reader, file)),
        None => rayon::in_place_scope(|scope| read_all(scope, &shared, &mut reader, file)),
    }?;
    // A task reading ahead failed on an earlier entry than any the reader reached.
    if let Some(e) = lock(&shared.failed).take() {
        return Err(Error::Read(e));
    }
    let mut all = std::mem::take(&mut *lock(&shared.done));
    all.sort_unstable_by_key(|(i, _, _)| *i);
    let mut ts = TarSum::new();
    ts.sums = all
        .into_iter()
        .map(|(_, cleaned, sum)| (cleaned, sum))
        .collect();
    Ok(ts.finish())
}

/// Reads every entry, handing the data to hashing tasks in `scope`.
fn read_all<'s, R: Read + Seek>(
    scope: &rayon::Scope<'s>,
    shared: &Arc<Shared>,
    reader: &mut Reader<R>,
    file: Option<(&'s File, u64)>,
) -> Result<(), Error> {
    let mut hashers = Hashers::new(scope, shared);
    let read = read_entries(reader, &mut hashers, file);
    // What was handed over is hashed, error or not.
    hashers.flush();
    read
}

fn read_entries<'s, R: Read + Seek>(
    reader: &mut Reader<R>,
    hashers: &mut Hashers<'_, 's>,
    file: Option<(&'s File, u64)>,
) -> Result<(), Error> {
    let ts = TarSum::new();
    let mut index = 0usize;
    while let Some(e) = reader.next_entry()? {
        check_entry(&e)?;
        let sum = ts.begin(&entry_header(&e));
        let size = usize::try_from(e.size).ok().filter(|&n| n <= SMALL);
        if let Some(size) = size {
            hashers.small((index, size), sum, reader)?;
        } else if let (Some((file, start)), true) = (file, contiguous(&e)) {
            let at = Region {
                file,
                offset: start + reader.offset(),
                size: e.size.unsigned_abs(),
                entry: (e.index, e.offset),
            };
            reader.seek_past_data()?;
            hashers.at(index, sum, at);
        } else {
            hashers.large(index, sum, reader)?;
        }
        index += 1;
    }
    Ok(())
}

/// Whether an entry's data is its bytes in the archive, as they stand (not a sparse file).
fn contiguous(e: &dockertools_common::tar::reader::Entry) -> bool {
    matches!(e.typeflag, b'0' | b'7') && !e.pax.iter().any(|(k, _)| k.starts_with(b"GNU.sparse"))
}

/// Where a large entry's data is in the archive's file, and the entry (index, offset) for
/// messages.
struct Region<'f> {
    file: &'f File,
    offset: u64,
    size: u64,
    entry: (u64, u64),
}

/// Entries up to this size are read whole and hashed in batches.
const SMALL: usize = 256 * 1024;
/// Larger entries are read in chunks of this size.
const CHUNK: usize = 1 << 20;
/// A batch of small entries is handed over at about this many bytes...
const BATCH_BYTES: usize = 1 << 20;
/// ... or this many entries.
const BATCH_ENTRIES: usize = 512;
/// Bytes read and not yet hashed, at most (plus one chunk): enough to read past a large
/// entry while one thread hashes it, so the others get the entries after it.
const IN_FLIGHT: usize = 64 << 20;

/// One hashed entry: index, cleaned name, hex sum.
type Finished = (usize, Vec<u8>, [u8; 64]);

fn finish_sum(index: usize, sum: EntrySum) -> Finished {
    let digest = sum.hasher.finalize();
    let mut hexsum = [0u8; 64];
    hexsum.copy_from_slice(hex(&digest).as_bytes());
    (index, sum.cleaned, hexsum)
}

/// What the hashing tasks share with the reading thread.
#[derive(Default)]
struct Shared {
    /// Bytes handed over and not yet hashed.
    in_flight: Mutex<usize>,
    drained: Condvar,
    /// Entries hashed so far, in any order.
    done: Mutex<Vec<Finished>>,
    /// The first entry (by index) whose data a task could not read.
    failed: Mutex<Option<ReadError>>,
    /// Buffers to reuse, so that no chunk is allocated (and its pages faulted) twice.
    spare: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    /// Waits until the bytes in flight are under [`IN_FLIGHT`], then counts `n` more.
    fn acquire(&self, n: usize) {
        let mut in_flight = lock(&self.in_flight);
        while *in_flight > IN_FLIGHT {
            in_flight = self
                .drained
                .wait(in_flight)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *in_flight += n;
    }

    /// Counts `buf` as hashed and keeps it for reuse.
    fn release(&self, n: usize, buf: Vec<u8>) {
        *lock(&self.in_flight) -= n;
        self.drained.notify_one();
        lock(&self.spare).push(buf);
    }

    /// A buffer to reuse (its contents are stale), or a new empty one.
    fn buffer(&self) -> Vec<u8> {
        lock(&self.spare).pop().unwrap_or_default()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Small entries hashed together: (index, header sum, where its data is in `data`).
struct Batch {
    entries: Vec<(usize, EntrySum, std::ops::Range<usize>)>,
    data: Vec<u8>,
    /// Bytes of `data` in use (beyond them, stale bytes of an earlier use).
    used: usize,
}

/// A large entry's chunks, hashed in order by one task at a time.
#[derive(Default)]
struct Stream {
    queue: Mutex<StreamQueue>,
    /// Held by the task hashing the entry; taken by whoever finishes it.
    sum: Mutex<Option<(usize, EntrySum)>>,
}

#[derive(Default)]
struct StreamQueue {
    chunks: std::collections::VecDeque<Vec<u8>>,
    /// A task is hashing the queue.
    running: bool,
    /// The reading thread has handed over the last chunk.
    ended: bool,
}

/// The hashing side of tarsum: tasks on rayon's pool (through `scope`), fed by the reading
/// thread with batches of small entries and with the chunks of large ones. Memory: at most
/// [`IN_FLIGHT`] bytes of data in flight, whatever the entry sizes.
struct Hashers<'a, 's> {
    scope: &'a rayon::Scope<'s>,
    shared: Arc<Shared>,
    batch: Batch,
}

impl<'a, 's> Hashers<'a, 's> {
    fn new(scope: &'a rayon::Scope<'s>, shared: &Arc<Shared>) -> Self {
        let shared = Arc::clone(shared);
        let data = Vec::new();
        Hashers {
            scope,
            shared,
            batch: Batch {
                entries: Vec::new(),
                data,
                used: 0,
            },
        }
    }

    /// Reads a small entry's data into the batch.
    fn small<R: Read>(
        &mut self,
        (index, size): (usize, usize),
        sum: EntrySum,
        reader: &mut Reader<R>,
    ) -> Result<(), Error> {
        let Batch {
            entries,
            data,
            used,
        } = &mut self.batch;
        let start = *used;
        // At least one byte asked for: the read that finds the end also finds data left over.
        let mut want = size.max(1);
        // The size said at most SMALL; a sparse entry's data may not agree (the reader
        // reports that), so read until the data ends.
        loop {
            // The buffer keeps its length from use to use: only new bytes are zeroed.
            if data.len() < *used + want {
                data.resize(*used + want, 0);
            }
            let n = fill(reader, &mut data[*used..*used + want])?;
            *used += n;
            if n < want {
                break;
            }
            want = 64 << 10;
        }
        entries.push((index, sum, start..*used));
        if self.batch.used >= BATCH_BYTES || self.batch.entries.len() >= BATCH_ENTRIES {
            self.flush();
        }
        Ok(())
    }

    /// Hands the batch to a task.
    fn flush(&mut self) {
        if self.batch.entries.is_empty() {
            return;
        }
        let next = Batch {
            entries: Vec::new(),
            data: self.shared.buffer(),
            used: 0,
        };
        let batch = std::mem::replace(&mut self.batch, next);
        let bytes = batch.used;
        self.shared.acquire(bytes);
        let shared = Arc::clone(&self.shared);
        self.scope.spawn(move |_| {
            let mut done = Vec::with_capacity(batch.entries.len());
            for (index, mut sum, range) in batch.entries {
                sum.update(batch.data.get(range).unwrap_or_default());
                done.push(finish_sum(index, sum));
            }
            lock(&shared.done).extend(done);
            shared.release(bytes, batch.data);
        });
    }

    /// Reads a large entry in chunks, each hashed (in order) as soon as a thread is free.
    fn large<R: Read>(
        &mut self,
        index: usize,
        sum: EntrySum,
        reader: &mut Reader<R>,
    ) -> Result<(), Error> {
        self.flush();
        let stream = Arc::new(Stream::default());
        *lock(&stream.sum) = Some((index, sum));
        let result = loop {
            let mut buf = self.shared.buffer();
            // A reused buffer is already that long: only a new one is zeroed.
            buf.resize(CHUNK, 0);
            let n = match fill(reader, &mut buf) {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if n == 0 {
                break Ok(());
            }
            buf.truncate(n);
            self.shared.acquire(n);
            self.push(&stream, buf);
        };
        let mut queue = lock(&stream.queue);
        queue.ended = true;
        if !queue.running {
            drop(queue);
            finish_stream(&stream, &self.shared);
        }
        result
    }

    /// Hashes a large entry in a task of its own that reads its data at its offset.
    fn at(&self, index: usize, mut sum: EntrySum, at: Region<'s>) {
        let shared = Arc::clone(&self.shared);
        self.scope.spawn(move |_| match hash_region(&mut sum, &at) {
            Ok(()) => lock(&shared.done).push(finish_sum(index, sum)),
            Err(kind) => {
                let (index, offset) = at.entry;
                let mut failed = lock(&shared.failed);
                if failed.as_ref().is_none_or(|f| f.index > index) {
                    *failed = Some(ReadError {
                        index,
                        offset,
                        kind,
                    });
                }
            }
        });
    }

    /// Queues a chunk, starting a task for the stream when none is running.
    fn push(&self, stream: &Arc<Stream>, chunk: Vec<u8>) {
        let mut queue = lock(&stream.queue);
        queue.chunks.push_back(chunk);
        if queue.running {
            return;
        }
        queue.running = true;
        let (stream, shared) = (Arc::clone(stream), Arc::clone(&self.shared));
        self.scope.spawn(move |_| drain(&stream, &shared));
    }
}

/// Hashes a stream's queued chunks in order until the queue is empty; finishes the entry
/// when the reading thread has ended it.
fn drain(stream: &Stream, shared: &Shared) {
    loop {
        let chunk = {
            let mut queue = lock(&stream.queue);
            match queue.chunks.pop_front() {
                Some(chunk) => chunk,
                None => {
                    queue.running = false;
                    if queue.ended {
                        drop(queue);
                        finish_stream(stream, shared);
                    }
                    return;
                }
            }
        };
        if let Some((_, sum)) = lock(&stream.sum).as_mut() {
            sum.update(&chunk);
        }
        shared.release(chunk.len(), chunk);
    }
}

/// Records a stream's sum (once, by whichever of the reader and the task gets there last).
fn finish_stream(stream: &Stream, shared: &Shared) {
    if let Some((index, sum)) = lock(&stream.sum).take() {
        lock(&shared.done).push(finish_sum(index, sum));
    }
}

/// Reads a region of the archive's file into `sum`, a chunk at a time.
fn hash_region(sum: &mut EntrySum, at: &Region<'_>) -> Result<(), ReadErrorKind> {
    thread_local! {
        /// Each thread's read buffer, made (and its pages faulted) once.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; SMALL]);
    }
    BUF.with(|buf| hash_region_with(sum, at, &mut buf.borrow_mut()))
}

fn hash_region_with(
    sum: &mut EntrySum,
    at: &Region<'_>,
    buf: &mut [u8],
) -> Result<(), ReadErrorKind> {
    let mut done = 0u64;
    while done < at.size {
        let want = (at.size - done).min(buf.len() as u64) as usize;
        match at.file.read_at(&mut buf[..want], at.offset + done) {
            Ok(0) => return Err(ReadErrorKind::UnexpectedEof),
            Ok(n) => {
                sum.update(&buf[..n]);
                done += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadErrorKind::Io(e)),
        }
    }
    Ok(())
}

/// Reads entry data until `buf` is full or the entry ends; returns the bytes read.
fn fill<R: Read>(reader: &mut Reader<R>, buf: &mut [u8]) -> Result<usize, Error> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read_data(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
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

    /// An archive with entries on both sides of SMALL and of CHUNK.
    fn mixed_sizes() -> Vec<u8> {
        let mut tar = Vec::new();
        let mut w = dockertools_common::tar::writer::TarWriter::new(
            &mut tar,
            dockertools_common::tar::Dialect::Pax,
        );
        for (i, size) in [0, 5, SMALL, SMALL + 1, 3 * CHUNK + 17, 100, CHUNK]
            .into_iter()
            .enumerate()
        {
            let h = dockertools_common::tar::Header {
                name: format!("f{i}").into_bytes(),
                mode: 0o644,
                size: size as u64,
                typeflag: b'0',
                ..Default::default()
            };
            let data: Vec<u8> = (0..size).map(|j| (j * 31 % 253) as u8).collect();
            w.append(&h, dockertools_common::tar::writer::Data::Bytes(&data))
                .unwrap();
        }
        w.finish().unwrap();
        tar
    }

    #[test]
    fn a_file_read_at_offsets_has_the_sum_of_the_stream() -> Result<(), Box<dyn std::error::Error>>
    {
        use std::io::{Seek, Write};
        let tar = mixed_sizes();
        let want = tarsum_with_threads(&tar[..], 1)?;
        let mut file = tempfile::tempfile()?;
        // Not at the start of the file: the archive starts at the file's offset.
        file.write_all(b"skipped")?;
        file.write_all(&tar)?;
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            file.seek(io::SeekFrom::Start(7))?;
            // On the calling thread, with the pool's width (not on one of its threads).
            let got = pool.in_place_scope(|_| message(tarsum_of_file(&file)));
            assert_eq!(got, want, "{threads} threads");
        }
        // Cut inside a large entry's data: the error names that entry, as a stream's does.
        let cut = &tar[..2 * SMALL + CHUNK];
        let stream = message(tarsum_with_threads(cut, 1));
        let mut short = tempfile::tempfile()?;
        short.write_all(cut)?;
        short.seek(io::SeekFrom::Start(0))?;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
        assert_eq!(
            pool.in_place_scope(|_| message(tarsum_of_file(&short))),
            stream
        );
        assert!(stream.contains("entry 4 "), "{stream}");
        Ok(())
    }

    fn message(r: Result<String, Error>) -> String {
        match r {
            Ok(sum) => sum,
            Err(e) => e.to_string(),
        }
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
