//! The first pass: each input is opened once and its members indexed into a tree of its own,
//! as `tar -x` would extract it, then merged into the image's tree as `cp -R --update=none`
//! would copy it.
//!
//! A plain input that is a regular file is read in place: its headers are read, its data is
//! skipped by seeking and read back later at its offset. Anything else (a compressed input, a
//! pipe) is read once, decompressed, into a spool (in memory within the budget, then an unnamed
//! file beside OUT: [`crate::store`]), which then serves as its plain bytes; but for the data of
//! members read ahead ([`crate::ahead`]), which is not spooled: their gzip blocks are inflated
//! on the rare occasions it is read again. The compression is recognised on the handle that is read, so a pipe is
//! never reopened; a compressed input is read to its end and its checks (CRC, length, zstd
//! checksum, trailing garbage) must pass.
//! Files that two inputs hold are compared byte for byte as soon as the later one is indexed.

use std::cell::Cell;
use std::fs::{File, Metadata};
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use dockertools_common::compress::{
    decompress, decompress_with_segments, Compression, Decompressed, Segments,
};
use dockertools_common::tar::reader::{Entry, NoSeek, ReadError, ReadErrorKind, Reader};
use dockertools_common::tar::{self as tarfmt};

use crate::ahead::{Ahead, AheadError};
use crate::json::ImageJson;
use crate::store::{At, Budget, Spool};
use crate::tree::{components, Data, Duplicate, Kind, Tree, TreeError};
use crate::{Error, ImageProblem};

/// Largest JSON member (`manifest.json`, `repositories`) read into memory.
pub(crate) const JSON_LIMIT: u64 = 64 << 20;

/// The top-level members whose bytes are read, merged, and written anew.
const JSON_MEMBERS: [&[u8]; 2] = [b"manifest.json", b"repositories"];

/// One indexed input.
pub(crate) struct Input {
    /// The path given.
    pub path: PathBuf,
    /// Its compression (the output's default is the last input's).
    pub compression: Compression,
    /// Its plain tar bytes.
    bytes: Plain,
    /// For an input read in place, its identity and size when opened.
    stamp: Option<Stamp>,
    /// Its `manifest.json` and `repositories`.
    pub json: ImageJson,
}

/// An input's plain tar bytes.
enum Plain {
    /// The input itself, read in place.
    InPlace(File),
    /// Its decompressed bytes.
    Spooled(Spool),
}

/// Where an input's plain bytes are: the input or its spool, and for the holes in a spool,
/// the input's number and the blocks compressed ahead.
struct Source<'a> {
    bytes: &'a Plain,
    path: &'a Path,
    idx: usize,
    ahead: Option<&'a Ahead>,
}

impl Source<'_> {
    /// Reads up to `buf.len()` bytes at `offset`; 0 past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let spool = match self.bytes {
            Plain::InPlace(f) => return f.read_at(buf, offset),
            Plain::Spooled(s) => s,
        };
        match spool.at(offset) {
            At::Kept(at, run) => {
                let n = buf.len().min(usize::try_from(run).unwrap_or(usize::MAX));
                spool.read_kept(&mut buf[..n], at)
            }
            At::Hole(hole) => {
                let Some(ahead) = self.ahead else {
                    return Err(io::Error::other("a member read ahead without its blocks"));
                };
                let n = buf.len().min((hole.start + hole.len - offset) as usize);
                ahead.read_data((self.idx, hole.start), offset - hole.start, &mut buf[..n])
            }
        }
    }
}

