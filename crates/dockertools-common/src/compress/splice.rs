//! Reusing a gzip input's deflate data in a gzip output, instead of compressing its bytes again.
//!
//! pigz (which dockerTools compresses images with) and our own writer end every block of their
//! output with a sync flush: an empty stored block, `00 00 ff ff` on a byte boundary. The
//! deflate data between two such points is a run of whole blocks; its only tie to what comes
//! before is deflate's window, the 32 KiB inflated just before it. So the same bytes, put in
//! another stream after a block boundary and after the same 32 KiB, inflate to the same bytes
//! again.
//!
//! The gzip decoder notes those points as [`Segment`]s (where each starts and ends in the
//! decompressed stream, and its deflate bytes), and hands them to the consumer with the data
//! they end in. Whoever splices one into an output checks it first, whatever the decoder
//! believed ([`fits`]): inflated after the window it will have in the output, it gives exactly
//! the bytes it stands for and ends on a byte-aligned block boundary.
//! Both facts hold wherever it is put after that window, so the output decodes to the right
//! bytes however the input was made; a segment that fails is compressed like any other bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Deflate's window: a segment's bytes depend on the bytes this far before it.
pub const WINDOW: usize = 32 << 10;

/// Decompressed bytes a segment spans at least: shorter stretches between sync points are
/// joined, so that a segment is worth its bookkeeping (pigz's are 128 KiB). A segment also has
/// fewer deflate bytes than it spans (it compresses), so the segments held never take more
/// memory than the data they stand for.
pub(super) const MIN_SPAN: u64 = 64 << 10;

/// Decompressed bytes a segment spans at most, and deflate bytes it may have at most; the decoder gives up on one that grows past it
/// (a stream without sync points), so that it never keeps much of its input.
pub const MAX_SPAN: u64 = 4 << 20;
pub(super) const MAX_DEFLATE: usize = 4 << 20;

/// Decompressed bytes behind the consumer's position for which segments are still kept, and
/// the deflate bytes kept at most: the oldest go first.
const KEEP_BEHIND: u64 = 16 << 20;
const KEEP_BYTES: usize = 32 << 20;

/// A stretch of a gzip input's deflate data between two sync points.
#[derive(Debug)]
pub struct Segment {
    /// Where the bytes it inflates to start in the decompressed stream (by the decoder's
    /// count, which [`fits`] does not take on trust).
    pub start: u64,
    /// Where they end.
    pub end: u64,
    /// Its deflate bytes.
    pub deflate: Vec<u8>,
}

/// The segments a decoder found and the consumer has received, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Segments(Arc<Mutex<Queue>>);

#[derive(Debug, Default)]
struct Queue {
    list: VecDeque<Segment>,
    bytes: usize,
}

impl Segments {
    /// Takes the segments received so far that start before `to`: those that lie within
    /// `from..to` are returned, the rest of them dropped (whoever reads on is past them).
    pub fn take_within(&self, from: u64, to: u64) -> Vec<Segment> {
        let Ok(mut q) = self.0.lock() else {
            return Vec::new();
        };
        let mut within = Vec::new();
        while q.list.front().is_some_and(|s| s.start < to) {
            let Some(s) = q.list.pop_front() else { break };
            q.bytes -= s.deflate.len();
            if s.start >= from && s.end <= to {
                within.push(s);
            }
        }
        within
    }

    /// Adds segments that came with data up to which the consumer has now read `delivered`
    /// bytes; forgets those it is long past, and the oldest beyond the byte budget.
    pub(super) fn receive(&self, new: Vec<Segment>, delivered: u64) {
        let Ok(mut q) = self.0.lock() else {
            return;
        };
        for s in new {
            q.bytes += s.deflate.len();
            q.list.push_back(s);
        }
        while let Some(front) = q.list.front() {
            if front.end.saturating_add(KEEP_BEHIND) >= delivered && q.bytes <= KEEP_BYTES {
                break;
            }
            let len = front.deflate.len();
            q.list.pop_front();
            q.bytes -= len;
        }
    }
}

/// Whether `deflate`, put in a stream right after the bytes `window` (the 32 KiB before it, or
/// all there are) on a block boundary, inflates to exactly `data` and leaves the decoder on a
/// byte-aligned block boundary: then it can stand for `data` there, whatever follows it.
///
/// One pass of zlib-rs, asked to stop at every block boundary, over `window` as stored blocks,
/// `deflate`, and a final empty stored block: a stop with all of `window` and `data` out and
/// exactly the input up to the end of `deflate` taken is a block boundary in the last byte of
/// `deflate`, and the stream must then end exactly where it does. A boundary short of that
/// byte's end would leave bits of it (all ones: `deflate` must end with `00 00 ff ff`) to be
/// read with the first of the final block's as a block header: 1, then 1 1, a reserved block
/// type, which fails.
pub fn fits(window: &[u8], deflate: &[u8], data: &[u8]) -> bool {
    if !deflate.ends_with(&SYNC) {
        return false;
    }
    let stream = framed(window, deflate);
    let boundary = (stream.len() - FINAL_EMPTY.len()) as u64;
    let want = (window.len() + data.len()) as u64;
    // A byte of room to spare: output past `data` is seen, never cut.
    let mut out = vec![0u8; window.len() + data.len() + 1];
    let mut z = zlib_rs::Inflate::new(false, 15);
    let mut stopped_there = false;
    loop {
        let (read, made) = (z.total_in(), z.total_out());
        let (Some(input), Some(room)) = (stream.get(read as usize..), out.get_mut(made as usize..))
        else {
            return false;
        };
        match z.decompress(input, room, zlib_rs::InflateFlush::Block) {
            Ok(zlib_rs::Status::StreamEnd) => break,
            Ok(_) => {}
            Err(_) => return false,
        }
        if z.total_in() == read && z.total_out() == made {
            return false;
        }
        // Input and room left: a stop at a block boundary.
        stopped_there |= z.total_in() == boundary && z.total_out() == want;
    }
    stopped_there
        && z.total_in() == stream.len() as u64
        && z.total_out() == want
        && out.get(window.len()..want as usize) == Some(data)
}

