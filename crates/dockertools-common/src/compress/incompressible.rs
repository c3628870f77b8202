//! The stretches of a gzip block that deflate cannot shrink, found so that they are stored
//! instead of searched.
//!
//! Images carry much data that is already compressed (`.gz`, `.png`, `.jar`, `.xz`, …), and
//! binaries carry runs of it. libdeflate spends about as long on such bytes as on text (on this
//! machine about 13 ns a byte at level 6, against well under 1 ns to store them), and then
//! writes them at their own size anyway. So each block is cut into [`SEGMENT`]-byte segments
//! at fixed offsets, and a segment is stored when two cheap tests both say deflate has nothing
//! to gain:
//! - its byte counts are close to uniform: the chi-square statistic against the uniform
//!   distribution is at most [`CHI2_MAX`] (random bytes give about 255 whatever the length),
//!   which bounds what any Huffman code of single bytes could save;
//! - no 8 bytes at an anchor (a position picked by the bytes there, one in 16) repeat those at
//!   an earlier anchor within deflate's window, so deflate would find no long match.
//!
//! Everything is integer arithmetic on the block's bytes alone, so the choice, and with it the
//! compressed bytes, is the same on every machine and for every thread count.

use std::ops::Range;

/// Bytes per segment: small enough to catch the random runs of a binary and a compressed file
/// of a few KiB between text (on the s300 image 4 KiB segments store 14% of the bytes, 16 KiB
/// ones 10%), large enough that the byte counts are a fair sample.
pub const SEGMENT: usize = 4 << 10;

/// Compressible pieces this long or longer are cut in two ([`halved`]).
const HALVE: usize = 128 << 10;

/// Segments shorter than this (a block's tail) are always left to deflate.
const MIN_SEGMENT: usize = 1 << 10;

/// The largest chi-square statistic (255 degrees of freedom) of a segment that is stored.
/// Random bytes give 255 on average with a standard deviation of about 23, so random data is
/// practically always stored; at 512 a Huffman code of the bytes could save at most about
/// 512 / (2 * 4096 * ln 2) = 0.09 bits a byte on a full segment, less than a dynamic block's
/// code tables cost on that segment.
const CHI2_MAX: u64 = 512;

/// Bits of the anchor table's index.
const TABLE_BITS: u32 = 12;

/// A position is an anchor when the top [`ANCHOR_BITS`] bits of the hash of the 8 bytes there
/// are zero: one position in 16 on random bytes, chosen by content, so that both copies of a
/// repeated string have their anchors at the same places in it.
const ANCHOR_BITS: u32 = 4;

/// Length of the strings compared at anchors.
const REPEAT: usize = 8;

/// The pieces of `input` in order: each range, and whether it is to be stored. Adjacent
/// segments of the same kind are merged, so deflate sees each compressible stretch whole.
pub fn pieces(input: &[u8]) -> Vec<(Range<usize>, bool)> {
    let mut out: Vec<(Range<usize>, bool)> = Vec::new();
    let mut anchors = Anchors::new();
    let mut start = 0;
    while start < input.len() {
        let end = (start + SEGMENT).min(input.len());
        let stored = end - start >= MIN_SEGMENT
            && near_uniform(&input[start..end])
            && !anchors.repeats(input, start..end);
        match out.last_mut() {
            Some((range, kind)) if *kind == stored => range.end = end,
            _ => out.push((start..end, stored)),
        }
        start = end;
    }
    out
}

/// `pieces` with every compressible piece of [`HALVE`] bytes or more cut in two at a segment
/// boundary, so that a block of text gives two deflate streams to walk together.
pub fn halved(pieces: Vec<(Range<usize>, bool)>) -> Vec<(Range<usize>, bool)> {
    let mut out = Vec::with_capacity(pieces.len() + 2);
    for (range, stored) in pieces {
        if stored || range.len() < HALVE {
            out.push((range, stored));
            continue;
        }
        let mid = range.start + (range.len() / 2).next_multiple_of(SEGMENT);
        out.push((range.start..mid, false));
        out.push((mid..range.end, false));
    }
    out
}

