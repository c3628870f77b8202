//! The second pass: the merged tree written as the sorted GNU tar mergeImages' final
//! `tar --sort=name --hard-dereference --owner=0 --group=0 --mtime=@N --xform s:^./:: -c .`
//! gives, through the compressor.
//!
//! A layer member is hashed while it is copied; bytes that do not match the digest its image
//! config gives it ([`crate::digests`]) are an error, so a corrupt input never becomes an image
//! that looks whole.

use std::cell::RefCell;
use std::io::{self, Write};
use std::path::Path;
use std::rc::Rc;

use dockertools_common::atomic::AtomicFile;
use dockertools_common::compress::{Compression, Compressor};
use dockertools_common::hash::hex;
use dockertools_common::tar::writer::{DataError, TarWriter};
use dockertools_common::tar::{self as tarfmt, gnu, Header};
use sha2::{Digest, Sha256};

use crate::ahead::{Ahead, Member};
use crate::digests::{Digests, Expected, Source};
use crate::index::{Index, Input};
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
    let control = Rc::new(RefCell::new(Control { comp, swallow: 0 }));
    let mut w = Emitter {
        tar: TarWriter::new(Sink(Rc::clone(&control))),
        control,
        index,
        digests,
        level: format.level,
        mtime: format.mtime,
        out,
        head: Vec::new(),
        buf: vec![0u8; 1 << 20],
    };
    w.entry(b"./".to_vec(), 0o755, tarfmt::DIR, 0, Vec::new())?;
    index.tree.walk(|path, node| w.node(path, node))?;
    drop(w.tar.finish().map_err(out_err)?);
    let control = Rc::try_unwrap(w.control)
        .map_err(|_| out_err(io::Error::other("the compressor is still in use")))?;
    control.into_inner().comp.finish().map_err(out_err)
}

/// The output's compressor, shared by the tar writer (through [`Sink`]) and the emitter,
/// which cuts gzip blocks around large members and puts blocks compressed ahead of time
/// ([`crate::ahead`]) in place of their data.
struct Control {
    comp: Compressor<AtomicFile>,
    /// Bytes still to come that are already in the stream as blocks compressed ahead.
    swallow: u64,
}

/// Ends the current gzip block (see [`Compressor::cut`]).
fn cut(control: &RefCell<Control>) -> io::Result<()> {
    let mut c = control.try_borrow_mut().map_err(io::Error::other)?;
    c.comp.cut()
}

/// The tar writer's side of [`Control`].
struct Sink(Rc<RefCell<Control>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut c = self.0.try_borrow_mut().map_err(io::Error::other)?;
        if c.swallow > 0 {
            let n = (c.swallow.min(buf.len() as u64)) as usize;
            c.swallow -= n as u64;
            return Ok(n);
        }
        c.comp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        let mut c = self.0.try_borrow_mut().map_err(io::Error::other)?;
        c.comp.flush()
    }
}

/// Writes entries into the tar.
struct Emitter<'a> {
    tar: TarWriter<Sink>,
    control: Rc<RefCell<Control>>,
    index: &'a Index,
    digests: &'a Digests,
    /// The compression level (blocks compressed ahead must have been made at it).
    level: i32,
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

    /// Copies a file's bytes from its input (or its blocks compressed ahead), checking a
    /// layer's digest on the way. A large member's data has gzip blocks of its own: a block
    /// is cut before and after it (see [`crate::ahead`]).
    fn file(&mut self, path: &[u8], input: usize, data: Data) -> Result<(), Error> {
        let src = self.index.inputs.get(input).ok_or_else(|| {
            self.out_err(io::Error::other(
                "a member of an input that was not indexed",
            ))
        })?;
        let ahead = self.index.ahead.as_ref();
        if let Some((ahead, member)) =
            ahead.and_then(|a| Some((a, a.get((input, data.offset), self.level)?)))
        {
            if member.size == data.size {
                return self.file_ahead(path, src, ahead, member);
            }
        }
        let mut expected = self.digests.expected(path);
        let mut hasher = expected.as_ref().map(|_| Sha256::new());
        let own_blocks = Ahead::wanted(data.size);
        if own_blocks {
            cut(&self.control).map_err(|e| self.out_err(e))?;
        }
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
        if own_blocks {
            // Before the padding, which belongs to the next block.
            cut(&self.control).map_err(|source| Error::Output {
                out: self.out.to_path_buf(),
                source,
            })?;
        }
        w.finish(data.size).map_err(|e| self.data_err(e))?;
        let (Some(expected), Some(h)) = (expected, hasher) else {
            return Ok(());
        };
        check_digest(src, path, expected, h.finalize().into())
    }

    /// Puts a member's blocks compressed ahead into the stream (after a cut, and the next byte
    /// starts a block); the tar writer's copy of its data (zeros) is swallowed, so that it
    /// still counts and pads the entry.
    fn file_ahead(
        &mut self,
        path: &[u8],
        src: &Input,
        ahead: &Ahead,
        member: &Member,
    ) -> Result<(), Error> {
        let cache_err = |source| Error::Cache {
            out: self.out.to_path_buf(),
            source,
        };
        {
            let mut c = self
                .control
                .try_borrow_mut()
                .map_err(|e| self.out_err(io::Error::other(e)))?;
            for block in ahead.blocks(member) {
                c.comp
                    .write_block(block.map_err(cache_err)?)
                    .map_err(|e| self.out_err(e))?;
            }
            c.swallow = member.size;
        }
        self.buf.fill(0);
        let mut w = self.tar.entry_writer();
        let mut left = member.size;
        while left > 0 {
            let n = left.min(self.buf.len() as u64) as usize;
            w.write_all(&self.buf[..n])
                .map_err(|source| Error::Output {
                    out: self.out.to_path_buf(),
                    source,
                })?;
            left -= n as u64;
        }
        w.finish(member.size).map_err(|e| self.data_err(e))?;
        let expected = self.digests.expected(path);
        match expected {
            Some(e) if !stored_compressed(&Some(e.clone()), &member.head) => {
                check_digest(src, path, e, member.sha256)
            }
            _ => Ok(()),
        }
    }

    fn data_err(&self, e: DataError) -> Error {
        match e {
            DataError::Write(source) | DataError::Read(source) => self.out_err(source),
            other => self.out_err(io::Error::other(other.to_string())),
        }
    }
}

/// Compares a layer member's sha256 with the one it must have.
fn check_digest(
    src: &Input,
    path: &[u8],
    (want, source): Expected,
    got: [u8; 32],
) -> Result<(), Error> {
    if got == want {
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

/// Whether a member whose digest comes from a diff_id starts like a gzip or zstd stream: its
/// diff_id is that of its decompressed bytes, which this pass does not see.
fn stored_compressed(expected: &Option<Expected>, first: &[u8]) -> bool {
    matches!(expected, Some((_, Source::DiffId(_))))
        && Compression::detect(first) != Compression::None
}
