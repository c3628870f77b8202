//! Compression formats by magic bytes, and in-process (de)compression (no pigz, no `file`).
//!
//! Gzip output carries no file name and no timestamp (as `pigz -n`), so the bytes depend
//! only on the input and the level. Both compressors are parallel and deterministic:
//! gzip cuts the input into fixed 1 MiB blocks (and where the caller cuts), compresses each on
//! its own with libdeflate on rayon's pool and joins them into one deflate stream with sync
//! flushes; zstd uses its own worker threads (as many as rayon's pool has), whose output does
//! not depend on how many there are.
//! So the compressed bytes depend only on the input, the format and the level, never on the
//! number of threads or the machine.
//!
//! Decompression (flate2 on zlib-rs, and zstd) is streaming, on a thread of its own running a
//! few MiB ahead of the reader, and checked: every gzip member's CRC32 and length, every zstd
//! frame's checksum, and nothing but padding after the data (see the `decode` module).
//! A consumer such as a tar reader stops at the archive's end, before the checks; it calls
//! [`Decompressed::finish`] to read the rest and learn the verdict.
//! Memory: a few MiB of buffers per stream, whatever its size.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

mod decode;
mod incompressible;
pub mod splice;

pub use splice::{Segment, Segments};

/// A stream's compression, and the value of every tool's compression flag
/// (`--compress`, `--layer-compression`: `none`, `gz`, `zstd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (RFC 1952).
    #[value(name = "gz")]
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

    /// The levels a compressor takes: gzip 0-9, zstd 1-19 (none: only 0, its default).
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Compression::None => 0..=0,
            Compression::Gzip => 0..=9,
            Compression::Zstd => 1..=19,
        }
    }

    /// Checks a level given for this compression: an error message when it does not apply.
    pub fn check_level(self, level: i32) -> Result<(), String> {
        let r = self.levels();
        match self {
            Compression::None => Err(format!("--level {level}: the output is not compressed")),
            _ if !r.contains(&level) => Err(format!(
                "--level {level} is out of range for {} ({}-{})",
                self.name(),
                r.start(),
                r.end()
            )),
            _ => Ok(()),
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

/// Recognises the compression of `r` by its first bytes and returns a reader of the
/// decompressed bytes.
/// The bytes are read from `r` once, in order, so a pipe works as well as a file.
/// Call [`Decompressed::finish`] once the consumer is done: it reads the rest of the stream
/// and says whether it was complete and intact.
pub fn decompress<R: Read + Send + 'static>(r: R) -> io::Result<(Compression, Decompressed)> {
    open(r, false)
}

/// [`decompress`], also noting the sync points of a gzip input's deflate data whose gzip
/// header does not say it was compressed for speed (XFL 4): see [`Decompressed::segments`]
/// and the `splice` module.
pub fn decompress_with_segments<R: Read + Send + 'static>(
    r: R,
) -> io::Result<(Compression, Decompressed)> {
    open(r, true)
}

fn open<R: Read + Send + 'static>(r: R, segments: bool) -> io::Result<(Compression, Decompressed)> {
    let mut input = decode::Input::new(r, 1 << 20);
    let kind = Compression::detect(input.peek(4)?);
    let source = match kind {
        Compression::None => Source::Plain(Box::new(input)),
        Compression::Gzip => {
            let mut gunzip = decode::Gunzip::new(input);
            let found = segments.then(|| {
                let found = Arc::new(Mutex::new(Vec::new()));
                gunzip.note_segments(Arc::clone(&found));
                found
            });
            Source::Ahead(ReadAhead::start(Box::new(gunzip), found))
        }
        Compression::Zstd => Source::Ahead(ReadAhead::start(
            Box::new(decode::Unzstd::new(input)?),
            None,
        )),
    };
    Ok((kind, Decompressed(source)))
}

/// Opens `path` and returns its compression and a reader of the decompressed bytes (see
/// [`decompress`]).
pub fn open_decompressed(path: &Path) -> io::Result<(Compression, Decompressed)> {
    decompress(File::open(path)?)
}

/// The decompressed bytes of a stream; [`Decompressed::finish`] gives the verdict of its
/// integrity checks.
pub struct Decompressed(Source);

enum Source {
    Plain(Box<dyn Read + Send>),
    Ahead(ReadAhead),
}

impl Decompressed {
    /// Reads the rest of the stream (discarding it) and checks it: `Err` for a gzip member whose
    /// CRC32 or length does not match, a zstd frame whose checksum does not match, corrupt or
    /// truncated compressed data, or bytes after the last gzip member or zstd frame.
    /// Plain input is not read further: it has nothing to check.
    pub fn finish(self) -> io::Result<()> {
        match self.0 {
            Source::Plain(_) => Ok(()),
            Source::Ahead(mut r) => {
                while r.next_chunk()?.is_some() {}
                Ok(())
            }
        }
    }

