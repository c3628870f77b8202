//! Streaming gzip and zstd decoders that verify every member or frame and read the input to
//! its end, so that a corrupt, truncated or extended input is an error and never a short or
//! wrong output.
//!
//! gzip (RFC 1952): each member's header is parsed here (its header CRC checked when present),
//! its deflate data inflated by flate2 and its CRC32 and ISIZE compared with what was inflated.
//! Members may follow one another. After the last one, only zero bytes may follow (tape or
//! block padding, which GNU gzip ignores too); anything else is trailing garbage.
//! zstd: frames (and skippable frames) may follow one another; libzstd checks each frame's
//! content checksum when the frame has one. A frame without a checksum is valid zstd (our own
//! writer makes them) and can only be checked for its structure. Anything after the last
//! frame, zeros included, is trailing garbage, as the zstd command says.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use super::splice::{self, Segment, SYNC};

use zstd::stream::raw::Operation;

/// Buffered input that can look a few bytes ahead even across a refill, which a `BufRead`
/// cannot: a member or frame boundary may fall anywhere in a read.
pub(super) struct Input<R: Read> {
    r: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Input<R> {
    pub(super) fn new(r: R, capacity: usize) -> Self {
        Input {
            r,
            buf: vec![0; capacity.max(16)].into_boxed_slice(),
            pos: 0,
            end: 0,
            eof: false,
        }
    }

    /// The buffered bytes, at least `n` of them (at most 16) unless the input ends first.
    pub(super) fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        while self.end - self.pos < n && !self.eof {
            if self.pos == self.end {
                self.pos = 0;
                self.end = 0;
            } else if self.buf.len() - self.pos < n {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k.min(self.buf.len() - self.end),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(&self.buf[self.pos..self.end])
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }
}

/// Plain input: the buffered bytes, then the rest.
impl<R: Read> Read for Input<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.peek(1)?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn truncated(format: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{format} data: truncated"),
    )
}

/// Where the gzip decoder is.
enum GzState {
    /// Before a member's header; `first` when no member has been read yet.
    Header { first: bool },
    /// Inside a member's deflate data.
    Body,
    /// After a member's deflate data, before its trailer.
    Trailer,
    /// After the last member and its padding.
    Done,
}

/// gzip header flags (RFC 1952, 2.3.1).
const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

/// Inflates every member of a gzip stream and checks its CRC32 and ISIZE.
pub(super) struct Gunzip<R: Read> {
    input: Input<R>,
    inflate: flate2::Decompress,
    crc: crc32fast::Hasher,
    /// Inflated bytes of the member, modulo 2^32 as ISIZE counts them.
    size: u32,
    state: GzState,
    /// Where sync points are noted, when they are (see [`Notes`]).
    notes: Option<Notes>,
}

/// The sync points a [`Gunzip`] notes as it inflates (see the `splice` module): each time its
/// inflater has taken exactly the input up to the end of a `00 00 ff ff`, the deflate bytes
/// taken since the last such point and the bytes they inflated to make a [`Segment`].
/// The decoder's count is only a guess (those bytes may just happen to appear inside a
/// block): whoever splices a segment checks it.
struct Notes {
    found: Arc<Mutex<Vec<Segment>>>,
    /// Bytes inflated so far, over every member.
    out: u64,
    /// Whether the current member's sync points are noted.
    active: bool,
    /// Where the segment being taken starts, when one is: deflate bytes since a sync point.
    start: Option<u64>,
    taken: Vec<u8>,
}

impl Notes {
    /// The inflater took `input` (ending `at_sync` point) and has inflated `self.out` bytes.
    fn took(&mut self, input: &[u8], at_sync: bool) {
        if let Some(start) = self.start {
            if self.taken.len() + input.len() > splice::MAX_DEFLATE
                || self.out - start > splice::MAX_SPAN
            {
                self.start = None;
                self.taken = Vec::new();
            } else {
                self.taken.extend_from_slice(input);
            }
        }
        if !at_sync {
            return;
        }
        match self.start {
            // Shorter stretches are joined with the next.
            Some(start) if self.out - start < splice::MIN_SPAN => {}
            Some(start) => {
                let deflate = std::mem::take(&mut self.taken);
                // Only a stretch that compresses is worth reusing: one that does not is stored
                // data (which the output's compressor stores as cheaply), level 0, or padding
                // of empty blocks, which would make the output and the memory held grow.
                if (deflate.len() as u64) < self.out - start {
                    if let Ok(mut found) = self.found.lock() {
                        found.push(Segment {
                            start,
                            end: self.out,
                            deflate,
                        });
                    }
                }
                self.start = Some(self.out);
            }
            None => self.start = Some(self.out),
        }
    }

