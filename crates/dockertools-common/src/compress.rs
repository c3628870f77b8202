//! Compression formats by magic bytes, and in-process (de)compression (no pigz, no `file`).
//!
//! Gzip output carries no file name and no timestamp (as `pigz -n`), so the bytes depend
//! only on the input and the level.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

/// A stream's compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Recognises a stream by its first bytes.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The name used in messages and flags (`none`, `gz`, `zstd`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gz",
            Compression::Zstd => "zstd",
        }
    }

    /// Default level: 6 for gzip (as gzip and pigz), 3 for zstd (as the zstd command).
    pub fn default_level(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 6,
            Compression::Zstd => 3,
        }
    }
}

/// Opens `path` and returns its compression and a reader of the decompressed bytes.
pub fn open_decompressed(path: &Path) -> io::Result<(Compression, Box<dyn Read + Send>)> {
    let file = File::open(path)?;
    let mut buf = BufReader::with_capacity(1 << 20, file);
    let kind = Compression::detect(buf.fill_buf()?);
    let reader: Box<dyn Read + Send> = match kind {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
    };
    Ok((kind, reader))
}

/// A writer that compresses into `W`; call [`Compressor::finish`].
pub enum Compressor<W: Write> {
    /// Pass-through.
    None(W),
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// Zstandard.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// Starts compressing into `out` at `level` (see [`Compression::default_level`]).
    pub fn new(out: W, kind: Compression, level: i32) -> io::Result<Self> {
        Ok(match kind {
            Compression::None => Compressor::None(out),
            Compression::Gzip => {
                let level = flate2::Compression::new(level.clamp(0, 9) as u32);
                Compressor::Gzip(
                    flate2::GzBuilder::new()
                        .mtime(0)
                        .operating_system(3)
                        .write(out, level),
                )
            }
            Compression::Zstd => Compressor::Zstd(zstd::stream::write::Encoder::new(out, level)?),
        })
    }

    /// Ends the stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(g) => g.flush(),
            Compressor::Zstd(z) => z.flush(),
        }
    }
}
