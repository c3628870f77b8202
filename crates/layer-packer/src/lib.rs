//! layer-packer: the layer tarballs of nixpkgs' dockerTools, in one pass.
//!
//! Input: source folders merged in order (mkPureLayer's `rsync -a` loop, or streamLayeredImage's
//! customisation `symlinkJoin`), plus extra empty folders (the usual `extraCommands`).
//! Output: `layer.tar` byte-identical to GNU tar 1.34 (`--sort=name --hard-dereference
//! --mtime=@N` with `--owner/--group` or `--numeric-owner`), its sha256 and its Docker tarsum v1,
//! all from one read of the tree; mkPureLayer's `json` (jshon's bytes with `checksum` appended)
//! and `VERSION`, or the customisation layer's `checksum`.
//! Deterministic: the bytes depend only on the sources' contents and the options.
//! Memory: the merged tree's metadata (names, modes, sizes), never file data.

pub mod jshon;
pub mod tree;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use dockertools_common::hash::hex;
use dockertools_common::tar::writer::{DataError, TarWriter};
use dockertools_common::tar::{self as tarfmt, gnu, Header};
use sha2::{Digest, Sha256};
use tarsum::{EntryHeader, TarSum};
use tree::Node;

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
        source: tarfmt::FieldOverflow,
    },
    /// An invalid option value.
    #[error("{0}")]
    Option(String),
    /// The base JSON is unusable.
    #[error("{}: {why}", .path.display())]
    BaseJson {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Writing an output failed.
    #[error("{}: {source}", .path.display())]
    Output {
        /// The output.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Owner fields and time of every entry, as GNU tar's options give them.
#[derive(Clone, Debug)]
pub struct Owner {
    /// `--mtime=@N`.
    pub mtime: i64,
    /// Owner id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Owner name (empty with `--numeric-owner` or when the id has no name).
    pub uname: Vec<u8>,
    /// Group name.
    pub gname: Vec<u8>,
    /// `--numeric-owner` (also empties the `././@LongLink` owner names).
    pub numeric_owner: bool,
}

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

/// Bytes handed to a hashing thread at a time.
const HASH_CHUNK: usize = 1 << 20;

/// The output writer: writes through, and hands a copy of every byte, in 1 MiB batches,
/// to the thread that computes the whole tar's sha256.
struct Sink<W: Write> {
    out: W,
    pending: Vec<u8>,
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    count: u64,
}

impl<W: Write> Sink<W> {
    fn hand_over(&mut self) -> io::Result<()> {
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(HASH_CHUNK));
        self.tx
            .send(batch)
            .map_err(|_| io::Error::other("the sha256 thread stopped"))
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)?;
        self.count += buf.len() as u64;
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= HASH_CHUNK {
            self.hand_over()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// What the tarsum thread is told.
enum SumMsg {
    Start(tarsum::EntrySum),
    Data(Vec<u8>),
    End,
}

/// Reads a file's data for the tar while keeping a copy for the tarsum thread.
struct SumReader<'a, R: Read> {
    r: R,
    batch: &'a mut SumBatch,
}

/// Messages for the tarsum thread, sent in batches (one channel operation per ~1 MiB).
#[derive(Default)]
struct SumBatch {
    msgs: Vec<SumMsg>,
    bytes: usize,
}

impl<R: Read> Read for SumReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        if n > 0 {
            self.batch.msgs.push(SumMsg::Data(buf[..n].to_vec()));
            self.batch.bytes += n;
        }
        Ok(n)
    }
}

struct Packer<'a, W: Write> {
    tar: TarWriter<Sink<W>>,
    sums: TarSum,
    sum_tx: std::sync::mpsc::SyncSender<Vec<SumMsg>>,
    sum_batch: SumBatch,
    owner: &'a Owner,
    head: Vec<u8>,
}

