//! Gzip blocks of large members compressed while the inputs are still being read.
//!
//! Indexing a compressed input is bound by decompression, on one thread; writing the output
//! is bound by compression, on all of them. So while an input is spooled, each member of at
//! least one gzip block ([`GZ_BLOCK`]) has its data hashed (sha256, for the digest check) and
//! its blocks compressed on rayon's threads; the write pass then copies those blocks instead of
//! reading and compressing the data again. The spool does not keep that data: the blocks stand
//! for it, and are inflated on the rare occasions it is read again (a large JSON member or
//! config, a duplicate that is not the same blocks, an output that turned out not to be gzip).
//!
//! When the output's level is the default, a gzip input's own deflate data is reused where it
//! can be (see `dockertools_common::compress::splice`): the stretches between its sync points
//! that lie inside the member become blocks of their own, each checked on the pool against the
//! bytes it stands for (and compressed like the rest when it fails). A member's blocks are then
//! its data cut at those stretches and every [`GZ_BLOCK`] bytes between them, counted from the
//! member's start or the end of the last stretch; the stretches next to each other make blocks
//! of up to [`GZ_BLOCK`] bytes. Which stretches there are depends only on the input's bytes, so
//! the output's bytes still depend only on the inputs and the level, never on the threads.
//! Without them, a member's blocks are its data in [`GZ_BLOCK`] pieces from its start, the
//! blocks the write pass makes of a member read in place, after the cut before its data
//! ([`crate::write`]).
//! The blocks are kept in memory while the budget shared with the spools lasts, then in an
//! unnamed file beside OUT ([`crate::store`]).
//! Memory: a few blocks in flight, up to [`MAX_SPAN`] and two blocks of data waiting for their
//! stretches, the blocks kept within the budget, and 48 bytes per block.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read};
use std::path::Path;

use dockertools_common::compress::splice::{self, Segment, MAX_SPAN, WINDOW};
use dockertools_common::compress::{GzBlock, GzBlocks, Segments, GZ_BLOCK};
use dockertools_common::tar::reader::{ReadError, Reader};
use sha2::{Digest, Sha256};

use crate::store::{Budget, Overflow};

/// A member's data as it was read ahead.
pub(crate) struct Member {
    /// Its length.
    pub size: u64,
    /// Its sha256.
    pub sha256: [u8; 32],
    /// Its first bytes (up to 4), to tell a layer stored compressed.
    pub head: Vec<u8>,
    blocks: Vec<BlockAt>,
}

/// A compressed block, kept.
struct BlockAt {
    /// The bytes before it that its deflate data may refer to (a stretch of the input's data),
    /// then its deflate data.
    deflate: Kept,
    /// The length of those bytes before it (0 for a block compressed here).
    window: u32,
    crc: u32,
    input_len: u32,
    /// Where its data starts in its member's.
    start: u64,
}

/// A block submitted and not yet kept: its member, the bytes before it that it needs, and
/// where its data starts.
struct Owner {
    key: (usize, u64),
    window: Vec<u8>,
    start: u64,
}

/// Where a compressed block's bytes are.
enum Kept {
    Memory(Vec<u8>),
    /// In the overflow file.
    File {
        at: u64,
        len: u32,
    },
}

/// What can fail while reading a member ahead.
pub(crate) enum AheadError {
    /// The input's tar.
    Tar(ReadError),
    /// The cache file or the compressor.
    Cache(io::Error),
}

/// The members read ahead so far, by input and data offset, and their cache file.
pub(crate) struct Ahead {
    level: i32,
    /// Whether a gzip input's deflate data is reused (the output is at the default level).
    splice: bool,
    budget: Budget,
    overflow: Overflow,
    members: BTreeMap<(usize, u64), Member>,
    /// Blocks being compressed, one pool for every member: a member's last blocks are still
    /// being compressed while the next member is read, so no thread waits at its end.
    blocks: GzBlocks,
    /// The blocks submitted and not yet kept, in order.
    owners: VecDeque<Owner>,
}

