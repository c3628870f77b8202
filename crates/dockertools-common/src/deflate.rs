//! Reading the block structure of a raw deflate stream (RFC 1951), to join independently
//! compressed streams into one.
//!
//! A compressor that only writes complete streams marks its last block final. To place such a
//! stream in the middle of a longer one, [`unfinalize`] clears that block's BFINAL bit and ends
//! the stream the way zlib's sync flush does (an empty stored block), so the next stream's
//! blocks can follow it byte-aligned. Finding the last block means walking every block: the
//! symbols are decoded (their values are not needed, only where each block ends).

use std::fmt;

/// A stream that is not valid deflate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(&'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed deflate stream: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// Least-significant-bit-first reader, as deflate packs its bits: a [`Cursor`] and the
/// stream's real length in bits, `limit` (the data ends with [`PAD`] zero bytes, so that whole
/// words can always be loaded).
struct Bits<'a> {
    cur: Cursor<'a>,
    limit: usize,
}

impl<'a> Bits<'a> {
    fn new(padded: &'a [u8], limit: usize) -> Self {
        let mut b = Bits {
            cur: Cursor {
                data: padded,
                buf: 0,
                count: 0,
                next: 0,
            },
            limit,
        };
        b.refill();
        b
    }

    /// Position in bits of the next unread bit.
    fn pos(&self) -> usize {
        self.cur.next * 8 - self.cur.count as usize
    }

    /// Tops the buffer up to at least 56 bits; past the end of the data it reads zeros, and
    /// [`Bits::check`] tells a position past `limit`.
    #[inline(always)]
    fn refill(&mut self) {
        if !self.cur.refill() {
            self.cur.next += (63 - self.cur.count as usize) / 8;
            self.cur.count |= 56;
        }
    }

    /// Drops `n` bits (at most what the last refill guaranteed).
    #[inline(always)]
    fn drop_bits(&mut self, n: u32) {
        self.cur.drop_bits(n);
    }

    fn take(&mut self, n: u32) -> Result<u32, Malformed> {
        self.refill();
        let v = (self.cur.buf & ((1u64 << n) - 1)) as u32;
        self.drop_bits(n);
        self.check()?;
        Ok(v)
    }

    /// Moves to bit position `pos` (forward only; stored blocks).
    fn seek(&mut self, pos: usize) -> Result<(), Malformed> {
        if pos > self.limit {
            return Err(Malformed("stream ends inside a block"));
        }
        self.cur.next = pos / 8;
        self.cur.buf = 0;
        self.cur.count = 0;
        self.refill();
        self.drop_bits((pos % 8) as u32);
        Ok(())
    }

    fn check(&self) -> Result<(), Malformed> {
        if self.pos() > self.limit {
            return Err(Malformed("stream ends inside a block"));
        }
        Ok(())
    }
}

/// Stream bits looked up at once; longer codes (rare by construction) are decoded bit by bit.
const PRIMARY: u32 = 10;

/// A canonical Huffman code: a lookup table on the next [`PRIMARY`] stream bits, whose
/// entries hold `symbol << 4 | code length` (0 when the code is longer, or invalid), and
/// the code's length counts and symbols in code order for the longer codes.
struct Code {
    table: Vec<u16>,
    mask: u64,
    count: [u16; 16],
    sorted: Vec<u16>,
}

impl Code {
    fn new(lengths: &[u8]) -> Result<Code, Malformed> {
        let width = u32::from(lengths.iter().copied().max().unwrap_or(0)).clamp(1, PRIMARY);
        let mut count = [0u16; 16];
        for &l in lengths {
            count[usize::from(l & 15)] += 1;
        }
        count[0] = 0;
        let mut next = [0u32; 16];
        let mut code = 0u32;
        for len in 1..16 {
            code = (code + u32::from(count[len - 1])) << 1;
            next[len] = code;
            if code + u32::from(count[len]) > (1 << len) {
                return Err(Malformed("oversubscribed Huffman code"));
            }
        }
        let mut sorted = Vec::with_capacity(lengths.len());
        for len in 1..16u8 {
            for (symbol, &l) in lengths.iter().enumerate() {
                if l == len {
                    sorted.push(symbol as u16);
                }
            }
        }
        let mut table = vec![0u16; 1 << width];
        for (symbol, &len) in lengths.iter().enumerate() {
            let len = u32::from(len);
            if len == 0 || len > width {
                continue;
            }
            let c = next[len as usize];
            next[len as usize] += 1;
            let reversed = c.reverse_bits() >> (32 - len);
            let entry = ((symbol as u16) << 4) | len as u16;
            let mut i = reversed as usize;
            while i < table.len() {
                table[i] = entry;
                i += 1 << len;
            }
        }
        Ok(Code {
            table,
            mask: (1u64 << width) - 1,
            count,
            sorted,
        })
    }