impl<W: Write> Packer<'_, W> {
    fn entry(&mut self, h: Header, data: Option<&Path>) -> Result<(), Error> {
        self.head.clear();
        let name = String::from_utf8_lossy(&h.name).into_owned();
        gnu::encode(
            &h,
            gnu::GnuOptions {
                numeric_owner: self.owner.numeric_owner,
            },
            &mut self.head,
        )
        .map_err(|source| Error::Overflow {
            name: name.clone(),
            source,
        })?;
        let out_err = |source: io::Error| Error::Output {
            path: PathBuf::from("layer.tar"),
            source,
        };
        // Go's reader sees exactly these fields back (GNU tar writes only permission bits,
        // device numbers only for devices).
        let sum = self.sums.begin(&EntryHeader {
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
        });
        let stopped = || Error::Output {
            path: PathBuf::from("layer.tar"),
            source: io::Error::other("the tarsum thread stopped"),
        };
        self.sum_batch.msgs.push(SumMsg::Start(sum));
        self.tar.raw(&self.head).map_err(out_err)?;
        if let Some(path) = data {
            let data_err = |source| Error::Data {
                path: path.to_path_buf(),
                source,
            };
            let file = fs::File::open(path).map_err(|e| data_err(DataError::Read(e)))?;
            let mut reader = SumReader {
                r: file,
                batch: &mut self.sum_batch,
            };
            self.tar
                .data_from(&mut reader, h.size)
                .map_err(|e| match e {
                    DataError::Write(source) => out_err(source),
                    other => data_err(other),
                })?;
        }
        self.sum_batch.msgs.push(SumMsg::End);
        self.sum_batch.bytes += 512;
        if self.sum_batch.bytes >= HASH_CHUNK || self.sum_batch.msgs.len() >= 1024 {
            self.flush_sums().map_err(|_| stopped())?;
        }
        Ok(())
    }

    fn flush_sums(&mut self) -> Result<(), ()> {
        let batch = std::mem::take(&mut self.sum_batch);
        if batch.msgs.is_empty() {
            return Ok(());
        }
        self.sum_tx.send(batch.msgs).map_err(|_| ())
    }

    fn walk(&mut self, node: &Node, name: &mut Vec<u8>) -> Result<(), Error> {
        let base = Header {
            uid: self.owner.uid,
            gid: self.owner.gid,
            mtime: self.owner.mtime,
            uname: self.owner.uname.clone(),
            gname: self.owner.gname.clone(),
            ..Header::default()
        };
        match node {
            Node::Dir { mode, children } => {
                let mut dir_name = name.clone();
                dir_name.push(b'/');
                self.entry(
                    Header {
                        name: dir_name,
                        mode: *mode,
                        typeflag: tarfmt::DIR,
                        ..base
                    },
                    None,
                )?;
                for (child, node) in children {
                    let len = name.len();
                    name.push(b'/');
                    name.extend_from_slice(child);
                    self.walk(node, name)?;
                    name.truncate(len);
                }
            }
            Node::File { path, mode, size } => {
                let h = Header {
                    name: name.clone(),
                    mode: *mode,
                    size: *size,
                    typeflag: tarfmt::REGULAR,
                    ..base
                };
                self.entry(h, Some(path))?;
            }
            Node::Symlink { target } => {
                let h = Header {
                    name: name.clone(),
                    mode: 0o777,
                    typeflag: tarfmt::SYMLINK,
                    linkname: target.clone(),
                    ..base
                };
                self.entry(h, None)?;
            }
            Node::Fifo { mode } => {
                self.entry(
                    Header {
                        name: name.clone(),
                        mode: *mode,
                        typeflag: tarfmt::FIFO,
                        ..base
                    },
                    None,
                )?;
            }
            Node::Device {
                char,
                mode,
                major,
                minor,
            } => {
                let typeflag = if *char {
                    tarfmt::CHAR
                } else {
                    tarfmt::BLOCKDEV
                };
                let h = Header {
                    name: name.clone(),
                    mode: *mode,
                    typeflag,
                    devmajor: *major,
                    devminor: *minor,
                    ..base
                };
                self.entry(h, None)?;
            }
        }
        Ok(())
    }
}