    /// The segments of a gzip input opened by [`decompress_with_segments`], as they come in
    /// with the data they end in; `None` for other inputs.
    pub fn segments(&self) -> Option<Segments> {
        match &self.0 {
            Source::Ahead(r) => r.segments.clone(),
            Source::Plain(_) => None,
        }
    }
}

impl Read for Decompressed {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            Source::Plain(r) => r.read(out),
            Source::Ahead(r) => r.read(out),
        }
    }
}

/// What the read-ahead thread sends.
enum Ahead {
    /// Decompressed bytes, and the segments that ended in them.
    Data(Vec<u8>, Vec<Segment>),
    End,
    Failed(io::Error),
}

/// Runs a (decompressing) reader on a thread of its own, a few MiB ahead of the consumer, so
/// that decompression overlaps with whatever is done with its output.
/// The thread reads its stream to the end whether or not the consumer does; its end or error
/// reaches the consumer in order, after the data before it.
struct ReadAhead {
    rx: std::sync::mpsc::Receiver<Ahead>,
    cur: Vec<u8>,
    pos: usize,
    /// Bytes handed to the consumer.
    delivered: u64,
    /// The segments received, when the decoder notes them.
    segments: Option<Segments>,
    /// Set once the stream has ended (`Ok`) or failed: later reads repeat that outcome, the
    /// error with its kind and words.
    outcome: Option<Result<(), (io::ErrorKind, String)>>,
}

impl ReadAhead {
    fn start(mut r: Box<dyn Read + Send>, found: Option<Arc<Mutex<Vec<Segment>>>>) -> ReadAhead {
        const CHUNK: usize = 1 << 20;
        let segments = found.as_ref().map(|_| Segments::default());
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
            let ended = found
                .as_ref()
                .and_then(|f| f.lock().ok().map(|mut f| std::mem::take(&mut *f)))
                .unwrap_or_default();
            if filled > 0 && tx.send(Ahead::Data(buf, ended)).is_err() {
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
            delivered: 0,
            segments,
            outcome: None,
        }
    }

    /// The next chunk from the thread; `None` at the end. A failure, or a thread that
    /// stopped without saying why, is an error now and on every later call.
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        match &self.outcome {
            Some(Ok(())) => return Ok(None),
            Some(Err((kind, msg))) => return Err(io::Error::new(*kind, msg.clone())),
            None => {}
        }
        let failed = match self.rx.recv() {
            Ok(Ahead::Data(v, ended)) => {
                if let Some(segments) = &self.segments {
                    segments.receive(ended, self.delivered);
                }
                return Ok(Some(v));
            }
            Ok(Ahead::End) => {
                self.outcome = Some(Ok(()));
                return Ok(None);
            }
            Ok(Ahead::Failed(e)) => e,
            Err(_) => io::Error::other("the decompression thread stopped"),
        };
        self.outcome = Some(Err((failed.kind(), failed.to_string())));
        Err(failed)
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.next_chunk()? {
                Some(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        self.delivered += n as u64;
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
            Compression::Gzip => Compressor::Gzip(ParGz::new(out, gzip_level(level))?),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                // A content checksum, as the zstd command writes by default, so that readers
                // can verify what they decompress.
                enc.include_checksum(true)?;
                // Worker mode (any count >= 1) gives the same bytes for any number of workers;
                // as many as rayon's pool has (RAYON_NUM_THREADS, or the cores).
                let workers = rayon::current_num_threads().max(1) as u32;
                enc.multithread(workers)?;
                Compressor::Zstd(enc)
            }
        })
    }

    /// Ends the current gzip block here, so that the next byte starts a block (see
    /// [`ParGz::cut`]); nothing for the other formats, whose bytes do not depend on it.
    pub fn cut(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(g) => g.cut(),
            _ => Ok(()),
        }
    }

    /// Puts a gzip block compressed ahead of time into the stream (see [`ParGz::write_block`]);
    /// an error for the other formats.
    pub fn write_block(&mut self, block: GzBlock) -> io::Result<()> {
        match self {
            Compressor::Gzip(g) => g.write_block(block),
            _ => Err(io::Error::other(
                "a gzip block for a stream that is not gzip",
            )),
        }
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

/// The libdeflate level [`Compressor`] uses for gzip at `level` (gzip's 0-9).
pub fn gzip_level(level: i32) -> i32 {
    level.clamp(0, 9)
}

/// Input bytes per gzip block (the default, which the output bytes depend on).
pub const GZ_BLOCK: usize = 1 << 20;

/// One gzip block: raw deflate data that continues the stream (or ends it, for the last
/// block), with the CRC32 and length of the input it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GzBlock {
    /// The raw deflate bytes, ending on a byte boundary.
    pub deflate: Vec<u8>,
    /// CRC32 of the block's input.
    pub crc: u32,
    /// Length of the block's input.
    pub len: u64,
}

/// A block's result, by sequence number.
type Done = (usize, io::Result<GzBlock>);