/// Reads `buf.len()` bytes of member `member` at `offset` of an input's plain bytes; the input
/// ending first means it changed while merging.
fn read_exact_at(src: &Source, buf: &mut [u8], offset: u64, member: &[u8]) -> Result<(), Error> {
    let path = src.path;
    let mut done = 0;
    while done < buf.len() {
        match src.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                return Err(Error::EndedEarly {
                    input: path.to_path_buf(),
                    entry: String::from_utf8_lossy(member).into_owned(),
                })
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::Io {
                    input: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// What tells that a file read in place was changed: any write changes its ctime.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The inputs indexed so far and their merged tree.
pub(crate) struct Index {
    /// Where spool files go (OUT's folder).
    spool_dir: PathBuf,
    /// The memory the spools and the blocks compressed ahead may keep.
    budget: Budget,
    /// OUT, for messages about the spool.
    out: PathBuf,
    /// The merged tree.
    pub tree: Tree,
    /// The inputs, in order.
    pub inputs: Vec<Input>,
    /// Large members' gzip blocks, compressed while their input was spooled.
    pub ahead: Option<Ahead>,
}

impl Index {
    /// An empty index whose spools keep up to `memory` bytes (with the blocks compressed
    /// ahead), the rest in files beside `out`.
    pub fn new(out: &Path, memory: u64) -> Index {
        let spool_dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Index {
            spool_dir,
            budget: Budget::new(memory),
            out: out.to_path_buf(),
            tree: Tree::new(),
            inputs: Vec::new(),
            ahead: None,
        }
    }

    /// Compresses large members of spooled inputs for a gzip output at `level` while they
    /// are read, reusing gzip inputs' deflate data when `splice` (see [`crate::ahead`]).
    pub fn read_ahead(&mut self, level: i32, splice: bool) -> Result<(), Error> {
        let ahead = Ahead::new(&self.spool_dir, level, splice, &self.budget).map_err(|source| {
            let out = self.out.clone();
            Error::Cache { out, source }
        })?;
        self.ahead = Some(ahead);
        Ok(())
    }

    /// Ends reading ahead: what was compressed becomes readable.
    pub fn end_read_ahead(&mut self) -> Result<(), Error> {
        let Some(ahead) = self.ahead.as_mut() else {
            return Ok(());
        };
        ahead.flush().map_err(|source| Error::Cache {
            out: self.out.clone(),
            source,
        })
    }

    /// Reads `buf.len()` bytes of member `member` at `offset` of input `input`'s plain bytes;
    /// the input ending first means it changed while merging.
    pub fn read_exact_at(
        &self,
        input: usize,
        buf: &mut [u8],
        offset: u64,
        member: &[u8],
    ) -> Result<(), Error> {
        let Some(i) = self.inputs.get(input) else {
            let why = io::Error::other("a member of an input that was not indexed");
            let out = self.out.clone();
            return Err(Error::Output { out, source: why });
        };
        read_exact_at(&self.source(input, i), buf, offset, member)
    }

    fn source<'a>(&'a self, idx: usize, input: &'a Input) -> Source<'a> {
        Source {
            bytes: &input.bytes,
            path: &input.path,
            idx,
            ahead: self.ahead.as_ref(),
        }
    }

    /// Indexes the input at `path` and merges it into the tree.
    pub fn add(&mut self, path: &Path) -> Result<(), Error> {
        let idx = self.inputs.len();
        let (input, tree) = self.read(idx, path)?;
        self.inputs.push(input);
        let dups = self.tree.absorb(tree).map_err(|e| self.tree_error(e))?;
        for dup in &dups {
            self.compare(dup)?;
        }
        Ok(())
    }

    /// Refuses symlinks that are absolute, lead outside the image, or loop.
    pub fn check_links(&self) -> Result<(), Error> {
        self.tree.check_links().map_err(|e| self.tree_error(e))
    }

    /// Fails when an input read in place was changed since it was opened.
    pub fn check_unchanged(&self) -> Result<(), Error> {
        for input in &self.inputs {
            let (Some(stamp), Plain::InPlace(file)) = (&input.stamp, &input.bytes) else {
                continue;
            };
            let now = file.metadata().map_err(|source| Error::Io {
                input: input.path.clone(),
                source,
            })?;
            if Stamp::of(&now) != *stamp {
                return Err(Error::Changed {
                    input: input.path.clone(),
                });
            }
        }
        Ok(())
    }

    fn path_of(&self, idx: usize) -> PathBuf {
        self.inputs
            .get(idx)
            .map_or_else(PathBuf::new, |i| i.path.clone())
    }

    /// A tree error with the inputs named.
    fn tree_error(&self, e: TreeError) -> Error {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match e {
            TreeError::Below { .. } => Error::Tree {
                input: self.path_of(self.inputs.len().saturating_sub(1)),
                source: e,
            },
            TreeError::Kinds {
                ref entry,
                first,
                first_kind,
                second,
                second_kind,
            } => Error::KindConflict {
                entry: lossy(entry),
                first: self.path_of(first),
                first_kind,
                second: self.path_of(second),
                second_kind,
            },
            TreeError::Targets {
                ref entry,
                first,
                second,
            } => Error::Conflict {
                entry: lossy(entry),
                first: self.path_of(first),
                second: self.path_of(second),
            },
            TreeError::Link { input, .. } => Error::Tree {
                input: self.path_of(input),
                source: e,
            },
        }
    }

    /// Two inputs' copies of one file must hold the same bytes.
    fn compare(&self, dup: &Duplicate) -> Result<(), Error> {
        let (ia, a) = dup.first;
        let (ib, b) = dup.second;
        let (Some(first), Some(second)) = (self.inputs.get(ia), self.inputs.get(ib)) else {
            return Ok(());
        };
        let equal = a.size == b.size && self.same_bytes((ia, a), (ib, b), &dup.path)?;
        if equal {
            return Ok(());
        }
        Err(Error::Conflict {
            entry: String::from_utf8_lossy(&dup.path).into_owned(),
            first: first.path.clone(),
            second: second.path.clone(),
        })
    }

    /// Whether two inputs' files hold the same bytes: the same blocks compressed ahead, or
    /// else the same bytes read back.
    fn same_bytes(&self, a: (usize, Data), b: (usize, Data), member: &[u8]) -> Result<bool, Error> {
        if let Some(ahead) = &self.ahead {
            let same = ahead.same_blocks((a.0, a.1.offset), (b.0, b.1.offset));
            if same.map_err(|source| self.cache_err(source))? {
                return Ok(true);
            }
        }
        let mut ba = vec![0u8; 1 << 20];
        let mut bb = vec![0u8; 1 << 20];
        let size = a.1.size;
        let mut done = 0u64;
        while done < size {
            let n = (size - done).min(ba.len() as u64) as usize;
            self.read_exact_at(a.0, &mut ba[..n], a.1.offset + done, member)?;
            self.read_exact_at(b.0, &mut bb[..n], b.1.offset + done, member)?;
            if ba[..n] != bb[..n] {
                return Ok(false);
            }
            done += n as u64;
        }
        Ok(true)
    }

    fn cache_err(&self, source: io::Error) -> Error {
        Error::Cache {
            out: self.out.clone(),
            source,
        }
    }

    /// Opens and indexes one input into a tree of its own.
    fn read(&mut self, idx: usize, path: &Path) -> Result<(Input, Tree), Error> {
        let io_err = |source| Error::Io {
            input: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        let mut scan = Scan::new(idx, path, &self.out);
        let (compression, bytes, stamp) = if meta.is_file() && !is_compressed(&file, path)? {
            scan.in_place(&file, meta.len())?;
            (
                Compression::None,
                Plain::InPlace(file),
                Some(Stamp::of(&meta)),
            )
        } else {
            let open = match self.ahead.as_ref().is_some_and(Ahead::splices) {
                true => decompress_with_segments,
                false => decompress,
            };
            let (kind, dec) = open(file).map_err(io_err)?;
            (kind, Plain::Spooled(self.spooled(&mut scan, dec)?), None)
        };
        let src = Source {
            bytes: &bytes,
            path,
            idx,
            ahead: self.ahead.as_ref(),
        };
        let json = scan.take_json(&src)?;
        let input = Input {
            path: path.to_path_buf(),
            compression,
            bytes,
            stamp,
            json,
        };
        Ok((input, scan.tree))
    }

    /// Indexes a stream through a spool file, checks the stream to its end, and returns the
    /// spool.
    fn spooled(&mut self, scan: &mut Scan, mut dec: Decompressed) -> Result<Spool, Error> {
        let input = scan.path.clone();
        let spool_err = |source| Error::Spool {
            input: input.clone(),
            out: self.out.clone(),
            source,
        };
        let mut spool = Spool::new(&self.spool_dir, &self.budget);
        let mut failed = None;
        let segments = dec.segments();
        let scanned = {
            let tee = Tee {
                r: &mut dec,
                w: &mut spool,
                failed: &mut failed,
                skip: Rc::clone(&scan.reading_ahead),
            };
            let ahead = self.ahead.as_mut().map(|a| (a, segments.as_ref()));
            scan.entries(&mut Reader::new(NoSeek(tee)), ahead)
        };
        // A write error on the spool surfaces as a read error of the tar; it is the spool's.
        if let Some(source) = failed {
            return Err(spool_err(source));
        }
        scanned?;
        spool.flush().map_err(spool_err)?;
        dec.finish().map_err(|source| Error::Io { input, source })?;
        // The members read ahead are read back from their blocks (JSON members, duplicates):
        // all of them must be there.
        if let Some(ahead) = self.ahead.as_mut() {
            ahead.flush().map_err(|source| Error::Cache {
                out: self.out.clone(),
                source,
            })?;
        }
        Ok(spool)
    }
}

/// The compression of the regular file at `path`, by its first bytes; `None` for anything
/// else (a pipe is not read here) or when it cannot be read.
pub(crate) fn peek_compression(path: &Path) -> Option<Compression> {
    let file = File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = [0u8; 4];
    let n = file.read_at(&mut head, 0).ok()?;
    Some(Compression::detect(head.get(..n)?))
}

/// Whether a regular file starts with a gzip or zstd magic number (read without moving its
/// offset, so the same handle is then read from the start).
fn is_compressed(file: &File, path: &Path) -> Result<bool, Error> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match file.read_at(&mut head[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::Io {
                    input: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(Compression::detect(&head[..n]) != Compression::None)
}

/// One input's members being read into its own tree.
struct Scan {
    idx: usize,
    path: PathBuf,
    tree: Tree,
    /// Bytes the input has (read in place), to tell a truncated member before reading it.
    len: u64,
    /// Read in place: data is skipped by seeking.
    seek: bool,
    /// OUT, for messages about the cache.
    out: PathBuf,
    /// Set while a member's data is read ahead: the spool does not keep it.
    reading_ahead: Rc<Cell<bool>>,
}

impl Scan {
    fn new(idx: usize, path: &Path, out: &Path) -> Scan {
        Scan {
            out: out.to_path_buf(),
            idx,
            path: path.to_path_buf(),
            tree: Tree::new(),
            len: u64::MAX,
            seek: false,
            reading_ahead: Rc::new(Cell::new(false)),
        }
    }

    fn ahead_err(&self, e: AheadError) -> Error {
        match e {
            AheadError::Tar(source) => self.tar_err(source),
            AheadError::Cache(source) => Error::Cache {
                out: self.out.clone(),
                source,
            },
        }
    }

    fn tar_err(&self, source: ReadError) -> Error {
        Error::Tar {
            input: self.path.clone(),
            source,
        }
    }

    fn unsafe_entry(&self, e: &Entry, why: &'static str) -> Error {
        Error::Unsafe {
            input: self.path.clone(),
            entry: String::from_utf8_lossy(&e.name).into_owned(),
            why,
        }
    }

    /// Indexes a plain input read in place, skipping data by seeking.
    fn in_place(&mut self, file: &File, len: u64) -> Result<(), Error> {
        let handle = file.try_clone().map_err(|source| Error::Io {
            input: self.path.clone(),
            source,
        })?;
        self.len = len;
        self.seek = true;
        self.entries(
            &mut Reader::new(BufReader::with_capacity(64 << 10, handle)),
            None,
        )
    }

    /// Reads every entry into the tree, skipping data by seeking when the input is read in
    /// place, or reading large members' data into `ahead` (with the input's segments) when
    /// there is one.
    fn entries<R: Read + Seek>(
        &mut self,
        reader: &mut Reader<R>,
        mut ahead: Option<(&mut Ahead, Option<&Segments>)>,
    ) -> Result<(), Error> {
        while let Some(e) = reader.next_entry().map_err(|s| self.tar_err(s))? {
            let Some(parts) = components(&e.name).map_err(|why| self.unsafe_entry(&e, why))? else {
                continue;
            };
            let mode = (e.mode as u32) & 0o7777 & !0o022;
            let kind = self.kind(reader, &e)?;
            if self.seek {
                reader.seek_past_data().map_err(|s| self.tar_err(s))?;
            } else if let (Some((ahead, segments)), Kind::File(data)) = (ahead.as_mut(), &kind) {
                if e.typeflag != tarfmt::HARDLINK && Ahead::wanted(data.size) {
                    self.reading_ahead.set(true);
                    let key = (self.idx, data.offset);
                    let read = ahead.read(key, data.size, reader, *segments);
                    self.reading_ahead.set(false);
                    read.map_err(|err| self.ahead_err(err))?;
                }
            }
            self.tree
                .add(self.idx, &parts, kind, mode)
                .map_err(|source| Error::Tree {
                    input: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// What an entry becomes in the tree.
    fn kind<R: Read>(&self, reader: &Reader<R>, e: &Entry) -> Result<Kind, Error> {
        match e.typeflag {
            tarfmt::REGULAR | b'7' => {
                let data = Data {
                    offset: reader.offset(),
                    size: e.size as u64,
                };
                if data.offset.saturating_add(data.size) > self.len {
                    let kind = ReadErrorKind::UnexpectedEof;
                    let (index, offset) = (e.index, e.offset);
                    return Err(self.tar_err(ReadError {
                        index,
                        offset,
                        kind,
                    }));
                }
                if e.pax.iter().any(|(k, _)| k.starts_with(b"GNU.sparse")) {
                    return Err(self.unsafe_entry(e, "sparse files are not supported"));
                }
                Ok(Kind::File(data))
            }
            tarfmt::HARDLINK => self.hard_link(e),
            tarfmt::SYMLINK => Ok(Kind::Symlink(e.linkname.clone())),
            tarfmt::DIR => Ok(Kind::Dir),
            tarfmt::CHAR | tarfmt::BLOCKDEV => Err(self.unsafe_entry(e, "device file")),
            tarfmt::FIFO => Err(self.unsafe_entry(e, "FIFO")),
            _ => Err(self.unsafe_entry(e, "unsupported entry type")),
        }
    }

    /// A hard link is another name for a file this input already extracted.
    fn hard_link(&self, e: &Entry) -> Result<Kind, Error> {
        let target = components(&e.linkname)
            .map_err(|why| self.unsafe_entry(e, why))?
            .ok_or_else(|| self.unsafe_entry(e, "hard link to the root"))?;
        match self.tree.get(&target).map(|n| &n.kind) {
            Some(Kind::File(data)) => Ok(Kind::File(*data)),
            _ => Err(self.unsafe_entry(e, "hard link to a file not in the archive")),
        }
    }

    /// Takes the surviving top-level JSON members out of the tree (they are written anew) and
    /// reads their bytes from `file`, the input's plain bytes.
    fn take_json(&mut self, src: &Source) -> Result<ImageJson, Error> {
        let mut found: [Option<Vec<u8>>; 2] = [None, None];
        for (slot, name) in found.iter_mut().zip(JSON_MEMBERS) {
            let Some(node) = self.tree.take_top(name) else {
                continue;
            };
            let member = String::from_utf8_lossy(name).into_owned();
            let Kind::File(data) = node.kind else {
                return Err(Error::NotImage {
                    input: self.path.clone(),
                    problem: ImageProblem::NotRegular { member },
                });
            };
            if data.size > JSON_LIMIT {
                return Err(Error::JsonTooLarge {
                    input: self.path.clone(),
                    member,
                    limit: JSON_LIMIT,
                });
            }
            let mut json = vec![0u8; data.size as usize];
            read_exact_at(src, &mut json, data.offset, name)?;
            *slot = Some(json);
        }
        let [manifest, repositories] = found;
        Ok(ImageJson {
            manifest,
            repositories,
        })
    }
}

/// Passes what it reads to the spool (but for what is read while `skip` is set); a write
/// failure is kept in `failed`, so the caller can tell it from a read failure.
struct Tee<'a, R: Read> {
    r: &'a mut R,
    w: &'a mut Spool,
    failed: &'a mut Option<io::Error>,
    skip: Rc<Cell<bool>>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        if self.skip.get() {
            self.w.skip(n as u64);
            return Ok(n);
        }
        if let Err(e) = self.w.write_all(&buf[..n]) {
            let kind = e.kind();
            *self.failed = Some(e);
            return Err(io::Error::new(kind, "spool write failed"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockertools_common::compress::Compressor;
    use dockertools_common::tar::writer::{Data, TarWriter};
    use dockertools_common::tar::{Dialect, Header};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A member for the tests: `(name, typeflag, data or link target)`.
    type Member<'a> = (&'a str, u8, &'a [u8]);

    fn tar(members: &[Member]) -> io::Result<Vec<u8>> {
        let mut w = TarWriter::new(Vec::new(), Dialect::Gnu(Default::default()));
        for &(name, typeflag, body) in members {
            let (size, linkname) = match typeflag {
                tarfmt::REGULAR => (body.len() as u64, Vec::new()),
                _ => (0, body.to_vec()),
            };
            let h = Header {
                name: name.as_bytes().to_vec(),
                mode: 0o644,
                size,
                typeflag,
                linkname,
                ..Header::default()
            };
            let data = if size > 0 {
                Data::Bytes(body)
            } else {
                Data::Empty
            };
            w.append(&h, data).map_err(io::Error::other)?;
        }
        w.finish()
    }

    const MANIFEST: Member = ("manifest.json", tarfmt::REGULAR, b"[]");

    /// Indexes archives (written into `dir`) in order.
    fn index(dir: &Path, archives: &[Vec<u8>]) -> Result<Index, Error> {
        let mut index = Index::new(&dir.join("out.tar"), crate::DEFAULT_MEMORY);
        for (i, bytes) in archives.iter().enumerate() {
            let path = dir.join(format!("in{i}.tar"));
            std::fs::write(&path, bytes).map_err(|source| Error::Io {
                input: path.clone(),
                source,
            })?;
            index.add(&path)?;
        }
        Ok(index)
    }

    /// Every file's path and bytes, in output order.
    fn files(index: &Index) -> Result<Vec<(String, String)>, Error> {
        let mut out = Vec::new();
        index.tree.walk(|path, node| -> Result<(), Error> {
            if let Kind::File(d) = node.kind {
                let mut buf = vec![0u8; d.size as usize];
                index.read_exact_at(node.input, &mut buf, d.offset, path)?;
                let text = String::from_utf8_lossy(&buf).into_owned();
                out.push((String::from_utf8_lossy(path).into_owned(), text));
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_hard_link_names_the_bytes_its_target_had_when_it_was_read() -> TestResult {
        let dir = tempfile::tempdir()?;
        let a = tar(&[
            MANIFEST,
            ("f", tarfmt::REGULAR, b"one"),
            ("h", tarfmt::HARDLINK, b"f"),
            ("f", tarfmt::REGULAR, b"two"),
        ])?;
        let index = index(dir.path(), &[a])?;
        assert_eq!(files(&index)?, pairs(&[("f", "two"), ("h", "one")]));
        Ok(())
    }

    #[test]
    fn a_hard_link_to_a_folder_or_a_removed_file_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let to_dir = tar(&[
            MANIFEST,
            ("d/f", tarfmt::REGULAR, b"x"),
            ("h", tarfmt::HARDLINK, b"d"),
        ]);
        let to_gone = tar(&[
            MANIFEST,
            ("d/f", tarfmt::REGULAR, b"x"),
            ("d", tarfmt::REGULAR, b"file now"),
            ("h", tarfmt::HARDLINK, b"d/f"),
        ]);
        for bytes in [to_dir, to_gone] {
            let bytes = bytes?;
            let e = index(dir.path(), &[bytes]).err().map(|e| e.to_string());
            let input = dir.path().join("in0.tar");
            assert_eq!(
                e,
                Some(format!(
                    "{}: entry \"h\": hard link to a file not in the archive",
                    input.display()
                ))
            );
        }
        Ok(())
    }

    #[test]
    fn duplicate_files_must_hold_the_same_bytes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mk = |body: &'static [u8]| tar(&[MANIFEST, ("l/layer.tar", tarfmt::REGULAR, body)]);
        let same = index(dir.path(), &[mk(b"abc")?, mk(b"abc")?])?;
        assert_eq!(files(&same)?, pairs(&[("l/layer.tar", "abc")]));
        assert_eq!(
            same.tree
                .get(&[b"l".to_vec(), b"layer.tar".to_vec()])
                .map(|n| n.input),
            Some(0)
        );
        for other in [&b"abd"[..], b"abcd"] {
            let e = index(dir.path(), &[mk(b"abc")?, mk(other)?]).err();
            assert!(
                matches!(&e, Some(Error::Conflict { entry, .. }) if entry == "l/layer.tar"),
                "{e:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn an_input_updated_with_tar_r_merges_with_its_copy() -> TestResult {
        let dir = tempfile::tempdir()?;
        let a = tar(&[
            MANIFEST,
            ("l/layer.tar", tarfmt::REGULAR, b"v1"),
            ("l/layer.tar", tarfmt::REGULAR, b"v2"),
        ])?;
        let index = index(dir.path(), &[a.clone(), a])?;
        assert_eq!(files(&index)?, pairs(&[("l/layer.tar", "v2")]));
        Ok(())
    }

    #[test]
    fn the_surviving_manifest_is_the_inputs_and_a_compressed_input_is_spooled() -> TestResult {
        let dir = tempfile::tempdir()?;
        let plain = tar(&[
            ("manifest.json", tarfmt::REGULAR, b"[1]"),
            ("x", tarfmt::REGULAR, b"data"),
            ("manifest.json", tarfmt::REGULAR, b"[2]"),
        ])?;
        let mut gz = Compressor::new(Vec::new(), Compression::Gzip, 6)?;
        gz.write_all(&plain)?;
        let gz = gz.finish()?;
        let index = index(dir.path(), &[gz])?;
        let input = index.inputs.first();
        assert_eq!(input.map(|i| i.compression), Some(Compression::Gzip));
        assert_eq!(
            input.and_then(|i| i.json.manifest.clone()),
            Some(b"[2]".to_vec())
        );
        assert_eq!(files(&index)?, pairs(&[("x", "data")]));
        Ok(())
    }

    #[test]
    fn a_manifest_that_is_a_hard_link_is_read_from_its_target() -> TestResult {
        let dir = tempfile::tempdir()?;
        let a = tar(&[
            ("manifest.json", tarfmt::REGULAR, b"[1]"),
            ("x", tarfmt::REGULAR, b"[3]"),
            ("manifest.json", tarfmt::HARDLINK, b"x"),
        ])?;
        let index = index(dir.path(), &[a])?;
        let manifest = index.inputs.first().and_then(|i| i.json.manifest.clone());
        assert_eq!(manifest, Some(b"[3]".to_vec()));
        Ok(())
    }

    #[test]
    fn a_json_member_that_is_not_a_regular_file_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let a = tar(&[
            MANIFEST,
            ("repositories", tarfmt::SYMLINK, b"manifest.json"),
        ])?;
        let e = index(dir.path(), &[a]).err();
        assert!(
            matches!(&e, Some(Error::NotImage { problem: ImageProblem::NotRegular { member }, .. }) if member == "repositories"),
            "{e:?}"
        );
        Ok(())
    }
}