/// Whether the byte counts of `seg` pass the chi-square test against the uniform
/// distribution: sum((256 c - n)^2) / (256 n) <= CHI2_MAX, in integers.
fn near_uniform(seg: &[u8]) -> bool {
    // Four tables of counts break the dependency between neighbouring bytes of equal value.
    let mut counts = [[0u32; 256]; 4];
    let mut quads = seg.chunks_exact(4);
    for q in &mut quads {
        counts[0][usize::from(q[0])] += 1;
        counts[1][usize::from(q[1])] += 1;
        counts[2][usize::from(q[2])] += 1;
        counts[3][usize::from(q[3])] += 1;
    }
    for &b in quads.remainder() {
        counts[0][usize::from(b)] += 1;
    }
    let n = seg.len() as i64;
    let sum: u64 = (0..256)
        .map(|v| {
            let c = i64::from(counts[0][v] + counts[1][v] + counts[2][v] + counts[3][v]);
            (256 * c - n).unsigned_abs().pow(2)
        })
        .sum();
    sum <= CHI2_MAX * 256 * n as u64
}

/// The hash of the 8 bytes at `at` (the caller keeps `at + 8` in bounds).
#[inline(always)]
fn hash8(data: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&data[at..at + REPEAT]);
    u64::from_le_bytes(w).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Deflate's window: how far back a match may reach.
const WINDOW: usize = 32 << 10;

/// The anchors seen so far in a block, by hash, and how far the block has been hashed.
struct Anchors {
    table: Vec<u32>,
    hashed: usize,
}

impl Anchors {
    fn new() -> Self {
        Anchors {
            table: vec![u32::MAX; 1 << TABLE_BITS],
            hashed: 0,
        }
    }

    /// Whether [`REPEAT`] bytes at an anchor of `seg` repeat those at an earlier anchor within
    /// deflate's window, in `seg` or before it (the segment before it at least is looked at,
    /// and every earlier one that was). Only anchors are remembered and looked up, which keeps
    /// this to a multiply and a test per byte, and each byte is hashed once: a repeat long
    /// enough to hold an anchor (nearly every repeat of 100 bytes or more, on random data) is
    /// found, shorter ones may be missed.
    fn repeats(&mut self, data: &[u8], seg: Range<usize>) -> bool {
        let from = self.hashed.max(seg.start.saturating_sub(SEGMENT));
        let end = seg.end.saturating_sub(REPEAT - 1);
        for at in from..end {
            let h = hash8(data, at);
            if h >> (64 - ANCHOR_BITS) != 0 {
                continue;
            }
            let slot = ((h >> (64 - ANCHOR_BITS - TABLE_BITS)) as usize) & ((1 << TABLE_BITS) - 1);
            let seen = self.table[slot] as usize;
            self.table[slot] = at as u32;
            if at >= seg.start
                && seen < at
                && at - seen <= WINDOW
                && data[seen..seen + REPEAT] == data[at..at + REPEAT]
            {
                self.hashed = at + 1;
                return true;
            }
        }
        self.hashed = self.hashed.max(end);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn text(n: usize) -> Vec<u8> {
        noise(n, 9)
            .iter()
            .map(|b| b"  etaoinshrdlu\n"[usize::from(b % 15)])
            .collect()
    }

    #[test]
    fn random_bytes_are_stored_and_text_is_not() {
        let mut data = text(40_000);
        data.extend(noise(100_000, 1));
        data.extend(text(30_000));
        let p = pieces(&data);
        let kinds: Vec<bool> = p.iter().map(|(_, s)| *s).collect();
        assert_eq!(kinds, [false, true, false]);
        // The pieces cover the input in order, on segment boundaries.
        assert_eq!(p.first().map(|(r, _)| r.start), Some(0));
        assert_eq!(p.last().map(|(r, _)| r.end), Some(data.len()));
        assert!(p.windows(2).all(|w| w[0].0.end == w[1].0.start));
        assert!(p.iter().all(|(r, _)| r.start % SEGMENT == 0));
    }

    #[test]
    fn repeated_random_bytes_are_left_to_deflate() {
        // Random bytes that repeat within deflate's window: uniform counts, but matches.
        let chunk = noise(3_000, 5);
        let data: Vec<u8> = chunk.iter().cycle().take(4 * SEGMENT).copied().collect();
        assert!(pieces(&data).iter().all(|(_, stored)| !stored));
        // A repeat of the previous segment's bytes is found too.
        let mut data = noise(SEGMENT, 7);
        data.extend_from_within(..SEGMENT);
        assert_eq!(
            pieces(&data),
            vec![(0..SEGMENT, true), (SEGMENT..2 * SEGMENT, false)]
        );
    }

    #[test]
    fn short_and_empty_inputs_are_left_to_deflate() {
        assert!(pieces(b"").is_empty());
        assert_eq!(
            pieces(&noise(MIN_SEGMENT - 1, 3)),
            vec![(0..MIN_SEGMENT - 1, false)]
        );
        assert_eq!(pieces(&noise(MIN_SEGMENT, 3)), vec![(0..MIN_SEGMENT, true)]);
    }
}