thread_local! {
    /// One libdeflate compressor per level on each thread that compresses (its tables are
    /// a few hundred KiB, made once instead of once per block).
    static DEFLATERS: std::cell::RefCell<Vec<(i32, libdeflater::Compressor)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Compresses `input` as one block at `level` with this thread's compressor.
fn compress_block(level: i32, input: &[u8], last: bool) -> io::Result<GzBlock> {
    DEFLATERS.with(|cell| {
        let mut all = cell.borrow_mut();
        let at = match all.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                let lvl = libdeflater::CompressionLvl::new(level)
                    .map_err(|_| io::Error::other(format!("gzip level {level} is not 0-12")))?;
                all.push((level, libdeflater::Compressor::new(lvl)));
                all.len() - 1
            }
        };
        let (_, c) = &mut all[at];
        Ok(GzBlock {
            deflate: deflate_block(c, input, last)?,
            crc: crc32fast::hash(input),
            len: input.len() as u64,
        })
    })
}

/// Gzip blocks compressed on rayon's global pool (the one pool every parallel stage draws on)
/// and handed back in the order they were submitted. Blocks compressed elsewhere (ahead of time)
/// can take their place in that order with [`GzBlocks::push_done`].
pub struct GzBlocks {
    level: i32,
    tx: std::sync::mpsc::Sender<Done>,
    rx: std::sync::mpsc::Receiver<Done>,
    /// Blocks that arrived ahead of their turn.
    ready: std::collections::BTreeMap<usize, io::Result<GzBlock>>,
    submitted: usize,
    taken: usize,
}

impl GzBlocks {
    /// A pool of blocks at libdeflate `level` (0-12).
    pub fn new(level: i32) -> io::Result<GzBlocks> {
        libdeflater::CompressionLvl::new(level)
            .map_err(|_| io::Error::other(format!("gzip level {level} is not 0-12")))?;
        let (tx, rx) = std::sync::mpsc::channel();
        Ok(GzBlocks {
            level,
            tx,
            rx,
            ready: std::collections::BTreeMap::new(),
            submitted: 0,
            taken: 0,
        })
    }

    /// Hands `input` to the pool as the next block; `last` ends the deflate stream.
    /// On one of rayon's own threads (a stage that is itself one of many parallel tasks, such
    /// as one layer of several) the block is compressed at once instead: waiting there for
    /// other tasks could leave every thread waiting, and the parallelism is the caller's.
    pub fn submit(&mut self, input: Vec<u8>, last: bool) {
        let level = self.level;
        self.dispatch(move || compress_block(level, &input, last));
    }

    /// Hands the pool a segment of a gzip input's deflate data that should stand for `data`
    /// (see the `splice` module), coming after `window` in the output: it becomes the next
    /// block if it [`splice::fits`] there, else `data` is compressed as [`GzBlocks::submit`]
    /// would compress it.
    pub fn submit_spliced(&mut self, window: Vec<u8>, deflate: Vec<u8>, data: Vec<u8>) {
        let level = self.level;
        self.dispatch(move || {
            if splice::fits(&window, &deflate, &data) {
                return Ok(GzBlock {
                    deflate,
                    crc: crc32fast::hash(&data),
                    len: data.len() as u64,
                });
            }
            compress_block(level, &data, false)
        });
    }

    /// Runs `job` as the next block: on the pool, or at once on one of rayon's own threads
    /// (see [`GzBlocks::submit`]).
    fn dispatch(&mut self, job: impl FnOnce() -> io::Result<GzBlock> + Send + 'static) {
        let seq = self.submitted;
        self.submitted += 1;
        if rayon::current_thread_index().is_some() {
            self.ready.insert(seq, job());
            return;
        }
        let tx = self.tx.clone();
        rayon::spawn(move || {
            let _ = tx.send((seq, job()));
        });
    }

    /// Puts a block compressed ahead of time next in the order.
    pub fn push_done(&mut self, block: GzBlock) {
        self.ready.insert(self.submitted, Ok(block));
        self.submitted += 1;
    }

    /// Blocks submitted and not yet taken.
    pub fn pending(&self) -> usize {
        self.submitted - self.taken
    }

    /// Whether enough blocks are in flight to keep every thread busy: the caller should take
    /// one (waiting) before it submits more, so memory stays bounded.
    pub fn full(&self) -> bool {
        self.pending() > 2 * rayon::current_num_threads().max(1) + 2
    }

    /// The next block in order: `None` when there is none pending, or when it is not ready
    /// and `wait` is false.
    pub fn next(&mut self, wait: bool) -> Option<io::Result<GzBlock>> {
        loop {
            if let Some(block) = self.ready.remove(&self.taken) {
                self.taken += 1;
                return Some(block);
            }
            if self.pending() == 0 {
                return None;
            }
            let (seq, block) = match self.rx.try_recv() {
                Ok(done) => done,
                Err(_) if !wait => return None,
                // A job cannot vanish without sending (rayon aborts the process on a panicking
                // spawned job), and the sender in `self` keeps the channel open: this only
                // guards. Blocks are spawned only from outside the pool, so this wait never
                // holds one of its threads.
                Err(_) => self
                    .rx
                    .recv()
                    .unwrap_or_else(|_| (self.taken, Err(stopped()))),
            };
            self.ready.insert(seq, block);
        }
    }
}