impl Ahead {
    /// A cache for gzip output at `level` (as the output's compressor takes it), in memory from
    /// `budget`, then in an unnamed file in `dir`; reusing the inputs' deflate data when
    /// `splice`.
    pub fn new(dir: &Path, level: i32, splice: bool, budget: &Budget) -> io::Result<Ahead> {
        let level = dockertools_common::compress::gzip_level(level);
        Ok(Ahead {
            level,
            splice,
            budget: budget.clone(),
            overflow: Overflow::new(dir),
            members: BTreeMap::new(),
            blocks: GzBlocks::new(level)?,
            owners: VecDeque::new(),
        })
    }

    /// Whether a member of `size` bytes is read ahead (and its blocks cut in the output).
    pub fn wanted(size: u64) -> bool {
        size >= GZ_BLOCK as u64
    }

    /// Whether gzip inputs' deflate data is reused: their decoder should note segments.
    pub fn splices(&self) -> bool {
        self.splice
    }

    /// Reads the current entry's data (`size` bytes) from `reader`, hashing it and compressing
    /// it block by block, or reusing the `segments` of its input's deflate data that lie in
    /// it; `key` is the input and the offset of the data.
    pub fn read<R: Read>(
        &mut self,
        key: (usize, u64),
        size: u64,
        reader: &mut Reader<R>,
        segments: Option<&Segments>,
    ) -> Result<(), AheadError> {
        let member = Member {
            size,
            sha256: [0; 32],
            head: Vec::new(),
            blocks: Vec::new(),
        };
        self.members.insert(key, member);
        let mut head = Vec::new();
        let mut sha = Sha256::new();
        let end = key.1.saturating_add(size);
        let mut cut = Cut {
            key,
            data: Vec::new(),
            data_at: key.1,
            at: key.1,
            received: key.1,
            segments: VecDeque::new(),
        };
        let mut piece = vec![0u8; GZ_BLOCK];
        loop {
            let n = reader.fill_data(&mut piece).map_err(AheadError::Tar)?;
            let data = &piece[..n];
            sha.update(data);
            if head.is_empty() {
                head = data.iter().take(4).copied().collect();
            }
            cut.data.extend_from_slice(data);
            cut.received += n as u64;
            if let Some(segments) = segments.filter(|_| self.splice) {
                cut.segments.extend(segments.take_within(key.1, end));
            }
            self.cut(&mut cut, n == 0).map_err(AheadError::Cache)?;
            if n == 0 {
                break;
            }
        }
        if let Some(member) = self.members.get_mut(&key) {
            member.sha256 = sha.finalize().into();
            member.head = head;
        }
        Ok(())
    }

    /// Cuts what `c` has received into blocks, as far as the segments known so far decide
    /// (all of it at the member's `end`).
    fn cut(&mut self, c: &mut Cut, end: bool) -> io::Result<()> {
        loop {
            while c.segments.front().is_some_and(|s| s.start < c.at) {
                c.segments.pop_front();
            }
            // Data no segment still to come can start in (one ends past what was received,
            // and spans at most MAX_SPAN).
            let settled = match end {
                true => c.received,
                false => c.received.saturating_sub(MAX_SPAN),
            };
            let Some(first) = c.segments.front() else {
                self.ours(c, settled, end)?;
                return Ok(());
            };
            let start = first.start;
            // The segments that make one block with the first: next to each other, spanning
            // up to a block; settled once the next one is known not to join them.
            let mut run = 1;
            let mut run_end = first.end;
            let mut closed = end;
            for next in c.segments.iter().skip(1) {
                if next.start != run_end || next.end - start > GZ_BLOCK as u64 {
                    closed = true;
                    break;
                }
                run += 1;
                run_end = next.end;
            }
            if run == c.segments.len() && c.received >= run_end.saturating_add(MAX_SPAN) {
                closed = true;
            }
            if !closed || run_end > c.received {
                self.ours(c, start.min(settled), false)?;
                return Ok(());
            }
            self.ours(c, start, true)?;
            let run: Vec<Segment> = c.segments.drain(..run).collect();
            self.spliced(c, run)?;
        }
    }

