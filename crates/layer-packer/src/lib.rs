//! layer-packer: the layer tarballs of nixpkgs' dockerTools, in one pass.
//!
//! Input: source folders merged in order (mkPureLayer's `rsync -a` loop, or streamLayeredImage's
//! customisation `symlinkJoin`), plus extra empty folders (the usual `extraCommands`).
//! Output: `layer.tar` byte-identical to GNU tar 1.34 (`--sort=name --hard-dereference
//! --mtime=@N` with `--owner/--group` or `--numeric-owner`), its sha256 and its Docker tarsum v1,
//! all from one read of the tree; mkPureLayer's `json` (jshon's bytes with `checksum` appended)
//! and `VERSION`, or the customisation layer's `checksum`.
//! Deterministic: the bytes depend only on the sources' contents and the options.
//! Memory: the merged tree's metadata (names, modes, sizes), never file data; at most
//! [`tree::MAX_ENTRIES`] entries, as following directory symlinks can expand a small input
//! without end.
//! Sources are read and the tree is written without recursion, so depth is bounded only by
//! the system's limit on the length of a path.

pub mod jshon;
pub mod tree;

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;

use dockertools_common::hash::hex;
use dockertools_common::tar::gnu::GnuOptions;
use dockertools_common::tar::writer::{read_some, Data, DataError, Sink, TarWriter};
use dockertools_common::tar::{self as tarfmt, Dialect, Header};
use sha2::{Digest, Sha256};
use tarsum::{EntryHeader, TarSum};
use tree::{Node, Tree};