    /// Decodes one symbol; the caller has refilled `bits` for it.
    #[inline(always)]
    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16, Malformed> {
        let (symbol, len) = self.lookup(bits.cur.buf)?;
        bits.drop_bits(len);
        Ok(symbol)
    }

    /// The symbol whose code starts `buf`, and the code's length.
    #[inline(always)]
    fn lookup(&self, buf: u64) -> Result<(u16, u32), Malformed> {
        let entry = self.table[(buf & self.mask) as usize];
        let len = u32::from(entry & 15);
        if len == 0 {
            return self.lookup_long(buf);
        }
        Ok((entry >> 4, len))
    }

    /// Canonical decoding one bit at a time (codes longer than the table).
    #[cold]
    fn lookup_long(&self, buf: u64) -> Result<(u16, u32), Malformed> {
        let (mut code, mut first, mut index) = (0u32, 0u32, 0usize);
        for len in 1..16 {
            code |= (buf >> (len - 1)) as u32 & 1;
            let count = u32::from(self.count[len]);
            if code.wrapping_sub(first) < count {
                return Ok((self.sorted[index + (code - first) as usize], len as u32));
            }
            index += count as usize;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(Malformed("invalid Huffman code"))
    }
}

/// Extra bits after length symbols 257..=285.
fn length_extra(symbol: u16) -> u32 {
    match symbol {
        265..=284 => u32::from((symbol - 261) / 4),
        _ => 0,
    }
}

/// Extra bits after distance symbols 0..=29.
fn distance_extra(symbol: u16) -> u32 {
    if symbol < 4 {
        0
    } else {
        u32::from(symbol / 2 - 1)
    }
}

/// Order in which the code-length code's lengths are stored.
const CLEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

fn dynamic_codes(bits: &mut Bits<'_>) -> Result<(Code, Code), Malformed> {
    let hlit = bits.take(5)? as usize + 257;
    let hdist = bits.take(5)? as usize + 1;
    let hclen = bits.take(4)? as usize + 4;
    let mut clen = [0u8; 19];
    for &i in &CLEN_ORDER[..hclen] {
        clen[i] = bits.take(3)? as u8;
    }
    let clen_code = Code::new(&clen)?;
    let mut lengths = vec![0u8; hlit + hdist];
    let mut i = 0;
    while i < lengths.len() {
        bits.refill();
        let sym = clen_code.decode(bits)?;
        let (value, repeat) = match sym {
            0..=15 => (sym as u8, 1),
            16 => {
                let prev = *lengths[..i]
                    .last()
                    .ok_or(Malformed("repeat with no previous length"))?;
                (prev, 3 + bits.take(2)? as usize)
            }
            17 => (0, 3 + bits.take(3)? as usize),
            _ => (0, 11 + bits.take(7)? as usize),
        };
        if i + repeat > lengths.len() {
            return Err(Malformed("code lengths overflow"));
        }
        lengths[i..i + repeat].fill(value);
        i += repeat;
    }
    Ok((Code::new(&lengths[..hlit])?, Code::new(&lengths[hlit..])?))
}

fn fixed_codes() -> Result<(Code, Code), Malformed> {
    let mut lit = [0u8; 288];
    lit[..144].fill(8);
    lit[144..256].fill(9);
    lit[256..280].fill(7);
    lit[280..].fill(8);
    Ok((Code::new(&lit)?, Code::new(&[5u8; 30])?))
}

/// Stream bits the literal-run table looks at (at most 15, the bits the walk keeps loaded).
/// The table is built anew for every block, so a wider one costs more than it saves: on the
/// s300 image 12 bits (4 KiB) took a fifth less time than 14 (16 KiB), and 10, 11, 13 and 15
/// were slower than 12.
const RUN_BITS: u32 = 12;

/// For each value of the next [`RUN_BITS`] stream bits, how many of them a run of whole
/// literal codes takes; 0 when the first code is not a literal or is longer than that.
/// Skipping a run at once instead of a literal at a time halves the walk on data that is
/// mostly literals (a code of 5-6 bits, two per lookup).
fn literal_runs(lit: &Code) -> Box<[u8; 1 << RUN_BITS]> {
    let mut runs = Box::new([0u8; 1 << RUN_BITS]);
    for (bits, run) in runs.iter_mut().enumerate() {
        let mut used = 0;
        // Bits past RUN_BITS read as zeros here: a code is taken only when all of its bits
        // are among the known ones, and a canonical code is decided by its own bits.
        while let Ok((symbol, len)) = lit.lookup((bits >> used) as u64) {
            if symbol > 255 || used + len > RUN_BITS {
                break;
            }
            used += len;
        }
        *run = used as u8;
    }
    runs
}

/// The codes of the block whose symbols are being skipped.
struct Block {
    lit: Code,
    dist: Code,
    runs: Box<[u8; 1 << RUN_BITS]>,
}

/// Stream bytes left below which a block's literal-run table is not built: building it costs
/// about as much as walking 8 KiB of literals one at a time, and small streams are common
/// (the compressible stretches between stored segments). All zeros, the table sends every
/// symbol down the one-at-a-time path.
const RUNS_WORTH: usize = 16 << 10;

impl Block {
    fn new((lit, dist): (Code, Code), bytes_left: usize) -> Block {
        let runs = if bytes_left >= RUNS_WORTH {
            literal_runs(&lit)
        } else {
            Box::new([0; 1 << RUN_BITS])
        };
        Block { lit, dist, runs }
    }
}

/// The bit reader's state: the data (the stream and [`PAD`] zero bytes), the bits not yet
/// consumed (low bits first), how many of them are valid, and the next byte to load. The
/// skipping loops copy it out of [`Bits`] into locals, so that the compiler keeps it in
/// registers.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    data: &'a [u8],
    buf: u64,
    count: u32,
    next: usize,
}