    /// Where in the next input sync points are looked for: past the first [`MIN_TAKEN`]
    /// deflate bytes of a segment, so that sync points packed close together cost one
    /// inflater call per few KiB, not one each.
    fn look_from(&self) -> usize {
        match self.start {
            Some(_) => MIN_TAKEN.saturating_sub(self.taken.len()),
            None => 0,
        }
    }

    /// A member's deflate data starts (on a block boundary): a segment starts unless the
    /// member says it was compressed for speed.
    fn member(&mut self, xfl: u8) {
        self.taken.clear();
        self.active = xfl != 4;
        self.start = self.active.then_some(self.out);
    }

    /// A member's deflate data ended: what was taken since the last sync point holds its
    /// final block.
    fn member_end(&mut self) {
        self.taken = Vec::new();
        self.start = None;
        self.active = false;
    }
}

/// Deflate bytes a segment has before its end is looked for (see [`Notes::look_from`]).
const MIN_TAKEN: usize = 4 << 10;

impl<R: Read> Gunzip<R> {
    pub(super) fn new(input: Input<R>) -> Self {
        Gunzip {
            input,
            inflate: flate2::Decompress::new(false),
            crc: crc32fast::Hasher::new(),
            size: 0,
            state: GzState::Header { first: true },
            notes: None,
        }
    }

    /// Notes sync points into `found` from now on.
    pub(super) fn note_segments(&mut self, found: Arc<Mutex<Vec<Segment>>>) {
        self.notes = Some(Notes {
            found,
            out: 0,
            active: false,
            start: None,
            taken: Vec::new(),
        });
    }

    /// At a member boundary: starts the next member, or ends the stream (false) when only
    /// zeros or nothing follow the last member.
    fn next_member(&mut self, first: bool) -> io::Result<bool> {
        let head = self.input.peek(2)?;
        if head.starts_with(&[0x1f, 0x8b]) {
            let xfl = self.header()?;
            if let Some(notes) = self.notes.as_mut() {
                notes.member(xfl);
            }
            self.inflate.reset(false);
            self.crc = crc32fast::Hasher::new();
            self.size = 0;
            self.state = GzState::Body;
            return Ok(true);
        }
        if first {
            return Err(if head.is_empty() {
                truncated("gzip")
            } else {
                invalid("gzip data: no gzip header")
            });
        }
        loop {
            let rest = self.input.peek(1)?;
            if rest.is_empty() {
                self.state = GzState::Done;
                return Ok(false);
            }
            if rest.iter().any(|&b| b != 0) {
                return Err(invalid("trailing garbage after gzip data"));
            }
            let n = rest.len();
            self.input.consume(n);
        }
    }

    /// Reads a member header, checking its CRC16 when it has one; returns its XFL.
    fn header(&mut self) -> io::Result<u8> {
        let mut hcrc = crc32fast::Hasher::new();
        let fixed = self.input.peek(10)?;
        let Some(&[_, _, method, flags, _, _, _, _, xfl, _]) = fixed.get(..10) else {
            return Err(truncated("gzip"));
        };
        if method != 8 {
            return Err(invalid(format!(
                "gzip data: unknown compression method {method}"
            )));
        }
        if flags & 0xe0 != 0 {
            return Err(invalid("gzip data: reserved header flags set"));
        }
        self.take(10, &mut hcrc)?;
        if flags & FEXTRA != 0 {
            let len = self.take(2, &mut hcrc)?;
            self.take(usize::from(u16::from_le_bytes([len[0], len[1]])), &mut hcrc)?;
        }
        for flag in [FNAME, FCOMMENT] {
            if flags & flag != 0 {
                self.skip_string(&mut hcrc)?;
            }
        }
        if flags & FHCRC != 0 {
            let want = hcrc.finalize() as u16;
            let got = self.take(2, &mut crc32fast::Hasher::new())?;
            if u16::from_le_bytes([got[0], got[1]]) != want {
                return Err(invalid("gzip data: header crc mismatch"));
            }
        }
        Ok(xfl)
    }

    /// Consumes `n` header bytes into `hcrc`; returns the first two (zeros if fewer).
    fn take(&mut self, mut n: usize, hcrc: &mut crc32fast::Hasher) -> io::Result<[u8; 2]> {
        let mut first = [0u8; 2];
        let mut seen = 0;
        while n > 0 {
            let avail = self.input.peek(1)?;
            if avail.is_empty() {
                return Err(truncated("gzip"));
            }
            let k = avail.len().min(n);
            hcrc.update(&avail[..k]);
            for &b in avail[..k].iter().take(2usize.saturating_sub(seen)) {
                first[seen] = b;
                seen += 1;
            }
            self.input.consume(k);
            n -= k;
        }
        Ok(first)
    }

