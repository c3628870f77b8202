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
use dockertools_common::tar::writer::{DataError, TarWriter};
use dockertools_common::tar::{self as tarfmt, gnu, Header};
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
    let mut w = Emitter {
        tar: TarWriter::new(comp),
        index,
        digests,
        mtime: format.mtime,
        out,
        head: Vec::new(),
        buf: vec![0u8; 1 << 20],
    };
    w.entry(b"./".to_vec(), 0o755, tarfmt::DIR, 0, Vec::new())?;
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
    head: Vec<u8>,
    buf: Vec<u8>,
}

impl Emitter<'_> {
    fn out_err(&self, source: io::Error) -> Error {
        Error::Output {
            out: self.out.to_path_buf(),
            source,
        }
    }

    /// Writes one header as GNU tar does with `--owner=0 --group=0` (names `root`).
    fn entry(
        &mut self,
        name: Vec<u8>,
        mode: u32,
        typeflag: u8,
        size: u64,
        linkname: Vec<u8>,
    ) -> Result<(), Error> {
        let header = Header {
            name,
            mode,
            size,
            mtime: self.mtime,
            typeflag,
            linkname,
            uname: b"root".to_vec(),
            gname: b"root".to_vec(),
            ..Header::default()
        };
        self.head.clear();
        let opts = gnu::GnuOptions {
            numeric_owner: false,
        };
        gnu::encode(&header, opts, &mut self.head)?;
        let head = std::mem::take(&mut self.head);
        let written = self.tar.raw(&head);
        self.head = head;
        written.map_err(|e| self.out_err(e))
    }

    fn node(&mut self, path: &[u8], node: &Node) -> Result<(), Error> {
        let name = path.to_vec();
        match &node.kind {
            Kind::Dir => {
                let mut name = name;
                name.push(b'/');
                self.entry(name, node.mode, tarfmt::DIR, 0, Vec::new())
            }
            Kind::Symlink(target) => {
                let target = target.strip_prefix(b"./").unwrap_or(target).to_vec();
                self.entry(name, 0o777, tarfmt::SYMLINK, 0, target)
            }
            Kind::Generated(bytes) => {
                let size = bytes.len() as u64;
                self.entry(name, node.mode, tarfmt::REGULAR, size, Vec::new())?;
                self.tar.data_bytes(bytes).map_err(|e| self.out_err(e))
            }
            Kind::File(data) => {
                self.entry(name, node.mode, tarfmt::REGULAR, data.size, Vec::new())?;
                self.file(path, node.input, *data)
            }
        }
    }

    /// Copies a file's bytes from its input, checking a layer's digest on the way.
    fn file(&mut self, path: &[u8], input: usize, data: Data) -> Result<(), Error> {
        let src = self.index.inputs.get(input).ok_or_else(|| {
            self.out_err(io::Error::other(
                "a member of an input that was not indexed",
            ))
        })?;
        let mut expected = self.digests.expected(path);
        let mut hasher = expected.as_ref().map(|_| Sha256::new());
        let mut w = self.tar.entry_writer();
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
        w.finish(data.size).map_err(|e| self.data_err(e))?;
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
            from: match source {
                Source::DiffId(config) => format!("its diff_id in {config}"),
                Source::Name => "its name".into(),
            },
            actual: hex(&got),
        })
    }

    fn data_err(&self, e: DataError) -> Error {
        match e {
            DataError::Write(source) | DataError::Read(source) => self.out_err(source),
            other => self.out_err(io::Error::other(other.to_string())),
        }
    }
}

/// Whether a member whose digest comes from a diff_id starts like a gzip or zstd stream: its
/// diff_id is that of its decompressed bytes, which this pass does not see.
fn stored_compressed(expected: &Option<Expected>, first: &[u8]) -> bool {
    matches!(expected, Some((_, Source::DiffId(_))))
        && Compression::detect(first) != Compression::None
}
