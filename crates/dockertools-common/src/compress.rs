//! Compression formats by magic bytes, and in-process (de)compression (no pigz, no `file`).
//!
//! Gzip output carries no file name and no timestamp (as `pigz -n`), so the bytes depend
//! only on the input and the level. Both compressors are parallel and deterministic:
//! gzip cuts the input into fixed 1 MiB blocks, compresses each on its own with libdeflate on
//! worker threads (as many as rayon's) and joins them into one deflate stream with sync
//! flushes; zstd uses its own worker threads, whose output does not depend on how many there
//! are. Decompression (flate2 on zlib-rs, and zstd) is streaming, on a thread of its own
//! running 1 MiB ahead of the reader.
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
        Compression::Gzip => Box::new(ReadAhead::start(Box::new(
            flate2::bufread::MultiGzDecoder::new(buf),
        ))),
        Compression::Zstd => Box::new(ReadAhead::start(Box::new(
            zstd::stream::read::Decoder::with_buffer(buf)?,
        ))),
    };
    Ok((kind, reader))
}

/// What the read-ahead thread sends.
enum Ahead {
    Data(Vec<u8>),
    End,
    Failed(io::Error),
}

/// Runs a (decompressing) reader on a thread of its own, 1 MiB ahead of the consumer, so that
/// decompression overlaps with whatever is done with its output.
struct ReadAhead {
    rx: std::sync::mpsc::Receiver<Ahead>,
    cur: Vec<u8>,
    pos: usize,
    /// Set once the stream has ended (`Ok`) or failed: later reads repeat that outcome.
    finished: Option<Result<(), io::ErrorKind>>,
}