/// Errors of layer-packer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a source failed.
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
    /// A file could not be read while packing, or changed size.
    #[error("{}: {source}", .path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: DataError,
    },
    /// A header value does not fit (an owner id too large for the header, for example).
    #[error("{name}: {source}")]
    Overflow {
        /// The entry.
        name: String,
        /// The field.
        #[source]
        source: tarfmt::HeaderError,
    },
    /// A `--mkdir` path that cannot be made.
    #[error(transparent)]
    Mkdir(#[from] tree::MkdirError),
    /// The base JSON is not JSON.
    #[error("{}: {source}", .path.display())]
    BaseJson {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The base JSON is not an object.
    #[error("{}: not a JSON object", .path.display())]
    BaseNotObject {
        /// The file.
        path: PathBuf,
    },
    /// Writing the tar failed (the caller knows where it was going and names it).
    #[error("writing the layer: {0}")]
    Output(#[source] io::Error),
}

/// Owner fields and time of every entry, as GNU tar's options give them (the names empty
/// with `--numeric-owner`).
pub use dockertools_common::tar::Owner;

/// What one pass over the tree produced.
#[derive(Clone, Debug)]
pub struct Packed {
    /// sha256 of the tar, lowercase hex.
    pub sha256: String,
    /// `tarsum.v1+sha256:...` of the tar.
    pub tarsum: String,
    /// Size of the tar in bytes.
    pub size: u64,
}

/// Size of the buffers that carry the tar stream to the output and to both hashing threads.
const CHUNK: usize = 1 << 20;

/// One filled buffer of the tar stream, shared read-only by the writer and both hashers.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What the tarsum thread does with the chunk that carries these events.
enum SumEvent {
    /// A new entry starts (its header fields are already hashed).
    Start(tarsum::EntrySum),
    /// Entry data at this range of the chunk.
    Data(std::ops::Range<usize>),
    /// The entry is complete.
    End,
}

/// The tar writer's sink: the stream in [`CHUNK`]-sized buffers. File data is read straight
/// into the buffer ([`Sink::put_read`]); each full buffer goes, without copying, to the sha256
/// thread, to the tarsum thread (with the entry events it carries) and to the output.
/// Buffers come back through `pool`.
struct Chunker<W: Write> {
    out: W,
    cur: Chunk,
    events: Vec<SumEvent>,
    sha_tx: SyncSender<Arc<Chunk>>,
    sum_tx: SyncSender<(Arc<Chunk>, Vec<SumEvent>)>,
    pool: Receiver<Chunk>,
    /// A buffer the hashers were done with by the time it was written.
    spare: Option<Chunk>,
    written: u64,
}

/// Gives a buffer back to the pool when this was its last user.
fn recycle(chunk: Arc<Chunk>, pool: &Sender<Chunk>) {
    if let Ok(c) = Arc::try_unwrap(chunk) {
        let _ = pool.send(c);
    }
}

impl<W: Write> Chunker<W> {
    fn new(
        out: W,
        sha_tx: SyncSender<Arc<Chunk>>,
        sum_tx: SyncSender<(Arc<Chunk>, Vec<SumEvent>)>,
        pool: Receiver<Chunk>,
    ) -> Self {
        Chunker {
            out,
            cur: Chunk {
                buf: vec![0; CHUNK],
                len: 0,
            },
            events: Vec::new(),
            sha_tx,
            sum_tx,
            pool,
            spare: None,
            written: 0,
        }
    }

    fn fresh(&mut self) -> Chunk {
        match self
            .spare
            .take()
            .ok_or(())
            .or_else(|()| self.pool.try_recv())
        {
            Ok(mut c) => {
                c.len = 0;
                c
            }
            Err(_) => Chunk {
                buf: vec![0; CHUNK],
                len: 0,
            },
        }
    }

    /// Hands the current buffer to the hashers and writes it out.
    fn emit(&mut self) -> io::Result<()> {
        if self.cur.len == 0 {
            return Ok(());
        }
        let next = self.fresh();
        let chunk = Arc::new(std::mem::replace(&mut self.cur, next));
        let stopped = || io::Error::other("a hashing thread stopped");
        self.sha_tx.send(chunk.clone()).map_err(|_| stopped())?;
        let events = std::mem::take(&mut self.events);
        self.sum_tx
            .send((chunk.clone(), events))
            .map_err(|_| stopped())?;
        self.out.write_all(chunk.bytes())?;
        self.written += chunk.len as u64;
        if let Ok(c) = Arc::try_unwrap(chunk) {
            self.spare = Some(c);
        }
        Ok(())
    }

    /// Sends the last, partly filled buffer; returns the output and the bytes written.
    fn close(mut self) -> io::Result<(W, u64)> {
        self.emit()?;
        Ok((self.out, self.written))
    }
}

impl<W: Write> Sink for Chunker<W> {
    /// Appends bytes that are not read from a file (headers, padding).
    fn put(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.cur.len == CHUNK {
                self.emit()?;
            }
            let n = bytes.len().min(CHUNK - self.cur.len);
            self.cur.buf[self.cur.len..self.cur.len + n].copy_from_slice(&bytes[..n]);
            self.cur.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Reads file data straight into the current buffer and tells the tarsum thread where it is.
    fn put_read(
        &mut self,
        src: &mut dyn Read,
        left: u64,
        _scratch: &mut Vec<u8>,
    ) -> Result<usize, DataError> {
        if self.cur.len == CHUNK {
            self.emit().map_err(DataError::Write)?;
        }
        let start = self.cur.len;
        let want = left.min((CHUNK - start) as u64) as usize;
        let n = read_some(src, &mut self.cur.buf[start..start + want]).map_err(DataError::Read)?;
        self.cur.len += n;
        self.events.push(SumEvent::Data(start..start + n));
        Ok(n)
    }
}

struct Packer<'a, W: Write> {
    tar: TarWriter<Chunker<W>>,
    sums: TarSum,
    owner: &'a Owner,
}

/// The fields Go's reader sees back from `h` written by GNU tar, which writes only the
/// permission bits and device numbers only for devices (0 otherwise).
fn sum_header(h: &Header) -> EntryHeader<'_> {
    EntryHeader {
        name: &h.name,
        mode: i64::from(h.mode & 0o7777),
        uid: h.uid as i64,
        gid: h.gid as i64,
        size: h.size as i64,
        typeflag: h.typeflag,
        linkname: &h.linkname,
        devmajor: h.devmajor as i64,
        devminor: h.devminor as i64,
        xattrs: None,
    }
}

impl<W: Write> Packer<'_, W> {
    fn entry(&mut self, h: Header, data: Option<&Path>) -> Result<(), Error> {
        let sum = self.sums.begin(&sum_header(&h));
        self.tar.sink_mut().events.push(SumEvent::Start(sum));
        let appended = match data {
            Some(path) => fs::File::open(path)
                .map_err(DataError::Read)
                .and_then(|mut file| self.tar.append(&h, Data::Reader(&mut file))),
            None => self.tar.append(&h, Data::Empty),
        };
        appended.map_err(|source| match source {
            DataError::Write(e) => Error::Output(e),
            DataError::Header(source) => Error::Overflow {
                name: String::from_utf8_lossy(&h.name).into_owned(),
                source,
            },
            source => Error::Data {
                path: data.map_or_else(
                    || PathBuf::from(OsStr::from_bytes(&h.name)),
                    Path::to_path_buf,
                ),
                source,
            },
        })?;
        self.tar.sink_mut().events.push(SumEvent::End);
        Ok(())
    }

    /// Writes `root` and everything below it, in name order (a directory before its
    /// children), with an explicit stack so that any depth is safe.
    fn walk(&mut self, tree: &Tree) -> Result<(), Error> {
        let mut name = b".".to_vec();
        self.node(&tree.root, &name, None)?;
        // Files in a row mostly share their source directory: rebuild its path only when it changes.
        let mut src_dir: Option<(usize, PathBuf)> = None;
        let mut stack = Vec::new();
        if let Node::Dir { children, .. } = &tree.root {
            stack.push((children.iter(), name.len()));
        }
        while let Some((children, len)) = stack.last_mut() {
            let len = *len;
            let Some((child, node)) = children.next() else {
                stack.pop();
                continue;
            };
            name.truncate(len);
            name.push(b'/');
            name.extend_from_slice(child);
            let data = match node {
                Node::File { dir, .. } => {
                    let dir_path = match &src_dir {
                        Some((d, p)) if d == dir => p,
                        _ => &src_dir.insert((*dir, tree.dir_path(*dir))).1,
                    };
                    Some(dir_path.join(OsStr::from_bytes(child)))
                }
                _ => None,
            };
            self.node(node, &name, data.as_deref())?;
            if let Node::Dir { children, .. } = node {
                stack.push((children.iter(), name.len()));
            }
        }
        Ok(())
    }

    /// Writes the entry of one node named `name`, a file's data read from `data` (its
    /// children are the caller's).
    fn node(&mut self, node: &Node, name: &[u8], data: Option<&Path>) -> Result<(), Error> {
        let base = Header {
            name: name.to_vec(),
            ..self.owner.header()
        };
        let data = data.filter(|_| matches!(node, Node::File { .. }));
        self.entry(node_header(node, base), data)
    }
}