    /// Submits the data from `c.at` to `to` as blocks compressed here: whole [`GZ_BLOCK`]s,
    /// and the rest too when `all`.
    fn ours(&mut self, c: &mut Cut, to: u64, all: bool) -> io::Result<()> {
        while c.at < to && (all || to - c.at >= GZ_BLOCK as u64) {
            let len = (to - c.at).min(GZ_BLOCK as u64);
            let data = c.slice(c.at, c.at + len).to_vec();
            self.blocks.submit(data, false);
            self.submitted(c, Vec::new(), len)?;
        }
        Ok(())
    }

    /// Submits the segments `run` (next to each other, from `c.at`) as one block that reuses
    /// their deflate data.
    fn spliced(&mut self, c: &mut Cut, run: Vec<Segment>) -> io::Result<()> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(());
        };
        let (from, to) = (first.start, last.end);
        let window_from = from.saturating_sub(WINDOW as u64).max(c.key.1);
        let window = c.slice(window_from, from).to_vec();
        let data = c.slice(from, to).to_vec();
        let mut deflate = Vec::with_capacity(run.iter().map(|s| s.deflate.len()).sum());
        for s in &run {
            deflate.extend_from_slice(&s.deflate);
        }
        self.blocks.submit_spliced(window.clone(), deflate, data);
        self.submitted(c, window, to - from)
    }

    /// Notes the block just submitted (`len` bytes from `c.at`, after `window`) and moves on.
    fn submitted(&mut self, c: &mut Cut, window: Vec<u8>, len: u64) -> io::Result<()> {
        self.owners.push_back(Owner {
            key: c.key,
            window,
            start: c.at - c.key.1,
        });
        c.at += len;
        c.trim();
        while self.blocks.full() {
            self.store(true)?;
        }
        while self.store(false)? {}
        Ok(())
    }

    /// Keeps the next compressed block as its member's, if there is one ready (or once it is,
    /// when `wait`).
    fn store(&mut self, wait: bool) -> io::Result<bool> {
        let Some(block) = self.blocks.next(wait) else {
            return Ok(false);
        };
        let block = block?;
        let Some(owner) = self.owners.pop_front() else {
            return Err(io::Error::other("a gzip block of no member"));
        };
        let too_big = || io::Error::other("a gzip block over 4 GiB");
        let window = u32::try_from(owner.window.len()).map_err(|_| too_big())?;
        let mut bytes = owner.window;
        if bytes.is_empty() {
            bytes = block.deflate;
        } else {
            bytes.extend_from_slice(&block.deflate);
        }
        let len = u32::try_from(bytes.len()).map_err(|_| too_big())?;
        let input_len = u32::try_from(block.len).map_err(|_| too_big())?;
        let deflate = if self.budget.take(bytes.len()) {
            // The compressor's buffer is sized for the worst case; the budget counts what is kept.
            bytes.shrink_to_fit();
            Kept::Memory(bytes)
        } else {
            let at = self.overflow.append(&bytes)?;
            Kept::File { at, len }
        };
        let Some(member) = self.members.get_mut(&owner.key) else {
            return Err(io::Error::other("a gzip block of no member"));
        };
        member.blocks.push(BlockAt {
            deflate,
            window,
            crc: block.crc,
            input_len,
            start: owner.start,
        });
        Ok(true)
    }

    /// Waits for the blocks still being compressed and makes everything kept readable; call
    /// once every input is indexed.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.store(true)? {}
        self.overflow.flush()
    }

    /// The member whose data is at `key`, if it was read ahead for output at `level`.
    pub fn get(&self, key: (usize, u64), level: i32) -> Option<&Member> {
        if dockertools_common::compress::gzip_level(level) != self.level {
            return None;
        }
        self.members.get(&key)
    }

    /// Reads up to `buf.len()` bytes of the data of the member at `key` from `at` (inflating the
    /// block they are in); 0 past its end. Call after [`Ahead::flush`].
    pub fn read_data(&self, key: (usize, u64), at: u64, buf: &mut [u8]) -> io::Result<usize> {
        let missing = || io::Error::other("a member read ahead has no blocks");
        let member = self.members.get(&key).ok_or_else(missing)?;
        let idx = member
            .blocks
            .partition_point(|b| b.start + u64::from(b.input_len) <= at);
        let Some(block) = member.blocks.get(idx) else {
            return Ok(0);
        };
        let bytes = inflate(&self.deflate(block)?, block)?;
        let part = bytes.get((at - block.start) as usize..).unwrap_or(&[]);
        let n = part.len().min(buf.len());
        buf[..n].copy_from_slice(&part[..n]);
        Ok(n)
    }

    /// Whether the members at `a` and `b` are both read ahead and have the same blocks: then
    /// they hold the same bytes (the blocks inflate to them). `false` says nothing.
    pub fn same_blocks(&self, a: (usize, u64), b: (usize, u64)) -> io::Result<bool> {
        let (Some(a), Some(b)) = (self.members.get(&a), self.members.get(&b)) else {
            return Ok(false);
        };
        if a.size != b.size || a.blocks.len() != b.blocks.len() {
            return Ok(false);
        }
        for (x, y) in a.blocks.iter().zip(&b.blocks) {
            let same = x.crc == y.crc
                && x.input_len == y.input_len
                && x.window == y.window
                && self.deflate(x)? == self.deflate(y)?;
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A kept block's deflate bytes.
    fn deflate<'a>(&'a self, b: &'a BlockAt) -> io::Result<std::borrow::Cow<'a, [u8]>> {
        Ok(match &b.deflate {
            Kept::Memory(bytes) => std::borrow::Cow::Borrowed(bytes.as_slice()),
            Kept::File { at, len } => {
                let mut bytes = vec![0u8; *len as usize];
                self.overflow.read_exact_at(&mut bytes, *at)?;
                std::borrow::Cow::Owned(bytes)
            }
        })
    }

    /// The compressed blocks of `member`, in order.
    pub fn blocks<'a>(
        &'a self,
        member: &'a Member,
    ) -> impl Iterator<Item = io::Result<GzBlock>> + 'a {
        member.blocks.iter().map(|b| {
            let bytes = self.deflate(b)?;
            Ok(GzBlock {
                deflate: bytes.get(b.window as usize..).unwrap_or_default().to_vec(),
                crc: b.crc,
                len: u64::from(b.input_len),
            })
        })
    }
}