/// Compresses one block as a raw deflate stream that continues (or ends, when `last`).
/// Stretches that deflate cannot shrink are stored (see the `incompressible` module); the rest
/// is compressed by libdeflate, one call per stretch, a long stretch cut in two so that the
/// walks that make the streams continue go two at a time
/// ([`crate::deflate::unfinalize_pair`]).
fn deflate_block(c: &mut libdeflater::Compressor, input: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let pieces = incompressible::halved(incompressible::pieces(input));
    let count = pieces.len();
    // Each piece's bytes: a complete libdeflate stream until it is made to continue.
    let mut done: Vec<Vec<u8>> = Vec::with_capacity(count.max(1));
    let mut open: Vec<usize> = Vec::new();
    for (i, (range, stored)) in pieces.into_iter().enumerate() {
        let piece = input.get(range).unwrap_or_default();
        let ends = last && i + 1 == count;
        if stored {
            let mut out = Vec::with_capacity(piece.len() + piece.len() / 8192 + 5);
            store(&mut out, piece, ends);
            done.push(out);
        } else {
            done.push(libdeflate(c, piece)?);
            if !ends {
                open.push(i);
            }
        }
    }
    if count == 0 {
        // An empty block: libdeflate's stream of nothing.
        done.push(libdeflate(c, &[])?);
        if !last {
            open.push(0);
        }
    }
    for pair in open.chunks(2) {
        match *pair {
            [a, b] => {
                let (head, tail) = done.split_at_mut(b);
                let (Some(sa), Some(sb)) = (head.get_mut(a), tail.first_mut()) else {
                    continue;
                };
                crate::deflate::unfinalize_pair(sa, sb).map_err(io::Error::other)?;
            }
            [a] => {
                if let Some(sa) = done.get_mut(a) {
                    crate::deflate::unfinalize(sa).map_err(io::Error::other)?;
                }
            }
            _ => {}
        }
    }
    Ok(done.concat())
}

/// `input` compressed by libdeflate as one complete raw deflate stream.
fn libdeflate(c: &mut libdeflater::Compressor, input: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = vec![0; c.deflate_compress_bound(input.len())];
    let n = c
        .deflate_compress(input, &mut out)
        .map_err(|e| io::Error::other(format!("gzip compression failed: {e}")))?;
    out.truncate(n);
    Ok(out)
}

