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

/// A writer that hashes what it passes on, and feeds the current entry's tarsum.
struct Sink<W: Write> {
    out: W,
    sha: Sha256,
    count: u64,
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.sha.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)?;
        self.sha.update(buf);
        self.count += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads a file's data for the tar while feeding the entry's tarsum.
struct SumReader<'a, R: Read> {
    r: R,
    sum: &'a mut tarsum::EntrySum,
}

impl<R: Read> Read for SumReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
}

struct Packer<'a, W: Write> {
    tar: TarWriter<Sink<W>>,
    sums: TarSum,
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
        let mut sum = self.sums.begin(&EntryHeader {
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
        self.tar.raw(&self.head).map_err(out_err)?;
        if let Some(path) = data {
            let data_err = |source| Error::Data {
                path: path.to_path_buf(),
                source,
            };
            let file = fs::File::open(path).map_err(|e| data_err(DataError::Read(e)))?;
            let mut reader = SumReader {
                r: file,
                sum: &mut sum,
            };
            self.tar
                .data_from(&mut reader, h.size)
                .map_err(|e| match e {
                    DataError::Write(source) => out_err(source),
                    other => data_err(other),
                })?;
        }
        self.sums.end(sum);
        Ok(())
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
    let sink = Sink {
        out,
        sha: Sha256::new(),
        count: 0,
    };
    let mut p = Packer {
        tar: TarWriter::new(sink),
        sums: TarSum::new(),
        owner,
        head: Vec::with_capacity(2048),
    };
    let mut name = b".".to_vec();
    p.walk(root, &mut name)?;
    let sink = p.tar.finish().map_err(|source| Error::Output {
        path: PathBuf::from("layer.tar"),
        source,
    })?;
    let packed = Packed {
        sha256: hex(&sink.sha.finalize()),
        tarsum: p.sums.finish(),
        size: sink.count,
    };
    Ok((sink.out, packed))
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
