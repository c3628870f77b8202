//! The second pass: the merged tree written as the sorted GNU tar mergeImages' final
//! `tar --sort=name --hard-dereference --owner=0 --group=0 --mtime=@N --xform s:^./:: -c .`
//! gives, through the compressor.
//!
//! A layer member is hashed while it is copied (or was, when its blocks were compressed
//! ahead); bytes that do not match the digest its image config gives it ([`crate::digests`])
//! are an error, so a corrupt input never becomes an image that looks whole.

use std::cell::RefCell;
use std::io::{self, Write};
use std::path::Path;
use std::rc::Rc;

use dockertools_common::atomic::AtomicFile;
use dockertools_common::compress::{Compression, Compressor};
use dockertools_common::hash::hex;
use dockertools_common::tar::gnu::GnuOptions;
use dockertools_common::tar::writer::{Data as TarData, DataError, TarWriter};
use dockertools_common::tar::{self as tarfmt, Dialect, Header};
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
    // `--owner=0 --group=0`: GNU tar names them `root`, in the `././@LongLink` records too.
    let dialect = Dialect::Gnu(GnuOptions {
        numeric_owner: false,
    });
    let control = Rc::new(RefCell::new(Control { comp, swallow: 0 }));
    let mut w = Emitter {
        tar: TarWriter::new(Out(Rc::clone(&control)), dialect),
        control,
        index,
        digests,
        level: format.level,
        mtime: format.mtime,
        out,
        buf: vec![0u8; 1 << 20],
    };
    w.append(
        &w.header(b"./".to_vec(), 0o755, tarfmt::DIR),
        TarData::Empty,
    )?;
    index.tree.walk(|path, node| w.node(path, node))?;
    drop(w.tar.finish().map_err(out_err)?);
    let control = Rc::try_unwrap(w.control)
        .map_err(|_| out_err(io::Error::other("the compressor is still in use")))?;
    control.into_inner().comp.finish().map_err(out_err)
}

/// The output's compressor, shared by the tar writer (through [`Out`]) and the emitter, which
/// cuts gzip blocks around large members and puts blocks compressed ahead of time
/// ([`crate::ahead`]) in place of their data.
struct Control {
    comp: Compressor<AtomicFile>,
    /// Bytes still to come that are already in the stream as blocks compressed ahead.
    swallow: u64,
}

/// The tar writer's side of [`Control`].
struct Out(Rc<RefCell<Control>>);

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut c = self.0.try_borrow_mut().map_err(io::Error::other)?;
        if c.swallow > 0 {
            let n = c.swallow.min(buf.len() as u64) as usize;
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

/// Ends the current gzip block (see [`Compressor::cut`]).
fn cut(control: &RefCell<Control>) -> io::Result<()> {
    let mut c = control.try_borrow_mut().map_err(io::Error::other)?;
    c.comp.cut()
}

/// Writes entries into the tar.
struct Emitter<'a> {
    tar: TarWriter<Out>,
    control: Rc<RefCell<Control>>,
    index: &'a Index,
    digests: &'a Digests,
    /// The compression level (blocks compressed ahead must have been made at it).
    level: i32,
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

    /// Copies a file's bytes from its input (or its blocks compressed ahead), checking a
    /// layer's digest on the way. A large member's data has gzip blocks of its own: a block
    /// is cut before and after it (see [`crate::ahead`]).
    fn file(&mut self, h: &Header, path: &[u8], input: usize, data: Data) -> Result<(), Error> {
        let src = self.index.inputs.get(input).ok_or_else(|| {
            self.out_err(io::Error::other(
                "a member of an input that was not indexed",
            ))
        })?;
        let ahead = self.index.ahead.as_ref();
        let key = (input, data.offset);
        if let Some((ahead, member)) = ahead.and_then(|a| Some((a, a.get(key, self.level)?))) {
            if member.size == data.size {
                return self.file_ahead(h, path, src, (ahead, member));
            }
        }
        let mut expected = self.digests.expected(path);
        let mut hasher = expected.as_ref().map(|_| Sha256::new());
        let own_blocks = Ahead::wanted(data.size);
        let mut w = self
            .tar
            .append_writer(h)
            .map_err(|e| data_err(self.out, h, e))?;
        if own_blocks {
            cut(&self.control).map_err(|source| Error::Output {
                out: self.out.to_path_buf(),
                source,
            })?;
        }
        let mut done = 0u64;
        while done < data.size {
            let n = (data.size - done).min(self.buf.len() as u64) as usize;
            let chunk = &mut self.buf[..n];
            self.index
                .read_exact_at(input, chunk, data.offset + done, path)?;
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
        w.finish().map_err(|e| data_err(self.out, h, e))?;
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
        h: &Header,
        path: &[u8],
        src: &Input,
        (ahead, member): (&Ahead, &Member),
    ) -> Result<(), Error> {
        let out = self.out;
        let out_err = |source| Error::Output {
            out: out.to_path_buf(),
            source,
        };
        let mut w = self
            .tar
            .append_writer(h)
            .map_err(|e| data_err(self.out, h, e))?;
        {
            let mut c = self
                .control
                .try_borrow_mut()
                .map_err(|e| out_err(io::Error::other(e)))?;
            for block in ahead.blocks(member) {
                let block = block.map_err(|source| Error::Cache {
                    out: out.to_path_buf(),
                    source,
                })?;
                c.comp.write_block(block).map_err(out_err)?;
            }
            c.swallow = member.size;
        }
        self.buf.fill(0);
        let mut left = member.size;
        while left > 0 {
            let n = left.min(self.buf.len() as u64) as usize;
            w.write_all(&self.buf[..n]).map_err(out_err)?;
            left -= n as u64;
        }
        w.finish().map_err(|e| data_err(self.out, h, e))?;
        match self.digests.expected(path) {
            Some(e) if !stored_compressed(&Some(e.clone()), &member.head) => {
                check_digest(src, path, e, member.sha256)
            }
            _ => Ok(()),
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
        from: source,
        actual: hex(&got),
    })
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