/// The bytes a block compressed ahead (or reused) holds, checked against its CRC32.
fn inflate(bytes: &[u8], block: &BlockAt) -> io::Result<Vec<u8>> {
    let (window, deflate) = bytes.split_at((block.window as usize).min(bytes.len()));
    let out = splice::inflate_after(window, deflate, block.input_len as usize)?;
    if crc32fast::hash(&out) != block.crc {
        return Err(io::Error::other(
            "a gzip block compressed ahead does not inflate to its bytes",
        ));
    }
    Ok(out)
}

/// A member's data being cut into blocks: what was received and not yet submitted (with the
/// window before it), and the segments of its input that lie in it.
struct Cut {
    key: (usize, u64),
    /// The input's bytes from `data_at` to `received`.
    data: Vec<u8>,
    data_at: u64,
    /// Where the next block starts.
    at: u64,
    received: u64,
    segments: VecDeque<Segment>,
}

impl Cut {
    /// The input's bytes from `from` to `to` (both within `data_at..received`).
    fn slice(&self, from: u64, to: u64) -> &[u8] {
        let (a, b) = ((from - self.data_at) as usize, (to - self.data_at) as usize);
        self.data.get(a..b).unwrap_or_default()
    }

    /// Forgets the bytes before the window of the next block.
    fn trim(&mut self) {
        let keep_from = self.at.saturating_sub(WINDOW as u64).max(self.data_at);
        let drop = (keep_from - self.data_at) as usize;
        if drop >= GZ_BLOCK || self.at >= self.received {
            self.data.drain(..drop.min(self.data.len()));
            self.data_at = keep_from;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use dockertools_common::compress::{Compression, Compressor};
    use dockertools_common::hash::sha256_hex;
    use dockertools_common::tar::gnu::GnuOptions;
    use dockertools_common::tar::writer::{Data, TarWriter};
    use dockertools_common::tar::{Dialect, Header, REGULAR};

    use std::io::Write;

    use super::*;
    use crate::{merge, Error, Options};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A one-layer docker-archive whose layer (`layer.tar` under `folder`) holds `body`, and
    /// whose config gives it the diff_id `diff_id`; a small file and a 3-block blob beside it.
    fn image(folder: &str, body: &[u8], diff_id: &str) -> io::Result<Vec<u8>> {
        image_padded(folder, body, diff_id, 0)
    }

    /// [`image`], its `manifest.json` and config followed by `pad` spaces (which JSON ignores).
    fn image_padded(folder: &str, body: &[u8], diff_id: &str, pad: usize) -> io::Result<Vec<u8>> {
        let layer = format!("{folder}/layer.tar");
        let spaces = " ".repeat(pad);
        let config =
            format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}{spaces}"#);
        let manifest =
            format!(r#"[{{"Config":"c.json","RepoTags":["x:1"],"Layers":["{layer}"]}}]{spaces}"#);
        let blob: Vec<u8> = (0..3 * GZ_BLOCK).map(|i| (i * 7 / 5 % 251) as u8).collect();
        tar(&[
            ("manifest.json", manifest.as_bytes()),
            ("c.json", config.as_bytes()),
            (&layer, body),
            ("small", b"small file"),
            ("z/blob", &blob),
        ])
    }

    /// A tar of regular files.
    fn tar(members: &[(&str, &[u8])]) -> io::Result<Vec<u8>> {
        let mut w = TarWriter::new(Vec::new(), Dialect::Gnu(GnuOptions::default()));
        for &(name, data) in members {
            let h = Header {
                name: name.as_bytes().to_vec(),
                mode: 0o644,
                size: data.len() as u64,
                typeflag: REGULAR,
                ..Header::default()
            };
            w.append(&h, Data::Bytes(data)).map_err(io::Error::other)?;
        }
        w.finish()
    }

    fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut c = Compressor::new(Vec::new(), Compression::Gzip, 6)?;
        c.write_all(bytes)?;
        c.finish()
    }

    /// Merges `inputs` (written into `dir` under their names) into a gzip `out.tar.gz` at the
    /// default level, keeping up to `memory` bytes in memory.
    fn merged(dir: &Path, inputs: &[(&str, Vec<u8>)], memory: u64) -> Result<Vec<u8>, Error> {
        merged_at(dir, inputs, memory, None)
    }

    /// [`merged`] at `level`.
    fn merged_at(
        dir: &Path,
        inputs: &[(&str, Vec<u8>)],
        memory: u64,
        level: Option<i32>,
    ) -> Result<Vec<u8>, Error> {
        let mut paths = Vec::new();
        for (name, bytes) in inputs {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|source| Error::Io {
                input: path.clone(),
                source,
            })?;
            paths.push(path);
        }
        let out: PathBuf = dir.join("out.tar.gz");
        let opts = Options {
            mtime: 1,
            compress: Some(Compression::Gzip),
            level,
            memory,
        };
        merge(&out, &paths, &opts)?;
        std::fs::read(&out).map_err(|source| Error::Io { input: out, source })
    }