/// Appends `data` as stored blocks (RFC 1951 3.2.4) of at most 65535 bytes, byte-aligned as
/// every piece of a block ends; the last one is final when `last`.
fn store(out: &mut Vec<u8>, data: &[u8], last: bool) {
    let mut parts = data.chunks(usize::from(u16::MAX)).peekable();
    while let Some(part) = parts.next() {
        let len = part.len() as u16;
        out.push(u8::from(last && parts.peek().is_none()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(part);
    }
}

fn stopped() -> io::Error {
    io::Error::other("a gzip block was lost")
}

/// Parallel, deterministic gzip writer: fixed blocks (1 MiB unless told otherwise), each
/// compressed on its own by libdeflate on rayon's threads ([`GzBlocks`]), joined into one
/// deflate stream (every block but the last ends with a sync-flush marker, see
/// [`crate::deflate::unfinalize`]) and written in order as soon as each is ready.
/// Each worker also takes its block's CRC32, which the writer combines.
/// Block boundaries are every `block_size` input bytes, and wherever the caller asks with
/// [`ParGz::cut`]; they never depend on the number of threads, and neither do the bytes.
pub struct ParGz<W: Write> {
    out: W,
    blocks: GzBlocks,
    /// Input bytes per block.
    block_size: usize,
    /// The block being filled.
    block: Vec<u8>,
    crc: crc32fast::Hasher,
    size: u64,
}

impl<W: Write> ParGz<W> {
    fn new(out: W, level: i32) -> io::Result<Self> {
        Self::with_block_size(out, level, GZ_BLOCK)
    }

    /// A gzip writer at libdeflate `level` (0-12) with blocks of `block_size` input bytes
    /// (at least 1) instead of 1 MiB: the output is valid gzip but not the bytes
    /// [`Compressor`] writes. For tests and fuzzing of the block joining.
    pub fn with_block_size(mut out: W, level: i32, block_size: usize) -> io::Result<Self> {
        let block_size = block_size.max(1);
        let blocks = GzBlocks::new(level)?;
        let xfl = match level {
            9.. => 2,
            1 => 4,
            _ => 0,
        };
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])?;
        Ok(ParGz {
            out,
            blocks,
            block_size,
            block: Vec::with_capacity(block_size),
            crc: crc32fast::Hasher::new(),
            size: 0,
        })
    }

    /// Hands the current block to the pool, then writes what is ready; waits while too
    /// many blocks are in flight.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let input = std::mem::replace(&mut self.block, Vec::with_capacity(self.block_size));
        self.blocks.submit(input, last);
        while self.blocks.full() {
            self.write_next(true)?;
        }
        while self.write_next(false)? {}
        Ok(())
    }

    /// Writes the next block in order if it is ready (or once it is, when `wait`); false when
    /// none was written.
    fn write_next(&mut self, wait: bool) -> io::Result<bool> {
        let Some(block) = self.blocks.next(wait) else {
            return Ok(false);
        };
        let block = block?;
        self.out.write_all(&block.deflate)?;
        self.crc.combine(&crc32fast::Hasher::new_with_initial_len(
            block.crc, block.len,
        ));
        self.size += block.len;
        Ok(true)
    }

    /// Ends the current block here (when it holds anything), so that the next byte starts a
    /// block. The boundaries, and so the bytes, are those the calls to `cut` make.
    pub fn cut(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.submit(false)
    }

    /// Cuts, then puts `block` (compressed ahead of time, not the last) next in the stream.
    /// It must be what this writer would make of its input after a cut, so that the bytes do
    /// not depend on whether a block was compressed ahead of time.
    pub fn write_block(&mut self, block: GzBlock) -> io::Result<()> {
        self.cut()?;
        self.blocks.push_done(block);
        while self.write_next(false)? {}
        Ok(())
    }

    /// Writes the last block and the gzip trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.write_next(true)? {}
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&(self.size as u32).to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let take = (self.block_size - self.block.len()).min(rest.len());
            self.block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.block.len() == self.block_size {
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
        let compress = || -> io::Result<Vec<u8>> {
            let mut c = Compressor::new(Vec::new(), Compression::Gzip, 6)?;
            for chunk in data.chunks(777_777) {
                c.write_all(chunk)?;
            }
            c.finish()
        };
        // On the global pool's threads (from this thread, outside the pool), and on the
        // calling thread alone (inside a pool, as one task of many).
        let parallel = compress()?;
        for threads in [1, 2, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(io::Error::other)?;
            assert!(pool.install(compress)? == parallel, "{threads} threads");
        }
        let one = parallel;
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
    fn stored_and_deflated_pieces_join_at_every_level() -> io::Result<()> {
        // Blocks of text, of random bytes (stored), of both, a block that ends on random bytes
        // (a stored final block) and one that ends on text, at the levels' extremes.
        let text = sample(GZ_BLOCK + 300_000);
        let random = noise(GZ_BLOCK + 70_000);
        let mut data = Vec::new();
        for (i, len) in [200_000usize, 5_000, 90_000, 1_200_000, 40_000]
            .into_iter()
            .enumerate()
        {
            data.extend_from_slice(&text[..len]);
            data.extend_from_slice(&random[i * 1000..i * 1000 + len / 2]);
        }
        for (input, level) in [
            (&data, 6),
            (&data, 1),
            (&data, 9),
            (&data, 0),
            (&random, 6),
            (&text, 6),
        ] {
            let gz = gzip(input, level)?;
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back)?;
            assert!(&back == input, "level {level}");
        }
        // Random bytes are stored: 5 bytes of header per 64 KiB, plus the gzip frame.
        let gz = gzip(&random, 6)?;
        assert!(
            gz.len() < random.len() + random.len() / 10_000 + 64,
            "{}",
            gz.len()
        );
        Ok(())
    }

    #[test]
    fn blocks_compressed_ahead_give_the_bytes_of_cuts() -> io::Result<()> {
        let data = sample(3 * GZ_BLOCK + 5000);
        let member = 1000..1000 + 2 * GZ_BLOCK + 77;
        // Written through, with a cut before and after the member.
        let mut cut = Compressor::new(Vec::new(), Compression::Gzip, 6)?;
        cut.write_all(&data[..member.start])?;
        cut.cut()?;
        cut.write_all(&data[member.clone()])?;
        cut.cut()?;
        cut.write_all(&data[member.end..])?;
        let cut = cut.finish()?;
        // The member's blocks compressed on their own, then put in place.
        let mut blocks = GzBlocks::new(gzip_level(6))?;
        for piece in data[member.clone()].chunks(GZ_BLOCK) {
            blocks.submit(piece.to_vec(), false);
        }
        let mut ahead = Compressor::new(Vec::new(), Compression::Gzip, 6)?;
        ahead.write_all(&data[..member.start])?;
        while let Some(block) = blocks.next(true) {
            ahead.write_block(block?)?;
        }
        ahead.cut()?;
        ahead.write_all(&data[member.end..])?;
        assert!(ahead.finish()? == cut);
        assert!(verdict(&cut, usize::MAX) == (data.clone(), "ok".into()));
        if let Some(out) = gzip_command(cut.clone())? {
            assert!(out == data);
        }
        // A cut changes the bytes (a block boundary moved), not what they decompress to.
        assert!(cut != gzip(&data, 6)?);
        // Other formats have no blocks to put in place.
        let mut z = Compressor::new(Vec::new(), Compression::Zstd, 3)?;
        z.cut()?;
        assert!(z.write_block(GzBlock::default()).is_err());
        Ok(())
    }

    #[test]
    fn read_ahead_passes_data_end_and_errors_through() -> io::Result<()> {
        let data = sample(3 * (1 << 20) + 5);
        let mut back = Vec::new();
        ReadAhead::start(Box::new(io::Cursor::new(data.clone())), None).read_to_end(&mut back)?;
        assert_eq!(back, data);
        let broken = io::Read::chain(io::Cursor::new(vec![1u8; 10]), Failing);
        let mut r = ReadAhead::start(Box::new(broken), None);
        let mut buf = Vec::new();
        assert_eq!(message(r.read_to_end(&mut buf)), "corrupt");
        assert_eq!(buf, vec![1u8; 10]);
        // A failure is not turned into an end, and keeps its words.
        assert_eq!(message(r.read(&mut [0u8; 4])), "corrupt");
        assert_eq!(message(r.next_chunk()), "corrupt");
        Ok(())
    }

    #[test]
    fn an_error_the_reader_never_reached_is_reported_by_finish() -> io::Result<()> {
        let data = sample(3 * (1 << 20));
        let broken = io::Read::chain(io::Cursor::new(data), Failing);
        let mut r = Decompressed(Source::Ahead(ReadAhead::start(Box::new(broken), None)));
        r.read_exact(&mut [0u8; 1000])?;
        assert_eq!(message(r.finish()), "corrupt");
        Ok(())
    }

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("corrupt"))
        }
    }

    #[test]
    fn our_zstd_frames_carry_a_content_checksum() -> io::Result<()> {
        let mut c = Compressor::new(Vec::new(), Compression::Zstd, 3)?;
        c.write_all(&sample(100_000))?;
        let out = c.finish()?;
        // Frame_Header_Descriptor (after the 4-byte magic): bit 2 is Content_Checksum_flag.
        assert_eq!(out.get(4).map(|d| d & 0b100), Some(0b100));
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

    /// The words of an error, or a note that there was none.
    fn message<T>(r: io::Result<T>) -> String {
        match r {
            Ok(_) => "no error".into(),
            Err(e) => e.to_string(),
        }
    }

    /// Decompresses `bytes` the way a tar reader does (reading `take` bytes, then stopping),
    /// then asks for the verdict; returns what was read and the verdict's words ("ok").
    fn verdict(bytes: &[u8], take: usize) -> (Vec<u8>, String) {
        let run = || -> io::Result<Vec<u8>> {
            let (_, r) = decompress(io::Cursor::new(bytes.to_vec()))?;
            let mut out = Vec::new();
            let mut r = r;
            (&mut r).take(take as u64).read_to_end(&mut out)?;
            r.finish()?;
            Ok(out)
        };
        match run() {
            Ok(out) => (out, "ok".into()),
            Err(e) => (Vec::new(), e.to_string()),
        }
    }

    fn gzip(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
        let mut c = Compressor::new(Vec::new(), Compression::Gzip, level)?;
        c.write_all(data)?;
        c.finish()
    }

    fn zstd_checked(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
        enc.include_checksum(true)?;
        enc.write_all(data)?;
        enc.finish()
    }

    /// Random bytes: they stay as they are in stored gzip blocks and raw zstd blocks, so a
    /// flipped bit there changes the content and nothing else.
    fn noise(n: usize) -> Vec<u8> {
        let mut x: u64 = 99;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect()
    }

    fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
        let mut v = bytes.to_vec();
        v[at] ^= 0x10;
        v
    }

    #[test]
    fn intact_inputs_read_to_the_end_pass() -> io::Result<()> {
        let data = sample(2 * GZ_BLOCK + 77);
        for bytes in [gzip(&data, 6)?, zstd_checked(&data)?, data.clone()] {
            assert_eq!(verdict(&bytes, usize::MAX), (data.clone(), "ok".into()));
            // A consumer that stops early still gets the verdict on the whole stream.
            assert_eq!(verdict(&bytes, 1000), (data[..1000].to_vec(), "ok".into()));
        }
        Ok(())
    }

    #[test]
    fn a_flipped_bit_in_a_gzip_input_is_an_error() -> io::Result<()> {
        let data = noise(300_000);
        let stored = gzip(&data, 0)?;
        for at in [100, stored.len() / 2, stored.len() - 100] {
            let (_, why) = verdict(&flip(&stored, at), 1000);
            assert_eq!(why, "gzip data: crc mismatch", "bit at {at}");
        }
        let text = sample(300_000);
        let packed = gzip(&text, 6)?;
        for at in (10..packed.len() - 8).step_by(packed.len() / 13) {
            let (_, why) = verdict(&flip(&packed, at), 1000);
            assert!(why.starts_with("gzip data: "), "bit at {at}: {why}");
        }
        Ok(())
    }

    #[test]
    fn all_the_data_comes_before_the_verdict_on_it() -> io::Result<()> {
        // A tar reader stops at the archive's end: it must get there, and hear of a bad
        // checksum from finish, not instead of the last bytes.
        let data = noise(300_000);
        for bytes in [gzip(&data, 0)?, zstd_checked(&data)?] {
            let bad = flip(&bytes, bytes.len() - 2);
            let (_, mut r) = decompress(io::Cursor::new(bad))?;
            let mut all = vec![0u8; data.len()];
            r.read_exact(&mut all)?;
            assert!(all == data);
            assert!(message(r.finish()).ends_with("mismatch"));
        }
        Ok(())
    }

    #[test]
    fn a_wrong_gzip_length_is_an_error() -> io::Result<()> {
        let bytes = gzip(b"abc", 6)?;
        let (_, why) = verdict(&flip(&bytes, bytes.len() - 2), 0);
        assert_eq!(why, "gzip data: length mismatch");
        Ok(())
    }

    #[test]
    fn a_flipped_bit_in_a_zstd_input_is_an_error() -> io::Result<()> {
        let data = noise(300_000);
        let bytes = zstd_checked(&data)?;
        for at in [bytes.len() / 2, bytes.len() - 2] {
            let (_, why) = verdict(&flip(&bytes, at), 1000);
            assert_eq!(why, "zstd data: checksum mismatch", "bit at {at}");
        }
        let text = zstd_checked(&sample(300_000))?;
        for at in (6..text.len()).step_by(text.len() / 13) {
            let (_, why) = verdict(&flip(&text, at), 1000);
            assert!(why.starts_with("zstd data: "), "bit at {at}: {why}");
        }
        Ok(())
    }

    #[test]
    fn trailing_garbage_after_gzip_data_is_an_error() -> io::Result<()> {
        let bytes = gzip(&sample(5000), 6)?;
        for tail in [&b"garbage\n"[..], b"\x1f", b"\x00\x00x", b"\x1f\x8c"] {
            let (_, why) = verdict(&[&bytes[..], tail].concat(), 10);
            assert_eq!(why, "trailing garbage after gzip data", "{tail:?}");
        }
        // Something that starts like a member is read as one.
        let (_, why) = verdict(&[&bytes[..], b"\x1f\x8b\x09"].concat(), 10);
        assert_eq!(why, "gzip data: truncated");
        let (_, why) = verdict(&[&bytes[..], b"\x1f\x8b\x09\0\0\0\0\0\0\x03"].concat(), 10);
        assert_eq!(why, "gzip data: unknown compression method 9");
        Ok(())
    }

    #[test]
    fn zero_padding_after_gzip_data_is_accepted_as_gzip_does() -> io::Result<()> {
        let data = sample(5000);
        let bytes = gzip(&data, 6)?;
        for zeros in [1, 512, 3 << 20] {
            let padded = [&bytes[..], &vec![0u8; zeros][..]].concat();
            assert_eq!(verdict(&padded, usize::MAX), (data.clone(), "ok".into()));
        }
        Ok(())
    }

    #[test]
    fn trailing_garbage_or_zeros_after_zstd_data_is_an_error() -> io::Result<()> {
        let bytes = zstd_checked(&sample(5000))?;
        for tail in [&b"garbage\n"[..], b"\x00", &[0u8; 1024][..], b"\x28\xb5"] {
            let (_, why) = verdict(&[&bytes[..], tail].concat(), 10);
            assert_eq!(why, "trailing garbage after zstd data", "{tail:?}");
        }
        Ok(())
    }

    #[test]
    fn a_truncated_gzip_trailer_is_an_error() -> io::Result<()> {
        let bytes = gzip(&sample(300_000), 6)?;
        for cut in 1..=8 {
            let (_, why) = verdict(&bytes[..bytes.len() - cut], 10);
            assert_eq!(why, "gzip data: truncated", "{cut} bytes cut");
        }
        for len in [3, 10, 11, bytes.len() / 2, bytes.len() - 9] {
            let (_, why) = verdict(&bytes[..len], 10);
            assert_eq!(why, "gzip data: truncated", "cut at {len}");
        }
        Ok(())
    }

    #[test]
    fn a_truncated_zstd_frame_is_an_error() -> io::Result<()> {
        let bytes = zstd_checked(&sample(300_000))?;
        for len in [4, 7, bytes.len() / 2, bytes.len() - 4, bytes.len() - 1] {
            let (_, why) = verdict(&bytes[..len], 10);
            assert_eq!(why, "zstd data: truncated", "cut at {len}");
        }
        Ok(())
    }

    #[test]
    fn two_gzip_members_are_read_and_both_verified() -> io::Result<()> {
        let (a, b) = (sample(70_000), noise(50_000));
        let (ga, gb) = (gzip(&a, 6)?, gzip(&b, 0)?);
        let both = [&ga[..], &gb[..]].concat();
        assert_eq!(verdict(&both, usize::MAX), ([a, b].concat(), "ok".into()));
        let bad_second = [&ga[..], &flip(&gb, gb.len() / 2)[..]].concat();
        assert_eq!(verdict(&bad_second, 10).1, "gzip data: crc mismatch");
        let cut_second = [&ga[..], &gb[..gb.len() - 1]].concat();
        assert_eq!(verdict(&cut_second, 10).1, "gzip data: truncated");
        Ok(())
    }

    #[test]
    fn two_zstd_frames_are_read_and_both_verified() -> io::Result<()> {
        let (a, b) = (sample(70_000), noise(50_000));
        let (za, zb) = (zstd_checked(&a)?, zstd_checked(&b)?);
        let both = [&za[..], &zb[..]].concat();
        assert_eq!(verdict(&both, usize::MAX), ([a, b].concat(), "ok".into()));
        let bad_second = [&za[..], &flip(&zb, zb.len() / 2)[..]].concat();
        assert_eq!(verdict(&bad_second, 10).1, "zstd data: checksum mismatch");
        Ok(())
    }

    #[test]
    fn a_zstd_frame_without_checksum_is_accepted() -> io::Result<()> {
        // Valid zstd (the zstd command reads it, and our writer makes it): there is nothing
        // to check but the frame's structure.
        let data = sample(100_000);
        let mut c = Compressor::new(Vec::new(), Compression::Zstd, 3)?;
        c.write_all(&data)?;
        let bytes = c.finish()?;
        assert_eq!(verdict(&bytes, usize::MAX), (data, "ok".into()));
        Ok(())
    }

    #[test]
    fn plain_input_is_not_read_by_finish() -> io::Result<()> {
        let broken = io::Read::chain(io::Cursor::new(b"plain bytes".to_vec()), Failing);
        let (kind, mut r) = decompress(broken)?;
        assert_eq!(kind, Compression::None);
        let mut head = [0u8; 5];
        r.read_exact(&mut head)?;
        assert_eq!(&head, b"plain");
        r.finish()
    }

    /// A pipe that hands out one byte per read.
    struct OneByte(io::Cursor<Vec<u8>>);
    impl Read for OneByte {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(1);
            self.0.read(&mut out[..n])
        }
    }

    #[test]
    fn the_format_is_recognised_from_a_pipe_that_gives_one_byte_at_a_time() -> io::Result<()> {
        let data = sample(10_000);
        for (bytes, want) in [
            (gzip(&data, 6)?, Compression::Gzip),
            (zstd_checked(&data)?, Compression::Zstd),
            (data.clone(), Compression::None),
        ] {
            let (kind, mut r) = decompress(OneByte(io::Cursor::new(bytes)))?;
            assert_eq!(kind, want);
            let mut out = Vec::new();
            r.read_to_end(&mut out)?;
            assert_eq!(out, data);
            r.finish()?;
        }
        Ok(())
    }

    /// Decompresses `gz` with the gzip command; `None` when gzip is missing outside CI.
    fn gzip_command(gz: Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        use std::process::{Command, Stdio};
        let child = Command::new("gzip")
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match child {
            Err(e) if e.kind() == io::ErrorKind::NotFound && std::env::var_os("CI").is_none() => {
                return Ok(None)
            }
            other => other?,
        };
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin"))?;
        let feeder = std::thread::spawn(move || stdin.write_all(&gz));
        let out = child.wait_with_output()?;
        feeder.join().map_err(|_| io::Error::other("feeder"))??;
        assert!(out.status.success(), "gzip -d failed");
        Ok(Some(out.stdout))
    }

    #[test]
    fn gzip_output_with_any_block_size_and_level_is_read_by_gzip_and_flate2() -> io::Result<()> {
        // The fuzz target gzip_blocks checks flate2 on every input but the gzip command only
        // now and then (a process per input is slow); this runs it on many inputs at once.
        let mut x: u64 = 5;
        let mut next = |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n.max(1)
        };
        for case in 0..120 {
            let len = next(24_000) as usize;
            let data = if case % 3 == 0 {
                noise(len)
            } else {
                sample(len)
            };
            let block = 1 + next(if case % 2 == 0 {
                64
            } else {
                2 * len as u64 + 1
            }) as usize;
            let level = next(13) as i32;
            let mut gz = ParGz::with_block_size(Vec::new(), level, block)?;
            // Cuts (block boundaries the caller chooses) at random places now and then.
            let mut at = 0;
            while at < data.len() {
                let n = (1 + next(2 * block as u64) as usize).min(data.len() - at);
                gz.write_all(&data[at..at + n])?;
                at += n;
                if next(4) == 0 {
                    gz.cut()?;
                }
            }
            let bytes = gz.finish()?;
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut back)?;
            assert!(
                back == data,
                "flate2: case {case}, level {level}, block {block}"
            );
            assert!(verdict(&bytes, usize::MAX) == (data.clone(), "ok".into()));
            if let Some(out) = gzip_command(bytes)? {
                assert!(
                    out == data,
                    "gzip: case {case}, level {level}, block {block}"
                );
            }
        }
        Ok(())
    }
}