impl Cursor<'_> {
    /// Loads bytes until the buffer holds at least 56 bits; false at the end of the padded
    /// data.
    #[inline(always)]
    fn refill(&mut self) -> bool {
        let Some(bytes) = self.data.get(self.next..self.next + 8) else {
            return false;
        };
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        self.buf |= u64::from_le_bytes(word) << self.count;
        self.next += (63 - self.count as usize) / 8;
        self.count |= 56;
        true
    }

    #[inline(always)]
    fn drop_bits(&mut self, n: u32) {
        self.buf >>= n;
        self.count -= n;
    }

    /// Skips one symbol of `block` (a run of literals, or a length with its distance); true
    /// when it was the end-of-block code.
    #[inline(always)]
    fn step(&mut self, block: &Block) -> Result<bool, Malformed> {
        const CUT: Malformed = Malformed("stream ends inside a block");
        // A whole code is 15 bits at most.
        if self.count < 15 && !self.refill() {
            return Err(CUT);
        }
        let run = u32::from(block.runs[(self.buf & ((1 << RUN_BITS) - 1)) as usize]);
        if run != 0 {
            self.drop_bits(run);
            return Ok(false);
        }
        let (sym, len) = block.lit.lookup(self.buf)?;
        self.drop_bits(len);
        match sym {
            0..=255 => Ok(false),
            256 => Ok(true),
            257..=285 => {
                // Length extra bits, distance code and its extra bits: up to 33 bits.
                if self.count < 33 && !self.refill() {
                    return Err(CUT);
                }
                self.drop_bits(length_extra(sym));
                let (d, len) = block.dist.lookup(self.buf)?;
                if d > 29 {
                    return Err(Malformed("invalid distance symbol"));
                }
                self.drop_bits(len + distance_extra(d));
                Ok(false)
            }
            _ => Err(Malformed("invalid length symbol")),
        }
    }
}