/// A final empty stored block, from a byte boundary.
const FINAL_EMPTY: [u8; 5] = [1, 0, 0, 0xff, 0xff];

/// The bytes that end a sync flush: an empty stored block's lengths.
pub(super) const SYNC: [u8; 4] = [0, 0, 0xff, 0xff];

/// One complete raw deflate stream: `window` as stored blocks, `deflate` (whole blocks ending
/// on a byte boundary), and a final empty stored block.
fn framed(window: &[u8], deflate: &[u8]) -> Vec<u8> {
    let mut stream =
        Vec::with_capacity(window.len() + window.len() / 65535 * 5 + deflate.len() + 10);
    super::store(&mut stream, window, false);
    stream.extend_from_slice(deflate);
    stream.extend_from_slice(&FINAL_EMPTY);
    stream
}

/// What `deflate` (whole blocks ending on a byte boundary, see [`fits`]) inflates to after
/// `window`, which must be `len` bytes (inflated as one stream: `window` as stored blocks
/// first, a final empty stored block after).
pub fn inflate_after(window: &[u8], deflate: &[u8], len: usize) -> std::io::Result<Vec<u8>> {
    let stream = framed(window, deflate);
    let mut out = vec![0u8; window.len() + len];
    let bad = |why: String| std::io::Error::other(format!("a spliced gzip block: {why}"));
    let n = libdeflater::Decompressor::new()
        .deflate_decompress(&stream, &mut out)
        .map_err(|e| bad(e.to_string()))?;
    if n != out.len() {
        return Err(bad(format!(
            "inflates to {} bytes, not {len}",
            n - window.len().min(n)
        )));
    }
    out.drain(..window.len());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text with matches reaching back across the cut.
    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"abcdefghij"[(i * 7 / 3) % 10] ^ (i / 4096) as u8)
            .collect()
    }

    fn sync_flushed(z: &mut flate2::Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 1024);
        z.compress_vec(data, &mut out, flate2::FlushCompress::Sync)
            .expect("deflate");
        out
    }

    #[test]
    fn a_sync_flushed_piece_fits_after_its_window_only() {
        let data = text(300_000);
        let (a, b) = data.split_at(200_000);
        let mut z = flate2::Compress::new(flate2::Compression::new(6), false);
        sync_flushed(&mut z, a);
        let piece = sync_flushed(&mut z, b);
        let window = &a[a.len() - WINDOW..];
        assert!(fits(window, &piece, b));
        // Another window, other bytes, a byte short or cut: no.
        let other: Vec<u8> = window.iter().map(|x| x ^ 1).collect();
        assert!(!fits(&other, &piece, b));
        // A window too short for the distances the piece uses.
        assert!(!fits(&window[WINDOW - 10..], &piece, b));
        let mut wrong = b.to_vec();
        wrong[10] ^= 1;
        assert!(!fits(window, &piece, &wrong));
        assert!(!fits(window, &piece, &b[..b.len() - 1]));
        assert!(!fits(window, &piece[..piece.len() - 4], b));
        assert_eq!(
            inflate_after(window, &piece, b.len()).ok().as_deref(),
            Some(b)
        );
        // A final block inside, even with a sync flush's bytes after it: no.
        let mut z = flate2::Compress::new(flate2::Compression::new(6), false);
        sync_flushed(&mut z, a);
        let mut last = Vec::with_capacity(b.len() + 1024);
        z.compress_vec(b, &mut last, flate2::FlushCompress::Finish)
            .expect("deflate");
        assert!(!fits(window, &last, b));
        last.push(0);
        last.extend_from_slice(&SYNC);
        assert!(!fits(window, &last, b));
    }

    #[test]
    fn the_queue_forgets_what_the_consumer_is_long_past() {
        let q = Segments::default();
        let seg = |start: u64| Segment {
            start,
            end: start + MIN_SPAN,
            deflate: vec![0; 10],
        };
        q.receive(vec![seg(0), seg(MIN_SPAN)], 0);
        q.receive(
            vec![seg(KEEP_BEHIND + (1 << 20))],
            KEEP_BEHIND + MIN_SPAN + 1,
        );
        let kept: Vec<u64> = q.take_within(0, u64::MAX).iter().map(|s| s.start).collect();
        assert_eq!(kept, [MIN_SPAN, KEEP_BEHIND + (1 << 20)]);
        assert!(q.take_within(0, u64::MAX).is_empty());
    }
}