    /// What a gzip stream decompresses to.
    fn gunzip(gz: &[u8]) -> io::Result<Vec<u8>> {
        let (_, mut r) = dockertools_common::compress::decompress(io::Cursor::new(gz.to_vec()))?;
        let mut back = Vec::new();
        r.read_to_end(&mut back)?;
        r.finish()?;
        Ok(back)
    }

    /// gzip as pigz writes it: a sync flush every 128 KiB of input, a 32 KiB window carried
    /// over (`xfl` 0, or 4 as `pigz -1` marks it).
    fn pigz(bytes: &[u8], xfl: u8) -> io::Result<Vec<u8>> {
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3];
        let mut z = flate2::Compress::new(flate2::Compression::new(6), false);
        let mut chunks = bytes.chunks(128 << 10).peekable();
        while let Some(chunk) = chunks.next() {
            let flush = match chunks.peek() {
                Some(_) => flate2::FlushCompress::Sync,
                None => flate2::FlushCompress::Finish,
            };
            out.reserve(chunk.len() + 1024);
            let before = z.total_in();
            z.compress_vec(chunk, &mut out, flush)
                .map_err(io::Error::other)?;
            if z.total_in() - before != chunk.len() as u64 {
                return Err(io::Error::other("short deflate"));
            }
        }
        out.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        Ok(out)
    }

    /// Whether `out` holds the 256 bytes of `gz` from a quarter of its length: deflate data
    /// reused (the tests' first large member lies there).
    fn reuses(out: &[u8], gz: &[u8]) -> bool {
        let at = gz.len() / 4;
        let needle = &gz[at..at + 256];
        out.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn gzip_output_is_the_same_whether_members_were_compressed_ahead_or_not() -> TestResult {
        let dir = tempfile::tempdir()?;
        let body: Vec<u8> = (0..GZ_BLOCK + 12_345).map(|i| (i % 13) as u8).collect();
        let diff_id = sha256_hex(&body);
        let tar = image(&"a".repeat(64), &body, &diff_id)?;
        // At a level asked for, nothing is reused: a plain input is read in place (nothing
        // ahead); a gzip one is spooled (its large members compressed ahead); one thread
        // against all; the same bytes.
        let all = crate::DEFAULT_MEMORY;
        let six = Some(6);
        let plain = merged_at(dir.path(), &[("in.tar", tar.clone())], all, six)?;
        let spooled = merged_at(dir.path(), &[("in.tar.gz", gzip(&tar)?)], all, six)?;
        assert!(plain == spooled);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
        let gz = gzip(&tar)?;
        let one = pool.install(|| merged_at(dir.path(), &[("in.tar.gz", gz)], all, six))?;
        assert!(one == plain);
        // Spool and blocks in files (no memory), or partly (the spool's first chunk and a
        // block or two in memory, the rest in files): the same bytes.
        for memory in [0, (4 << 20) + GZ_BLOCK as u64] {
            let spilled = merged_at(dir.path(), &[("in.tar.gz", gzip(&tar)?)], memory, six)?;
            assert!(spilled == plain, "{memory}");
        }
        // At the default level too, for a plain input; the output reads back as the merged
        // tar, and the blocks cut around each large member did not change what it holds.
        assert!(merged(dir.path(), &[("in.tar", tar.clone())], all)? == plain);
        let back = gunzip(&plain)?;
        let at = back.windows(body.len()).position(|w| w == body.as_slice());
        assert!(at.is_some_and(|at| at % 512 == 0));
        Ok(())
    }

    #[test]
    fn a_gzip_inputs_deflate_data_is_reused_at_the_default_level() -> TestResult {
        let dir = tempfile::tempdir()?;
        // Text, so that matches reach back across every sync point.
        let body: Vec<u8> = (0..3 * GZ_BLOCK + 777)
            .map(|i| b"0123456789abcdef"[(i * 7 / 3 + i / 1000) % 16])
            .collect();
        let tar = image(&"e".repeat(64), &body, &sha256_hex(&body))?;
        let all = crate::DEFAULT_MEMORY;
        let plain = merged(dir.path(), &[("in.tar", tar.clone())], all)?;
        let want = gunzip(&plain)?;
        let plain_twice = [("a.tar", tar.clone()), ("b.tar", tar.clone())];
        let want_twice = gunzip(&merged(dir.path(), &plain_twice, all)?)?;
        for gz in [pigz(&tar, 0)?, gzip(&tar)?] {
            let out = merged(dir.path(), &[("in.tar.gz", gz.clone())], all)?;
            assert!(reuses(&out, &gz));
            assert!(gunzip(&out)? == want);
            // The same bytes on one thread, and with everything in files.
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
            let one = pool.install(|| merged(dir.path(), &[("in.tar.gz", gz.clone())], all))?;
            assert!(one == out);
            assert!(merged(dir.path(), &[("in.tar.gz", gz.clone())], 0)? == out);
            // Read back from its blocks: the same large member in a second input.
            let twice = [("a.tar.gz", gz.clone()), ("b.tar", tar.clone())];
            assert!(gunzip(&merged(dir.path(), &twice, all)?)? == want_twice);
            // A level asked for compresses everything.
            let six = merged_at(dir.path(), &[("in.tar.gz", gz.clone())], all, Some(6))?;
            assert!(!reuses(&six, &gz));
            assert!(gunzip(&six)? == want);
        }
        // Compressed for speed (`pigz -1`): compressed again.
        let fast = pigz(&tar, 4)?;
        let out = merged(dir.path(), &[("in.tar.gz", fast.clone())], all)?;
        assert!(!reuses(&out, &fast));
        assert!(out == plain);
        Ok(())
    }

    #[test]
    fn members_read_ahead_are_read_back_from_their_blocks() -> TestResult {
        let dir = tempfile::tempdir()?;
        let body: Vec<u8> = (0..GZ_BLOCK + 7).map(|i| (i % 11) as u8).collect();
        let diff_id = sha256_hex(&body);
        // A manifest and a config of more than a block: read ahead, then read back for the
        // JSON merge and the digests; from blocks compressed here, or reused from the input.
        let image = image_padded(&"d".repeat(64), &body, &diff_id, GZ_BLOCK + 3)?;
        let all = crate::DEFAULT_MEMORY;
        let plain = gunzip(&merged(dir.path(), &[("in.tar", image.clone())], all)?)?;
        for memory in [all, 0] {
            for gz in [gzip(&image)?, pigz(&image, 0)?] {
                let out = merged(dir.path(), &[("in.tar.gz", gz)], memory)?;
                assert!(gunzip(&out)? == plain, "{memory}");
            }
        }
        // The same large member in two inputs: compared by its blocks, or read back against
        // a plain input's bytes.
        let big: Vec<u8> = (0..2 * GZ_BLOCK + 5).map(|i| (i * 3 % 253) as u8).collect();
        let one = tar(&[("manifest.json", &b"[]"[..]), ("x/big", &big)])?;
        let inputs = [("a.tar.gz", gzip(&one)?), ("b.tar.gz", gzip(&one)?)];
        merged(dir.path(), &inputs, all)?;
        merged(
            dir.path(),
            &[("a.tar", one.clone()), ("b.tar.gz", gzip(&one)?)],
            all,
        )?;
        // One byte apart, in its last block: a conflict, whichever way it is read.
        let mut other = big.clone();
        if let Some(last) = other.last_mut() {
            *last ^= 1;
        }
        let two = tar(&[("manifest.json", &b"[]"[..]), ("x/big", &other)])?;
        for first in [("a.tar.gz", gzip(&one)?), ("a.tar", one.clone())] {
            let e = merged(dir.path(), &[first, ("b.tar.gz", gzip(&two)?)], all).err();
            assert!(
                matches!(&e, Some(Error::Conflict { entry, .. }) if entry == "x/big"),
                "{e:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_large_layer_compressed_ahead_is_checked_against_its_diff_id() -> TestResult {
        let dir = tempfile::tempdir()?;
        let body: Vec<u8> = (0..2 * GZ_BLOCK).map(|i| (i % 17) as u8).collect();
        let wrong = "c".repeat(64);
        let folder = "b".repeat(64);
        let tar = image(&folder, &body, &wrong)?;
        match merged(
            dir.path(),
            &[("bad.tar.gz", gzip(&tar)?)],
            crate::DEFAULT_MEMORY,
        ) {
            Err(Error::Digest {
                entry,
                expected,
                actual,
                ..
            }) => {
                assert_eq!(entry, format!("{folder}/layer.tar"));
                assert_eq!(expected, wrong);
                assert_eq!(actual, sha256_hex(&body));
            }
            other => panic!("expected a digest error, got {other:?}"),
        }
        assert!(!dir.path().join("out.tar.gz").exists());
        Ok(())
    }
}