/// One stream walked block by block: block headers are read here, the symbols of the block
/// in progress by [`skip`] or [`skip_pair`].
struct Walk<'a> {
    bits: Bits<'a>,
    /// The block whose symbols come next, if any.
    block: Option<Block>,
    /// Bit position of the current block's header, and whether it is the final block.
    header: usize,
    last: bool,
    /// Once the final block is walked: its header's and the stream's end bit positions.
    done: Option<(usize, usize)>,
}

impl<'a> Walk<'a> {
    /// A walk of `padded` (the stream and 16 zero bytes) over its first `limit` bits.
    fn new(padded: &'a [u8], limit: usize) -> Self {
        Walk {
            bits: Bits::new(padded, limit),
            block: None,
            header: 0,
            last: false,
            done: None,
        }
    }

    /// Reads block headers (and skips stored blocks) until a block with symbols is next, or
    /// the final block is behind.
    fn advance(&mut self) -> Result<(), Malformed> {
        while self.block.is_none() && self.done.is_none() {
            self.header = self.bits.pos();
            self.last = self.bits.take(1)? == 1;
            match self.bits.take(2)? {
                0 => {
                    let byte = self.bits.pos().div_ceil(8);
                    let len_bytes = self
                        .bits
                        .cur
                        .data
                        .get(byte..byte + 4)
                        .filter(|_| (byte + 4) * 8 <= self.bits.limit)
                        .ok_or(Malformed("stored block header cut short"))?;
                    let len = usize::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
                    self.bits.seek((byte + 4 + len) * 8)?;
                    self.end_block()?;
                }
                1 => self.block = Some(Block::new(fixed_codes()?, self.bytes_left())),
                2 => {
                    let codes = dynamic_codes(&mut self.bits)?;
                    self.block = Some(Block::new(codes, self.bytes_left()));
                }
                _ => return Err(Malformed("reserved block type")),
            }
        }
        Ok(())
    }

    /// Bytes of the stream after the current position.
    fn bytes_left(&self) -> usize {
        self.bits.limit.saturating_sub(self.bits.pos()) / 8
    }

    /// The current block's end is reached.
    fn end_block(&mut self) -> Result<(), Malformed> {
        self.bits.check()?;
        self.block = None;
        if self.last {
            self.done = Some((self.header, self.bits.pos()));
        }
        Ok(())
    }
}

