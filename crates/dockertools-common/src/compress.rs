//! Compression formats by magic bytes, and in-process (de)compression (no pigz, no `file`).
//!
//! Gzip output carries no file name and no timestamp (as `pigz -n`), so the bytes depend
//! only on the input and the level. Both compressors are parallel and deterministic:
//! gzip cuts the input into fixed 1 MiB blocks, compresses them on rayon's threads (each block
//! primed with the 32 KiB before it, as pigz does) and joins them with sync flushes; zstd uses
//! its own worker threads, whose output does not depend on how many there are.
//! So the compressed bytes depend only on the input, the format and the level, never on the
//! number of threads or the machine.

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
    /// gzip, in parallel blocks.
    Gzip(ParGz<W>),
    /// Zstandard.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// Starts compressing into `out` at `level` (see [`Compression::default_level`]).
    pub fn new(out: W, kind: Compression, level: i32) -> io::Result<Self> {
        Ok(match kind {
            Compression::None => Compressor::None(out),
            Compression::Gzip => Compressor::Gzip(ParGz::new(out, level.clamp(0, 9) as u32)),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                // Worker mode (any count >= 1) gives the same bytes for any number of workers.
                let workers = std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .max(1) as u32;
                enc.multithread(workers)?;
                Compressor::Zstd(enc)
            }
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

/// Input bytes per gzip block.
const GZ_BLOCK: usize = 1 << 20;
/// Dictionary carried from one block to the next (deflate's window).
const GZ_DICT: usize = 32 * 1024;
/// Blocks compressed per parallel batch.
const GZ_BATCH: usize = 8;

/// Parallel, deterministic gzip writer (pigz's scheme with fixed block boundaries).
pub struct ParGz<W: Write> {
    out: W,
    level: u32,
    /// Full blocks waiting to be compressed, plus the block being filled (last).
    blocks: Vec<Vec<u8>>,
    /// The last 32 KiB of the input before `blocks[0]`.
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    size: u64,
    header_done: bool,
}

fn deflate_block(input: &[u8], dict: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = flate2::Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    let flush = if last {
        flate2::FlushCompress::Finish
    } else {
        flate2::FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(input.len() / 4 + 64 * 1024);
        }
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == input.len();
        match status {
            flate2::Status::StreamEnd => break,
            _ if done_input && !last && out.capacity() > out.len() => break,
            _ => {}
        }
    }
    Ok(out)
}

impl<W: Write> ParGz<W> {
    fn new(out: W, level: u32) -> Self {
        ParGz {
            out,
            level,
            blocks: vec![Vec::with_capacity(GZ_BLOCK)],
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            size: 0,
            header_done: false,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_done {
            let xfl = match self.level {
                9 => 2,
                1 => 4,
                _ => 0,
            };
            self.out
                .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])?;
            self.header_done = true;
        }
        Ok(())
    }

    /// Compresses the full blocks (all but the one being filled), or all of them when `last`.
    fn compress_batch(&mut self, last: bool) -> io::Result<()> {
        use rayon::prelude::*;
        self.header()?;
        let n = if last {
            self.blocks.len()
        } else {
            self.blocks.len() - 1
        };
        let level = self.level;
        let jobs: Vec<(&[u8], &[u8], bool)> = (0..n)
            .map(|i| {
                let dict: &[u8] = if i == 0 {
                    &self.dict
                } else {
                    let prev = &self.blocks[i - 1];
                    &prev[prev.len().saturating_sub(GZ_DICT)..]
                };
                (self.blocks[i].as_slice(), dict, last && i + 1 == n)
            })
            .collect();
        let outs: Vec<io::Result<Vec<u8>>> = jobs
            .par_iter()
            .map(|(input, dict, fin)| deflate_block(input, dict, level, *fin))
            .collect();
        for o in outs {
            self.out.write_all(&o?)?;
        }
        if n > 0 {
            let tail = &self.blocks[n - 1];
            self.dict = tail[tail.len().saturating_sub(GZ_DICT)..].to_vec();
        }
        self.blocks.drain(..n);
        if self.blocks.is_empty() {
            self.blocks.push(Vec::with_capacity(GZ_BLOCK));
        }
        Ok(())
    }

    /// Writes the last block and the gzip trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.compress_batch(true)?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&(self.size as u32).to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.size += buf.len() as u64;
        let mut rest = buf;
        while !rest.is_empty() {
            let cur = self.blocks.len() - 1;
            let room = GZ_BLOCK - self.blocks[cur].len();
            let take = room.min(rest.len());
            self.blocks[cur].extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.blocks[cur].len() == GZ_BLOCK {
                self.blocks.push(Vec::with_capacity(GZ_BLOCK));
                if self.blocks.len() > GZ_BATCH {
                    self.compress_batch(false)?;
                }
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        let mut x: u64 = 1;
        (0..n)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if i % 7 < 4 {
                    b"abcdefgh"[(x >> 60) as usize & 7]
                } else {
                    (x >> 56) as u8
                }
            })
            .collect()
    }

    #[test]
    fn gzip_round_trips_and_ignores_thread_count() -> io::Result<()> {
        let data = sample(5 * GZ_BLOCK + 12345);
        let compress = |threads: usize| -> io::Result<Vec<u8>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(io::Error::other)?;
            pool.install(|| {
                let mut c = Compressor::new(Vec::new(), Compression::Gzip, 6)?;
                for chunk in data.chunks(777_777) {
                    c.write_all(chunk)?;
                }
                c.finish()
            })
        };
        let one = compress(1)?;
        assert_eq!(compress(2)?, one);
        assert_eq!(compress(8)?, one);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&one[..]).read_to_end(&mut back)?;
        assert_eq!(back, data);
        let mut empty = Compressor::new(Vec::new(), Compression::Gzip, 6)?.finish()?;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&empty[..]).read_to_end(&mut out)?;
        assert!(out.is_empty());
        empty.clear();
        Ok(())
    }

    #[test]
    fn zstd_ignores_thread_count() -> io::Result<()> {
        let data = sample(3 * GZ_BLOCK);
        let run = |threads: u32| -> io::Result<Vec<u8>> {
            let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
            enc.multithread(threads)?;
            enc.write_all(&data)?;
            enc.finish()
        };
        let one = run(1)?;
        assert_eq!(run(2)?, one);
        assert_eq!(run(8)?, one);
        assert_eq!(zstd::stream::decode_all(&one[..])?, data);
        Ok(())
    }
}
