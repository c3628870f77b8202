//! The second pass: the merged tree written as the sorted GNU tar mergeImages' final
//! `tar --sort=name --hard-dereference --owner=0 --group=0 --mtime=@N --xform s:^./:: -c .`
//! gives, through the compressor.
//!
//! A layer member is hashed while it is copied; bytes that do not match the digest its image
//! config gives it ([`crate::digests`]) are an error, so a corrupt input never becomes an image
//! that looks whole.

use std::io::{self, Write};
use std::path::Path;

use dockertools_common::atomic::AtomicFile;
use dockertools_common::compress::{Compression, Compressor};
use dockertools_common::hash::hex;
use dockertools_common::tar::gnu::GnuOptions;
use dockertools_common::tar::writer::{Data as TarData, DataError, TarWriter};
use dockertools_common::tar::{self as tarfmt, Dialect, Header};
use sha2::{Digest, Sha256};

use crate::digests::{Digests, Expected, Source};
use crate::index::Index;
use crate::tree::{Data, Kind, Node};
use crate::Error;

/// How the output is written.
pub(crate) struct Format {
    /// Its compression.
    pub compression: Compression,
    /// The compression level.
    pub level: i32,
    /// mtime of every entry.
    pub mtime: i64,
}

/// Writes the index's tree into `file` and returns it, complete and flushed, for committing.
pub(crate) fn write(
    file: AtomicFile,
    index: &Index,
    digests: &Digests,
    format: &Format,
    out: &Path,
) -> Result<AtomicFile, Error> {
    let out_err = |source| Error::Output {
        out: out.to_path_buf(),
        source,
    };
    let comp = Compressor::new(file, format.compression, format.level).map_err(out_err)?;
    // `--owner=0 --group=0`: GNU tar names them `root`, in the `././@LongLink` records too.
    let dialect = Dialect::Gnu(GnuOptions {
        numeric_owner: false,
    });
    let mut w = Emitter {
        tar: TarWriter::new(comp, dialect),
        index,
        digests,
        mtime: format.mtime,
        out,
        buf: vec![0u8; 1 << 20],
    };
    w.append(
        &w.header(b"./".to_vec(), 0o755, tarfmt::DIR),
        TarData::Empty,
    )?;
    index.tree.walk(|path, node| w.node(path, node))?;
    let comp = w.tar.finish().map_err(out_err)?;
    comp.finish().map_err(out_err)
}

/// Writes entries into the tar.
struct Emitter<'a> {
    tar: TarWriter<Compressor<AtomicFile>>,
    index: &'a Index,
    digests: &'a Digests,
    mtime: i64,
    out: &'a Path,
    buf: Vec<u8>,
}

impl Emitter<'_> {
    fn out_err(&self, source: io::Error) -> Error {
        Error::Output {
            out: self.out.to_path_buf(),
            source,
        }
    }

    /// The header GNU tar writes with `--owner=0 --group=0` (names `root`).
    fn header(&self, name: Vec<u8>, mode: u32, typeflag: u8) -> Header {
        Header {
            name,
            mode,
            mtime: self.mtime,
            typeflag,
            uname: b"root".to_vec(),
            gname: b"root".to_vec(),
            ..Header::default()
        }
    }

    fn append(&mut self, h: &Header, data: TarData<'_>) -> Result<(), Error> {
        self.tar
            .append(h, data)
            .map_err(|e| data_err(self.out, h, e))
    }

    fn node(&mut self, path: &[u8], node: &Node) -> Result<(), Error> {
        let mut h = self.header(path.to_vec(), node.mode, tarfmt::REGULAR);
        match &node.kind {
            Kind::Dir => {
                h.name.push(b'/');
                h.typeflag = tarfmt::DIR;
                self.append(&h, TarData::Empty)
            }
            Kind::Symlink(target) => {
                h.mode = 0o777;
                h.typeflag = tarfmt::SYMLINK;
                h.linkname = target.strip_prefix(b"./").unwrap_or(target).to_vec();
                self.append(&h, TarData::Empty)
            }
            Kind::Generated(bytes) => {
                h.size = bytes.len() as u64;
                self.append(&h, TarData::Bytes(bytes))
            }
            Kind::File(data) => {
                h.size = data.size;
                self.file(&h, path, node.input, *data)
            }
        }
    }

    /// Copies a file's bytes from its input, checking a layer's digest on the way.
    fn file(&mut self, h: &Header, path: &[u8], input: usize, data: Data) -> Result<(), Error> {
        let src = self.index.inputs.get(input).ok_or_else(|| {
            self.out_err(io::Error::other(
                "a member of an input that was not indexed",
            ))
        })?;
        let mut expected = self.digests.expected(path);
        let mut hasher = expected.as_ref().map(|_| Sha256::new());
        let mut w = self
            .tar
            .append_writer(h)
            .map_err(|e| data_err(self.out, h, e))?;
        let mut done = 0u64;
        while done < data.size {
            let n = (data.size - done).min(self.buf.len() as u64) as usize;
            let chunk = &mut self.buf[..n];
            src.read_exact_at(chunk, data.offset + done, path)?;
            if done == 0 && stored_compressed(&expected, chunk) {
                (expected, hasher) = (None, None);
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&*chunk);
            }
            w.write_all(chunk).map_err(|source| Error::Output {
                out: self.out.to_path_buf(),
                source,
            })?;
            done += n as u64;
        }
        w.finish().map_err(|e| data_err(self.out, h, e))?;
        let (Some((want, source)), Some(h)) = (expected, hasher) else {
            return Ok(());
        };
        let got = h.finalize();
        if got.as_slice() == want {
            return Ok(());
        }
        Err(Error::Digest {
            input: src.path.clone(),
            entry: String::from_utf8_lossy(path).into_owned(),
            expected: hex(&want),
            from: source,
            actual: hex(&got),
        })
    }
}

/// Entry `h` could not be written: the output's fault, or a header that does not fit.
fn data_err(out: &Path, h: &Header, e: DataError) -> Error {
    let source = match e {
        DataError::Header(source) => {
            let entry = String::from_utf8_lossy(&h.name).into_owned();
            return Error::Overflow { entry, source };
        }
        DataError::Write(source) | DataError::Read(source) => source,
        other => io::Error::other(other),
    };
    Error::Output {
        out: out.to_path_buf(),
        source,
    }
}

/// Whether a member whose digest comes from a diff_id starts like a gzip or zstd stream: its
/// diff_id is that of its decompressed bytes, which this pass does not see.
fn stored_compressed(expected: &Option<Expected>, first: &[u8]) -> bool {
    matches!(expected, Some((_, Source::DiffId(_))))
        && Compression::detect(first) != Compression::None
}