/// Skips the rest of `w`'s current block.
fn skip(w: &mut Walk<'_>) -> Result<(), Malformed> {
    if let Some(block) = &w.block {
        let mut c = w.bits.cur;
        let result = loop {
            match c.step(block) {
                Ok(false) => {}
                Ok(true) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        w.bits.cur = c;
        result?;
    }
    w.end_block()
}

/// One step of [`Cursor::step`] on a bit buffer held in plain locals (`buf`, `count`, `next`
/// over `data`): the pair loop keeps two such states, and the compiler keeps locals of this
/// kind in registers where it would keep two structs in memory.
macro_rules! step_locals {
    ($data:expr, $buf:ident, $count:ident, $next:ident, $block:expr) => {{
        let mut c = Cursor {
            data: $data,
            buf: $buf,
            count: $count,
            next: $next,
        };
        let r = c.step($block);
        ($buf, $count, $next) = (c.buf, c.count, c.next);
        r
    }};
}

/// Skips symbols of both walks' current blocks at once, until one of them ends (both blocks
/// must be in progress). One stream's symbols form a chain of dependent table lookups; two
/// independent chains in one loop let the processor overlap them.
fn skip_pair(a: &mut Walk<'_>, b: &mut Walk<'_>) -> Result<(), Malformed> {
    let (Some(block_a), Some(block_b)) = (&a.block, &b.block) else {
        return Ok(());
    };
    let (
        Cursor {
            data: data_a,
            buf: mut buf_a,
            count: mut count_a,
            next: mut next_a,
        },
        Cursor {
            data: data_b,
            buf: mut buf_b,
            count: mut count_b,
            next: mut next_b,
        },
    ) = (a.bits.cur, b.bits.cur);
    let (runs_a, runs_b) = (&*block_a.runs, &*block_b.runs);
    const MASK: u64 = (1 << RUN_BITS) - 1;
    let result = loop {
        // Runs of literals of both, while both have a whole code loaded: the loop that takes
        // most of the time, small enough to keep all its state in registers.
        while count_a >= 15 && count_b >= 15 {
            let run_a = u32::from(runs_a[(buf_a & MASK) as usize]);
            let run_b = u32::from(runs_b[(buf_b & MASK) as usize]);
            if run_a == 0 || run_b == 0 {
                break;
            }
            (buf_a, count_a) = (buf_a >> run_a, count_a - run_a);
            (buf_b, count_b) = (buf_b >> run_b, count_b - run_b);
        }
        // Anything else (a refill, a match, the end of a block) one symbol of each at a time.
        let end_a = step_locals!(data_a, buf_a, count_a, next_a, block_a);
        let end_b = step_locals!(data_b, buf_b, count_b, next_b, block_b);
        match (end_a, end_b) {
            (Ok(false), Ok(false)) => {}
            (Err(e), _) | (_, Err(e)) => break Err(e),
            (Ok(end_a), Ok(end_b)) => break Ok((end_a, end_b)),
        }
    };
    (a.bits.cur.buf, a.bits.cur.count, a.bits.cur.next) = (buf_a, count_a, next_a);
    (b.bits.cur.buf, b.bits.cur.count, b.bits.cur.next) = (buf_b, count_b, next_b);
    let (end_a, end_b) = result?;
    if end_a {
        a.end_block()?;
    }
    if end_b {
        b.end_block()?;
    }
    Ok(())
}

/// Zero bytes a walked stream needs after its end, so that whole words can always be loaded.
const PAD: usize = 16;

/// Clears the final block's BFINAL bit of `stream` (which ends with [`PAD`] bytes past the
/// real end) and ends it with an empty stored block.
fn continue_in_place(stream: &mut Vec<u8>, (header, end): (usize, usize)) {
    stream.truncate(end.div_ceil(8));
    if let Some(byte) = stream.get_mut(header / 8) {
        *byte &= !(1u8 << (header % 8));
    }
    if end % 8 != 0 {
        if let Some(last) = stream.last_mut() {
            *last &= (1u8 << (end % 8)) - 1;
        }
    }
    // The stored block's three header bits (all zero), then padding to the byte boundary.
    stream.resize((end + 3).div_ceil(8), 0);
    stream.extend_from_slice(&[0, 0, 0xff, 0xff]);
}

/// Turns a complete raw deflate stream into one that continues, in place: the final block's
/// BFINAL bit is cleared and an empty stored block (`00 00 ff ff` after the header bits, as
/// zlib's sync flush writes) ends it on a byte boundary.
pub fn unfinalize(stream: &mut Vec<u8>) -> Result<(), Malformed> {
    let limit = stream.len() * 8;
    stream.resize(stream.len() + PAD, 0);
    let found = {
        let mut w = Walk::new(stream, limit);
        loop {
            w.advance()?;
            if let Some(found) = w.done {
                break found;
            }
            skip(&mut w)?;
        }
    };
    continue_in_place(stream, found);
    Ok(())
}

/// [`unfinalize`] of two streams, walked together (on one core, much faster than one after the
/// other).
pub fn unfinalize_pair(a: &mut Vec<u8>, b: &mut Vec<u8>) -> Result<(), Malformed> {
    let (limit_a, limit_b) = (a.len() * 8, b.len() * 8);
    a.resize(a.len() + PAD, 0);
    b.resize(b.len() + PAD, 0);
    let (found_a, found_b) = {
        let mut wa = Walk::new(a, limit_a);
        let mut wb = Walk::new(b, limit_b);
        loop {
            wa.advance()?;
            wb.advance()?;
            match (wa.done, wb.done) {
                (Some(fa), Some(fb)) => break (fa, fb),
                (Some(_), None) => skip(&mut wb)?,
                (None, Some(_)) => skip(&mut wa)?,
                (None, None) => skip_pair(&mut wa, &mut wb)?,
            }
        }
    };
    continue_in_place(a, found_a);
    continue_in_place(b, found_b);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn deflate(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(data).expect("deflate");
        e.finish().expect("deflate")
    }

    fn inflate(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(data)
            .read_to_end(&mut out)
            .expect("inflate");
        out
    }

    /// `n` lines of two numbers (the second below `modulus`): text with matches.
    fn numbers(n: u32, modulus: u32) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                format!("{} {}\n", i % 991, i.wrapping_mul(2_654_435_761) % modulus).into_bytes()
            })
            .collect()
    }

    /// `n` bytes of 7-bit noise from a linear congruential sequence seeded with `seed`.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (x >> 57) as u8
            })
            .collect()
    }

    #[test]
    fn joined_streams_decode_as_the_concatenation() -> Result<(), Malformed> {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} of {}\n", i % 977, i % 13).into_bytes())
            .collect();
        let noise = noise(100_000, 7);
        let parts: [&[u8]; 5] = [&text, &noise, b"", b"x", &text[..70_000]];
        for level in [0, 1, 6, 9] {
            let mut joined = Vec::new();
            for p in &parts {
                let mut s = deflate(p, level);
                unfinalize(&mut s)?;
                joined.extend(s);
            }
            joined.extend(deflate(b"end", level));
            let want: Vec<u8> = parts.concat().into_iter().chain(*b"end").collect();
            assert!(inflate(&joined) == want, "level {level}");
        }
        Ok(())
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"\x07", b"\x05\xff", b"\xff\xff\xff\xff\xff"] {
            assert!(unfinalize(&mut bad.to_vec()).is_err(), "{bad:?}");
        }
    }

    fn libdeflate(data: &[u8], level: i32) -> Vec<u8> {
        let lvl = libdeflater::CompressionLvl::new(level).expect("level");
        let mut c = libdeflater::Compressor::new(lvl);
        let mut out = vec![0; c.deflate_compress_bound(data.len())];
        let n = c.deflate_compress(data, &mut out).expect("deflate");
        out.truncate(n);
        out
    }

    #[test]
    fn libdeflate_streams_of_every_level_join() -> Result<(), Malformed> {
        // What the gzip writer feeds to unfinalize: libdeflate's output at levels 0-12, with
        // stored, fixed and dynamic blocks, several blocks per stream for the longer inputs.
        let text = numbers(40_000, 97);
        let noise = noise(150_000, 3);
        let zeros = vec![0u8; 200_000];
        let parts: [&[u8]; 6] = [&text, &noise, b"", b"x", &zeros, &text[..1000]];
        for level in 0..=12 {
            let mut joined = Vec::new();
            for p in &parts {
                let mut s = libdeflate(p, level);
                unfinalize(&mut s)?;
                joined.extend(s);
            }
            joined.extend(libdeflate(b"end", level));
            let want: Vec<u8> = parts.concat().into_iter().chain(*b"end").collect();
            assert!(inflate(&joined) == want, "level {level}");
        }
        Ok(())
    }

    #[test]
    fn streams_walked_in_pairs_join_like_streams_walked_alone() -> Result<(), Malformed> {
        let text = numbers(60_000, 89);
        let noise = noise(120_000, 5);
        let parts: [&[u8]; 5] = [&text, &noise, b"x", &text[..3000], b""];
        for level in [1, 6, 12] {
            for a in parts {
                for b in parts {
                    let (mut sa, mut sb) = (libdeflate(a, level), libdeflate(b, level));
                    let (mut alone_a, mut alone_b) = (sa.clone(), sb.clone());
                    unfinalize_pair(&mut sa, &mut sb)?;
                    unfinalize(&mut alone_a)?;
                    unfinalize(&mut alone_b)?;
                    assert!(sa == alone_a && sb == alone_b, "level {level}");
                    let mut joined = [sa, sb].concat();
                    joined.extend(libdeflate(b"end", level));
                    let want: Vec<u8> = [a, b, b"end"].concat();
                    assert!(inflate(&joined) == want, "level {level}");
                }
            }
        }
        let mut bad = b"\x05\xff".to_vec();
        assert!(unfinalize_pair(&mut libdeflate(&text, 6), &mut bad).is_err());
        Ok(())
    }
}