/// The header GNU tar writes for `node`, on top of `base` (its name and owner fields).
fn node_header(node: &Node, base: Header) -> Header {
    let (mode, typeflag) = match node {
        Node::Dir { mode, .. } => (*mode, tarfmt::DIR),
        Node::File { mode, .. } => (*mode, tarfmt::REGULAR),
        Node::Symlink { .. } => (0o777, tarfmt::SYMLINK),
        Node::Fifo { mode } => (*mode, tarfmt::FIFO),
        Node::Device {
            char: true, mode, ..
        } => (*mode, tarfmt::CHAR),
        Node::Device { mode, .. } => (*mode, tarfmt::BLOCKDEV),
    };
    let mut h = Header {
        mode,
        typeflag,
        ..base
    };
    match node {
        Node::Dir { .. } => h.name.push(b'/'),
        Node::File { size, .. } => h.size = *size,
        Node::Symlink { target } => h.linkname = target.clone(),
        Node::Device { major, minor, .. } => (h.devmajor, h.devminor) = (*major, *minor),
        Node::Fifo { .. } => {}
    }
    h
}

/// The sha256 thread: hashes every buffer of the tar, in order.
fn hash_all(chunks: Receiver<Arc<Chunk>>, pool: Sender<Chunk>) -> String {
    let mut sha = Sha256::new();
    for chunk in chunks {
        sha.update(chunk.bytes());
        recycle(chunk, &pool);
    }
    hex(&sha.finalize())
}