/// Packs `root` as GNU tar does from the folder's root (`./` names), writing to `out`.
pub fn pack<W: Write>(root: &Node, owner: &Owner, out: W) -> Result<(W, Packed), Error> {
    use std::sync::mpsc::sync_channel;
    // Three threads: this one walks, reads and writes; one hashes the whole tar (sha256);
    // one hashes each entry (tarsum). Bounded channels keep memory flat.
    let (sha_tx, sha_rx) = sync_channel::<Vec<u8>>(8);
    let (sum_tx, sum_rx) = sync_channel::<Vec<SumMsg>>(4);
    std::thread::scope(|scope| {
        let sha_thread = scope.spawn(move || {
            let mut sha = Sha256::new();
            for batch in sha_rx {
                sha.update(&batch);
            }
            hex(&sha.finalize())
        });
        let sum_thread = scope.spawn(move || {
            let mut sums = TarSum::new();
            let mut current = None;
            for msg in sum_rx.into_iter().flatten() {
                match msg {
                    SumMsg::Start(sum) => current = Some(sum),
                    SumMsg::Data(buf) => {
                        if let Some(sum) = current.as_mut() {
                            sum.update(&buf);
                        }
                    }
                    SumMsg::End => {
                        if let Some(sum) = current.take() {
                            sums.end(sum);
                        }
                    }
                }
            }
            sums.finish()
        });
        let sink = Sink {
            out,
            pending: Vec::with_capacity(HASH_CHUNK),
            tx: sha_tx,
            count: 0,
        };
        let mut p = Packer {
            tar: TarWriter::new(sink),
            sums: TarSum::new(),
            sum_tx,
            sum_batch: SumBatch::default(),
            owner,
            head: Vec::with_capacity(2048),
        };
        let mut name = b".".to_vec();
        let walked = p.walk(root, &mut name).and_then(|()| {
            p.flush_sums().map_err(|()| Error::Output {
                path: PathBuf::from("layer.tar"),
                source: io::Error::other("the tarsum thread stopped"),
            })
        });
        let Packer { tar, sum_tx, .. } = p;
        drop(sum_tx);
        let out_err = |source| Error::Output {
            path: PathBuf::from("layer.tar"),
            source,
        };
        let finished = walked.and_then(|()| tar.finish().map_err(out_err));
        let mut sink = match finished {
            Ok(sink) => sink,
            Err(e) => return Err(e),
        };
        if !sink.pending.is_empty() {
            sink.hand_over().map_err(out_err)?;
        }
        let Sink { out, tx, count, .. } = sink;
        drop(tx);
        let stopped = || out_err(io::Error::other("a hashing thread stopped"));
        let sha256 = sha_thread.join().map_err(|_| stopped())?;
        let tarsum = sum_thread.join().map_err(|_| stopped())?;
        Ok((
            out,
            Packed {
                sha256,
                tarsum,
                size: count,
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
pub fn build_tree(
    mode: Mode,
    sources: &[PathBuf],
    mkdirs: &[(Vec<u8>, u32)],
) -> Result<Node, Error> {
    let mut root = Node::dir(0o755);
    for s in sources {
        match mode {
            Mode::Pure(links) => tree::rsync_merge(&mut root, s, links)?,
            Mode::Join => tree::lndir(&mut root, s)?,
        }
    }
    if let (Mode::Pure(_), Node::Dir { mode, .. }) = (mode, &mut root) {
        // `chmod ug+w layer`
        *mode |= 0o660;
    }
    for (path, m) in mkdirs {
        tree::mkdir(&mut root, path, *m).map_err(Error::Option)?;
    }
    Ok(root)
}