    /// Consumes a zero-terminated header field (file name or comment) into `hcrc`.
    fn skip_string(&mut self, hcrc: &mut crc32fast::Hasher) -> io::Result<()> {
        loop {
            let avail = self.input.peek(1)?;
            if avail.is_empty() {
                return Err(truncated("gzip"));
            }
            let (k, done) = match avail.iter().position(|&b| b == 0) {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            hcrc.update(&avail[..k]);
            self.input.consume(k);
            if done {
                return Ok(());
            }
        }
    }

    /// Checks the member's trailer against what was inflated.
    fn trailer(&mut self) -> io::Result<()> {
        let t = self.input.peek(8)?;
        let Some(&[c0, c1, c2, c3, s0, s1, s2, s3]) = t.get(..8) else {
            return Err(truncated("gzip"));
        };
        if u32::from_le_bytes([c0, c1, c2, c3]) != self.crc.clone().finalize() {
            return Err(invalid("gzip data: crc mismatch"));
        }
        if u32::from_le_bytes([s0, s1, s2, s3]) != self.size {
            return Err(invalid("gzip data: length mismatch"));
        }
        self.input.consume(8);
        self.state = GzState::Header { first: false };
        Ok(())
    }

    /// Inflates into `out`; 0 only when the member's data ended.
    fn inflate_some(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let look_from = self
                .notes
                .as_ref()
                .and_then(|n| n.active.then(|| n.look_from()));
            // Sync points are looked for in what is buffered: the input given to the inflater
            // ends at the first one, or 3 bytes short of the buffer's end (the start of one
            // that the next refill completes).
            let data = self.input.peek(match look_from {
                Some(_) => SYNC.len() * 2,
                None => 1,
            })?;
            let at_eof = data.is_empty();
            let (data, at_sync) = match look_from {
                None => (data, false),
                Some(from) => match data
                    .get(from..)
                    .and_then(|rest| memchr::memmem::find(rest, &SYNC))
                {
                    Some(at) => (&data[..from + at + SYNC.len()], true),
                    None if data.len() > SYNC.len() => (&data[..data.len() - 3], false),
                    None => (data, false),
                },
            };
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(data, out, flate2::FlushDecompress::None)
                .map_err(|e| invalid(format!("gzip data: corrupt: {e}")))?;
            let used = (self.inflate.total_in() - in0) as usize;
            let made = (self.inflate.total_out() - out0) as usize;
            if let Some(notes) = self.notes.as_mut() {
                notes.out += made as u64;
                if status == flate2::Status::StreamEnd {
                    notes.member_end();
                } else if notes.active {
                    notes.took(&data[..used], at_sync && used == data.len());
                }
            }
            self.input.consume(used);
            self.crc.update(&out[..made]);
            self.size = self.size.wrapping_add(made as u32);
            if status == flate2::Status::StreamEnd {
                // The data goes out first: a consumer that needs no more still gets all of
                // it, and the trailer's verdict comes with the next read or `finish`.
                self.state = GzState::Trailer;
                return Ok(made);
            }
            if made > 0 {
                return Ok(made);
            }
            if at_eof {
                return Err(truncated("gzip"));
            }
            if used == 0 {
                return Err(invalid("gzip data: the inflater made no progress"));
            }
        }
    }
}

impl<R: Read> Read for Gunzip<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                GzState::Done => return Ok(0),
                GzState::Header { first } => {
                    if !self.next_member(first)? {
                        return Ok(0);
                    }
                }
                GzState::Body => {
                    let n = self.inflate_some(out)?;
                    if n > 0 {
                        return Ok(n);
                    }
                }
                GzState::Trailer => self.trailer()?,
            }
        }
    }
}

/// Whether `head` starts a zstd frame or a skippable frame.
fn zstd_frame_start(head: &[u8]) -> bool {
    match head {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => true,
        [m, 0x2a, 0x4d, 0x18, ..] => m & 0xf0 == 0x50,
        _ => false,
    }
}

/// Words for libzstd's errors, in the house's lowercase.
fn zstd_error(e: io::Error) -> io::Error {
    let msg = e.to_string();
    if msg == "Restored data doesn't match checksum" {
        return invalid("zstd data: checksum mismatch");
    }
    invalid(format!("zstd data: {}", msg.to_lowercase()))
}

/// Input for the first call on a frame: the header's fixed part, after which libzstd says
/// what it needs.
const FRAME_START: usize = 5;

/// Decodes every frame of a zstd stream; libzstd checks the content checksums.
pub(super) struct Unzstd<R: Read> {
    input: Input<R>,
    z: zstd::stream::raw::Decoder<'static>,
    /// Between frames (or before the first).
    at_boundary: bool,
    frames: u64,
    done: bool,
    /// libzstd's hint of the input it needs next (at most the rest of the frame).
    hint: usize,
}