/// The tarsum thread: hashes each entry's data at the ranges its events name.
fn hash_entries(chunks: Receiver<(Arc<Chunk>, Vec<SumEvent>)>, pool: Sender<Chunk>) -> String {
    let mut sums = TarSum::new();
    let mut current = None;
    for (chunk, events) in chunks {
        for event in events {
            match event {
                SumEvent::Start(sum) => current = Some(sum),
                SumEvent::Data(range) => {
                    if let Some(sum) = current.as_mut() {
                        sum.update(&chunk.buf[range]);
                    }
                }
                SumEvent::End => {
                    if let Some(sum) = current.take() {
                        sums.end(sum);
                    }
                }
            }
        }
        recycle(chunk, &pool);
    }
    sums.finish()
}

/// Packs `tree` as GNU tar does from the folder's root (`./` names), writing to `out`;
/// `numeric_owner` is GNU tar's `--numeric-owner`.
pub fn pack<W: Write>(
    tree: &Tree,
    owner: &Owner,
    numeric_owner: bool,
    out: W,
) -> Result<(W, Packed), Error> {
    // Three threads: this one walks, reads and writes; one hashes the whole tar (sha256);
    // one hashes each entry (tarsum). They share each buffer; bounded channels keep memory flat.
    let (sha_tx, sha_rx) = sync_channel::<Arc<Chunk>>(8);
    let (sum_tx, sum_rx) = sync_channel::<(Arc<Chunk>, Vec<SumEvent>)>(8);
    let (pool_tx, pool_rx) = channel::<Chunk>();
    let out_err = Error::Output;
    std::thread::scope(|scope| {
        let sha_pool = pool_tx.clone();
        let sha_thread = scope.spawn(move || hash_all(sha_rx, sha_pool));
        let sum_thread = scope.spawn(move || hash_entries(sum_rx, pool_tx));
        let chunker = Chunker::new(out, sha_tx, sum_tx, pool_rx);
        let dialect = Dialect::Gnu(GnuOptions { numeric_owner });
        let mut p = Packer {
            tar: TarWriter::new(chunker, dialect),
            sums: TarSum::new(),
            owner,
        };
        let walked = p.walk(tree);
        // Closing (or dropping, on failure) the chunker closes both channels.
        let finished = walked.and_then(|()| {
            let chunker = p.tar.finish().map_err(out_err)?;
            chunker.close().map_err(out_err)
        });
        let stopped = || out_err(io::Error::other("a hashing thread stopped"));
        let sha256 = sha_thread.join().map_err(|_| stopped())?;
        let tarsum = sum_thread.join().map_err(|_| stopped())?;
        let (out, size) = finished?;
        Ok((
            out,
            Packed {
                sha256,
                tarsum,
                size,
            },
        ))
    })
}

/// How the sources are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// mkPureLayer: `rsync -a` each source into the layer, root made user- and group-writable.
    Pure(tree::Dirlinks),
    /// streamLayeredImage's customisation layer: a symlinkJoin of the sources.
    Join,
}