impl ReadAhead {
    fn start(mut r: Box<dyn Read + Send>) -> ReadAhead {
        const CHUNK: usize = 1 << 20;
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::spawn(move || loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            let msg = loop {
                match r.read(&mut buf[filled..]) {
                    Ok(0) => break None,
                    Ok(n) => {
                        filled += n;
                        if filled == CHUNK {
                            break None;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Some(Ahead::Failed(e)),
                }
            };
            let at_end = filled < CHUNK;
            buf.truncate(filled);
            if filled > 0 && tx.send(Ahead::Data(buf)).is_err() {
                return;
            }
            if let Some(failed) = msg {
                let _ = tx.send(failed);
                return;
            }
            if at_end {
                let _ = tx.send(Ahead::End);
                return;
            }
        });
        ReadAhead {
            rx,
            cur: Vec::new(),
            pos: 0,
            finished: None,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.finished {
                Some(Ok(())) => return Ok(0),
                Some(Err(kind)) => {
                    return Err(io::Error::new(kind, "decompression failed earlier"))
                }
                None => {}
            }
            match self.rx.recv() {
                Ok(Ahead::Data(v)) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Ok(Ahead::End) => self.finished = Some(Ok(())),
                Ok(Ahead::Failed(e)) => {
                    self.finished = Some(Err(e.kind()));
                    return Err(e);
                }
                Err(_) => {
                    self.finished = Some(Err(io::ErrorKind::Other));
                    return Err(io::Error::other("the decompression thread stopped"));
                }
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
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
            Compression::Gzip => Compressor::Gzip(ParGz::new(out, level.clamp(0, 9))?),
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

/// A block's compressed bytes, by block number.
type Done = (usize, io::Result<Vec<u8>>);

/// Parallel, deterministic gzip writer: fixed 1 MiB blocks, each compressed on its own by
/// libdeflate on a worker thread, joined into one deflate stream (every block but the last
/// ends with a sync-flush marker, see [`crate::deflate::unfinalize`]), written in order as soon
/// as each is ready. The bytes do not depend on how many workers there are. The workers start
/// with the second block: a stream of one block is compressed on the caller's thread.
pub struct ParGz<W: Write> {
    out: W,
    level: libdeflater::CompressionLvl,
    /// The block being filled.
    block: Vec<u8>,
    workers: Option<Workers>,
    /// Compressed blocks that arrived ahead of their turn.
    ready: std::collections::BTreeMap<usize, io::Result<Vec<u8>>>,
    submitted: usize,
    written: usize,
    crc: crc32fast::Hasher,
    size: u64,
}

/// The compressing threads' two channels.
struct Workers {
    /// Jobs: block number, input, last block. Dropping it stops the threads.
    jobs: std::sync::mpsc::SyncSender<(usize, Vec<u8>, bool)>,
    results: std::sync::mpsc::Receiver<Done>,
}

impl Workers {
    /// As many threads as rayon would use (RAYON_NUM_THREADS or the cores).
    fn start(level: libdeflater::CompressionLvl) -> Workers {
        use std::sync::mpsc::{channel, sync_channel};
        use std::sync::{Arc, Mutex};
        let n = rayon::current_num_threads().max(1);
        let (jobs, job_rx) = sync_channel::<(usize, Vec<u8>, bool)>(n);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, results) = channel::<Done>();
        for _ in 0..n {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            std::thread::spawn(move || {
                let mut c = libdeflater::Compressor::new(level);
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((i, input, last)) = job else { return };
                    if done_tx
                        .send((i, deflate_block(&mut c, &input, last)))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        Workers { jobs, results }
    }
}

/// Compresses one block as a raw deflate stream that continues (or ends, when `last`).
fn deflate_block(c: &mut libdeflater::Compressor, input: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut out = vec![0; c.deflate_compress_bound(input.len())];
    let n = c
        .deflate_compress(input, &mut out)
        .map_err(|e| io::Error::other(format!("gzip compression failed: {e}")))?;
    out.truncate(n);
    if last {
        Ok(out)
    } else {
        crate::deflate::unfinalize(&out).map_err(io::Error::other)
    }
}

fn stopped() -> io::Error {
    io::Error::other("the gzip workers stopped")
}

impl<W: Write> ParGz<W> {
    fn new(mut out: W, level: i32) -> io::Result<Self> {
        let lvl = libdeflater::CompressionLvl::new(level)
            .map_err(|_| io::Error::other(format!("gzip level {level} is not 0-12")))?;
        let xfl = match level {
            9.. => 2,
            1 => 4,
            _ => 0,
        };
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])?;
        Ok(ParGz {
            out,
            level: lvl,
            block: Vec::with_capacity(GZ_BLOCK),
            workers: None,
            ready: std::collections::BTreeMap::new(),
            submitted: 0,
            written: 0,
            crc: crc32fast::Hasher::new(),
            size: 0,
        })
    }

    /// Hands the current block to the workers, then writes what is ready; waits while too
    /// many blocks are in flight.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let input = std::mem::replace(&mut self.block, Vec::with_capacity(GZ_BLOCK));
        let level = self.level;
        self.workers
            .get_or_insert_with(|| Workers::start(level))
            .jobs
            .send((self.submitted, input, last))
            .map_err(|_| stopped())?;
        self.submitted += 1;
        let max_in_flight = 2 * rayon::current_num_threads().max(1) + 2;
        self.write_ready(|gz| gz.submitted - gz.written > max_in_flight)
    }

    /// Writes compressed blocks in order: those already done, and more while `wait` holds.
    fn write_ready(&mut self, wait: impl Fn(&Self) -> bool) -> io::Result<()> {
        loop {
            while let Some(block) = self.ready.remove(&self.written) {
                self.out.write_all(&block?)?;
                self.written += 1;
            }
            let waiting = wait(self);
            let Some(workers) = &self.workers else {
                return Ok(());
            };
            let next = if waiting {
                workers.results.recv().map_err(|_| stopped())?
            } else {
                match workers.results.try_recv() {
                    Ok(done) => done,
                    Err(_) => return Ok(()),
                }
            };
            self.ready.insert(next.0, next.1);
        }
    }

    /// Writes the last block and the gzip trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.workers.is_none() {
            // One block in all: no threads needed.
            let mut c = libdeflater::Compressor::new(self.level);
            let last = deflate_block(&mut c, &self.block, true)?;
            self.out.write_all(&last)?;
        } else {
            self.submit(true)?;
            self.write_ready(|gz| gz.written < gz.submitted)?;
        }
        self.workers = None;
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
            let take = (GZ_BLOCK - self.block.len()).min(rest.len());
            self.block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.block.len() == GZ_BLOCK {
                self.submit(false)?;
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
    fn read_ahead_passes_data_end_and_errors_through() -> io::Result<()> {
        let data = sample(3 * (1 << 20) + 5);
        let mut back = Vec::new();
        ReadAhead::start(Box::new(io::Cursor::new(data.clone()))).read_to_end(&mut back)?;
        assert_eq!(back, data);
        let broken = io::Read::chain(io::Cursor::new(vec![1u8; 10]), Failing);
        let mut r = ReadAhead::start(Box::new(broken));
        let mut buf = Vec::new();
        assert!(r.read_to_end(&mut buf).is_err());
        assert_eq!(buf, vec![1u8; 10]);
        assert!(
            r.read(&mut [0u8; 4]).is_err(),
            "a failure is not turned into an end"
        );
        Ok(())
    }

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("corrupt"))
        }
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