impl<R: Read> Unzstd<R> {
    pub(super) fn new(input: Input<R>) -> io::Result<Self> {
        Ok(Unzstd {
            input,
            z: zstd::stream::raw::Decoder::new()?,
            at_boundary: true,
            frames: 0,
            done: false,
            hint: FRAME_START,
        })
    }

    /// At a frame boundary: false at the end of the stream, an error for trailing garbage.
    fn next_frame(&mut self) -> io::Result<bool> {
        let head = self.input.peek(4)?;
        if head.is_empty() && self.frames > 0 {
            self.done = true;
            return Ok(false);
        }
        if !zstd_frame_start(head) {
            return Err(if self.frames > 0 {
                invalid("trailing garbage after zstd data")
            } else {
                invalid("zstd data: no zstd frame")
            });
        }
        if self.frames > 0 {
            self.z.reinit()?;
        }
        self.at_boundary = false;
        Ok(true)
    }
}

impl<R: Read> Read for Unzstd<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done || (self.at_boundary && !self.next_frame()?) {
                return Ok(0);
            }
            let data = self.input.peek(1)?;
            let at_eof = data.is_empty();
            // Given the last block and the checksum at once, libzstd would report a bad
            // checksum and drop the block's output with it. Fed no more than it asks for, it
            // hands out the block first, so that the consumer has all the data before the
            // verdict (and a tar reader stops at the archive's end, not at the error).
            let data = &data[..data.len().min(self.hint.max(1))];
            let st = self.z.run_on_buffers(data, out).map_err(zstd_error)?;
            self.input.consume(st.bytes_read);
            let made = st.bytes_written;
            self.hint = st.remaining;
            // 0: the frame is complete and all of it has been handed out.
            if st.remaining == 0 {
                self.at_boundary = true;
                self.frames += 1;
                self.hint = FRAME_START;
            }
            if made > 0 {
                return Ok(made);
            }
            if self.at_boundary {
                continue;
            }
            if at_eof {
                return Err(truncated("zstd"));
            }
            if st.bytes_read == 0 {
                return Err(invalid("zstd data: the decoder made no progress"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, the count varying from read to read.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        seed: u64,
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.seed = self
                .seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let want = 1 + (self.seed >> 59) as usize;
            let n = want.min(out.len()).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn trickle(data: &[u8]) -> Input<Trickle> {
        let r = Trickle {
            data: data.to_vec(),
            pos: 0,
            seed: data.len() as u64,
        };
        Input::new(r, 16)
    }

    #[test]
    fn peek_looks_ahead_across_refills() -> io::Result<()> {
        let data: Vec<u8> = (0..100u8).collect();
        let mut input = trickle(&data);
        let mut seen = Vec::new();
        loop {
            let head = input.peek(10)?.to_vec();
            if head.is_empty() {
                break;
            }
            assert!(head.len() >= 10 || seen.len() + head.len() == data.len());
            seen.push(head[0]);
            input.consume(1);
        }
        assert_eq!(seen, data);
        Ok(())
    }

    #[test]
    fn gzip_with_every_header_field_and_short_reads_decodes() -> io::Result<()> {
        let data = b"hello, world\n".repeat(1000);
        let mut gz = flate2::GzBuilder::new()
            .extra(b"xy".to_vec())
            .filename("name.tar")
            .comment("a comment")
            .operating_system(3)
            .write(Vec::new(), flate2::Compression::new(6));
        io::Write::write_all(&mut gz, &data)?;
        let mut member = gz.finish()?;
        // FHCRC: the low 16 bits of the CRC32 of the header so far, inserted before the data.
        member[3] |= FHCRC;
        let header_len = 10 + 2 + 2 + b"name.tar\0".len() + b"a comment\0".len();
        let crc16 = (crc32fast::hash(&member[..header_len]) as u16).to_le_bytes();
        member.splice(header_len..header_len, crc16);
        let two = [&member[..], &member[..]].concat();
        let mut out = Vec::new();
        Gunzip::new(trickle(&two)).read_to_end(&mut out)?;
        assert_eq!(out, [&data[..], &data[..]].concat());

        member[header_len] ^= 1;
        let err = Gunzip::new(trickle(&member))
            .read_to_end(&mut Vec::new())
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("gzip data: header crc mismatch"));
        Ok(())
    }

    #[test]
    fn zstd_frames_and_skippable_frames_decode_with_short_reads() -> io::Result<()> {
        let data = b"some text ".repeat(5000);
        let frame = zstd::encode_all(&data[..], 3)?;
        let skippable = [0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 7, 8, 9];
        let stream = [&frame[..], &skippable[..], &frame[..]].concat();
        let mut out = Vec::new();
        Unzstd::new(trickle(&stream))?.read_to_end(&mut out)?;
        assert_eq!(out, [&data[..], &data[..]].concat());
        Ok(())
    }
}