/// Builds the merged tree of `sources`, then applies `mkdirs` (path, mode).
/// The sources are used as given: with [`Mode::Join`] a relative source gives relative links,
/// so a caller that has relative paths makes them absolute first.
pub fn build_tree(
    mode: Mode,
    sources: &[PathBuf],
    mkdirs: &[(Vec<u8>, u32)],
    max_entries: u64,
) -> Result<Tree, Error> {
    let mut tree = Tree::new(max_entries);
    for s in sources {
        match mode {
            Mode::Pure(links) => tree.rsync(s, links)?,
            Mode::Join => tree.lndir(s)?,
        }
    }
    if let (Mode::Pure(_), Node::Dir { mode, .. }) = (mode, &mut tree.root) {
        // `chmod ug+w layer`
        *mode |= 0o660;
    }
    for (path, m) in mkdirs {
        tree::mkdir(&mut tree.root, path, *m)?;
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn owner() -> Owner {
        Owner {
            mtime: 1,
            uid: 0,
            gid: 0,
            uname: b"root".to_vec(),
            gname: b"root".to_vec(),
        }
    }

    /// A new, empty folder for test `name`.
    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lp-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The tree mkPureLayer packs from the one source `dir`.
    fn pure_tree(dir: &Path) -> Tree {
        let sources = [dir.to_path_buf()];
        let links = tree::Dirlinks::Copy;
        build_tree(Mode::Pure(links), &sources, &[], tree::MAX_ENTRIES).unwrap()
    }

    /// Packs a folder whose file is changed between the walk and the read.
    fn pack_changed(name: &str, change: impl FnOnce(&Path)) -> Error {
        let dir = fresh_dir(name);
        // Big enough to span several buffers.
        fs::write(dir.join("f"), vec![7u8; 3 * CHUNK + 5]).unwrap();
        let tree = pure_tree(&dir);
        change(&dir.join("f"));
        let err = pack(&tree, &owner(), false, io::sink()).unwrap_err();
        fs::remove_dir_all(&dir).unwrap();
        err
    }

    #[test]
    fn a_file_that_grows_or_shrinks_is_an_error_naming_it() {
        let grew = pack_changed("grow", |f| {
            let mut w = fs::OpenOptions::new().append(true).open(f).unwrap();
            w.write_all(b"more").unwrap();
        });
        let msg = grew.to_string();
        assert!(
            msg.contains("/f: size changed") && msg.contains("more than"),
            "{msg}"
        );
        let shrank = pack_changed("shrink", |f| {
            fs::write(f, b"short").unwrap();
        });
        let msg = shrank.to_string();
        assert!(
            msg.contains("/f: size changed") && msg.contains("found 5"),
            "{msg}"
        );
    }

    #[test]
    fn a_tree_deeper_than_the_stack_is_packed() {
        // 2500 levels on a 128 KiB stack: a stack frame per level would overflow it.
        let deep = "a/".repeat(2500).into_bytes();
        let mkdirs = [(deep.clone(), 0o700)];
        let (tar, packed) = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || {
                let tree = build_tree(Mode::Join, &[], &mkdirs, tree::MAX_ENTRIES).unwrap();
                pack(&tree, &owner(), true, Vec::new()).unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(packed.size, tar.len() as u64);
        assert_eq!(packed.tarsum, tarsum::tarsum_of(&tar[..]).unwrap());
        let mut deepest = b"./".to_vec();
        deepest.extend_from_slice(&deep);
        // The deepest name is the data of the last `././@LongLink` entry, at a block boundary.
        let found = (0..tar.len() / tarfmt::BLOCK)
            .rev()
            .take(100)
            .any(|b| tar[b * tarfmt::BLOCK..].starts_with(&deepest));
        assert!(found);
    }

    #[test]
    fn the_sums_match_the_bytes_across_buffer_boundaries() {
        let dir = fresh_dir("sums");
        for (i, len) in [0, 1, 511, 512, CHUNK - 700, CHUNK, 2 * CHUNK + 3]
            .iter()
            .enumerate()
        {
            fs::write(dir.join(format!("f{i}")), vec![i as u8; *len]).unwrap();
        }
        let tree = pure_tree(&dir);
        let (tar, packed) = pack(&tree, &owner(), false, Vec::new()).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(packed.size, tar.len() as u64);
        assert_eq!(tar.len() % tarfmt::RECORD, 0);
        assert_eq!(packed.sha256, hex(&Sha256::digest(&tar)));
        assert_eq!(packed.tarsum, tarsum::tarsum_of(&tar[..]).unwrap());
    }
}
