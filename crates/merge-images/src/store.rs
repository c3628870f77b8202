//! Bytes kept from the first pass for the second: a compressed input's decompressed tar (its
//! spool) and the gzip blocks compressed ahead ([`crate::ahead`]).
//!
//! They are kept in memory while a budget shared by all of them lasts ([`Options::memory`],
//! 1 GiB by default), then in an unnamed file beside OUT: so memory stays within that budget
//! whatever the inputs, and an image that fits is never written to disk and read back (which
//! costs the kernel more than the copy into memory).
//!
//! [`Options::memory`]: crate::Options::memory

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Bytes of a spool held in one piece of memory.
const CHUNK: usize = 4 << 20;

/// The memory left to the stores of one merge.
#[derive(Clone, Debug)]
pub(crate) struct Budget(Rc<Cell<u64>>);

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> Budget {
        Budget(Rc::new(Cell::new(bytes)))
    }

    /// Takes `n` bytes, if that many are left.
    pub fn take(&self, n: usize) -> bool {
        let left = self.0.get();
        match left.checked_sub(n as u64) {
            Some(rest) => {
                self.0.set(rest);
                true
            }
            None => false,
        }
    }
}

/// An unnamed file (O_TMPFILE) in a folder, created when first written: nothing is left
/// behind, whatever happens.
pub(crate) struct Overflow {
    dir: PathBuf,
    file: Option<(File, BufWriter<File>)>,
    /// Bytes written so far.
    len: u64,
}

impl Overflow {
    /// An overflow file in `dir`, not created yet.
    pub fn new(dir: &Path) -> Overflow {
        Overflow {
            dir: dir.to_path_buf(),
            file: None,
            len: 0,
        }
    }

    /// Appends `bytes`; returns where they start in the file.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let writer = match &mut self.file {
            Some((_, w)) => w,
            None => {
                let file = tempfile::tempfile_in(&self.dir)?;
                let w = BufWriter::with_capacity(1 << 20, file.try_clone()?);
                &mut self.file.insert((file, w)).1
            }
        };
        writer.write_all(bytes)?;
        let at = self.len;
        self.len += bytes.len() as u64;
        Ok(at)
    }

    /// Makes everything appended readable.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some((_, w)) => w.flush(),
            None => Ok(()),
        }
    }

    /// Reads up to `buf.len()` bytes at `at` (flushed first); 0 past the end.
    pub fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        match &self.file {
            Some((f, _)) => f.read_at(buf, at),
            None => Ok(0),
        }
    }

    /// Reads `buf.len()` bytes at `at` (flushed first).
    pub fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        match &self.file {
            Some((f, _)) => f.read_exact_at(buf, at),
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// An input's decompressed tar: its first bytes in memory, the rest (past the budget) in an
/// overflow file; less the holes, bytes that are not kept here (the data of members read
/// ahead, whose gzip blocks stand for them).
pub(crate) struct Spool {
    /// Full chunks of [`CHUNK`] bytes, then the one being filled.
    chunks: Vec<Vec<u8>>,
    /// Bytes kept in `chunks`; the overflow file holds the bytes kept after them.
    in_memory: u64,
    /// Set once the budget ran out: everything after goes to the file.
    overflow: Option<Overflow>,
    dir: PathBuf,
    budget: Budget,
    /// Bytes of the input so far, kept or not.
    len: u64,
    /// The holes, in order.
    holes: Vec<Hole>,
}

/// Bytes of the input a spool does not keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hole {
    /// Offset in the input.
    pub start: u64,
    /// Length.
    pub len: u64,
    /// Bytes in the holes before this one.
    before: u64,
}

/// Where an offset of an input is in its spool.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum At {
    /// Kept, at this offset of the kept bytes, which go on for at most this many bytes before
    /// a hole.
    Kept(u64, u64),
    /// In this hole.
    Hole(Hole),
}

impl Spool {
    /// An empty spool taking memory from `budget`, overflowing into a file in `dir`.
    pub fn new(dir: &Path, budget: &Budget) -> Spool {
        Spool {
            chunks: Vec::new(),
            in_memory: 0,
            overflow: None,
            dir: dir.to_path_buf(),
            budget: budget.clone(),
            len: 0,
            holes: Vec::new(),
        }
    }

    /// Passes over `n` bytes of the input without keeping them.
    pub fn skip(&mut self, n: u64) {
        match self.holes.last_mut() {
            Some(h) if h.start + h.len == self.len => h.len += n,
            last => {
                let before = last.map_or(0, |h| h.before + h.len);
                let start = self.len;
                self.holes.push(Hole {
                    start,
                    len: n,
                    before,
                });
            }
        }
        self.len += n;
    }

    /// Where `offset` of the input is kept, or the hole it is in.
    pub fn at(&self, offset: u64) -> At {
        let idx = self.holes.partition_point(|h| h.start + h.len <= offset);
        let skipped = match idx.checked_sub(1).and_then(|i| self.holes.get(i)) {
            Some(h) => h.before + h.len,
            None => 0,
        };
        match self.holes.get(idx) {
            Some(h) if h.start <= offset => At::Hole(*h),
            Some(h) => At::Kept(offset - skipped, h.start - offset),
            None => At::Kept(offset - skipped, u64::MAX),
        }
    }

    /// Makes everything written readable.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.overflow {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }

    /// Reads up to `buf.len()` bytes at `offset` of the kept bytes (see [`Spool::at`]); 0 past
    /// their end.
    pub fn read_kept(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.in_memory {
            return match &self.overflow {
                Some(o) => o.read_at(buf, offset - self.in_memory),
                None => Ok(0),
            };
        }
        let (idx, at) = (
            (offset / CHUNK as u64) as usize,
            (offset % CHUNK as u64) as usize,
        );
        let chunk = self
            .chunks
            .get(idx)
            .and_then(|c| c.get(at..))
            .unwrap_or(&[]);
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The chunk with room for more bytes, if memory is left for it.
    fn room(&mut self) -> Option<&mut Vec<u8>> {
        let has_room = self.chunks.last().is_some_and(|c| c.len() < CHUNK);
        if !has_room {
            if self.overflow.is_some() || !self.budget.take(CHUNK) {
                return None;
            }
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut()
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(chunk) = self.room() {
            let n = (CHUNK - chunk.len()).min(buf.len());
            chunk.extend_from_slice(&buf[..n]);
            self.in_memory += n as u64;
            self.len += n as u64;
            return Ok(n);
        }
        let dir = &self.dir;
        let overflow = self.overflow.get_or_insert_with(|| Overflow::new(dir));
        overflow.append(buf)?;
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Spool::flush(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(spool: &Spool, len: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = spool.read_kept(&mut out[done..], done as u64)?;
            assert!(n > 0, "ended at {done} of {len}");
            done += n;
        }
        Ok(out)
    }

    #[test]
    fn a_spool_past_its_budget_continues_in_a_file_and_reads_back_whole() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let bytes: Vec<u8> = (0..3 * CHUNK + 12_345).map(|i| (i % 251) as u8).collect();
        for budget in [0, CHUNK as u64, 2 * CHUNK as u64 + 1, 1 << 30] {
            let mut spool = Spool::new(dir.path(), &Budget::new(budget));
            for piece in bytes.chunks(1_000_003) {
                spool.write_all(piece)?;
            }
            spool.flush()?;
            let kept = (budget / CHUNK as u64).min(4) * CHUNK as u64;
            assert_eq!(spool.in_memory, kept.min(bytes.len() as u64), "{budget}");
            assert!(read_all(&spool, bytes.len())? == bytes, "{budget}");
            let mut past = [0u8; 8];
            assert_eq!(spool.read_kept(&mut past, bytes.len() as u64)?, 0);
        }
        Ok(())
    }

    #[test]
    fn holes_are_not_kept_and_offsets_skip_them() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut spool = Spool::new(dir.path(), &Budget::new(1 << 30));
        spool.write_all(b"abc")?;
        spool.skip(10);
        spool.skip(5);
        spool.write_all(b"de")?;
        spool.skip(4);
        spool.write_all(b"f")?;
        assert!(read_all(&spool, 6)? == b"abcdef");
        let hole = |start, len, before| At::Hole(Hole { start, len, before });
        assert_eq!(spool.at(0), At::Kept(0, 3));
        assert_eq!(spool.at(2), At::Kept(2, 1));
        assert_eq!(spool.at(3), hole(3, 15, 0));
        assert_eq!(spool.at(17), hole(3, 15, 0));
        assert_eq!(spool.at(18), At::Kept(3, 2));
        assert_eq!(spool.at(20), hole(20, 4, 15));
        assert_eq!(spool.at(24), At::Kept(5, u64::MAX));
        Ok(())
    }

    #[test]
    fn budgets_are_shared_and_never_overdrawn() {
        let budget = Budget::new(10);
        let other = budget.clone();
        assert!(budget.take(6));
        assert!(!other.take(5));
        assert!(other.take(4));
        assert!(!budget.take(1));
    }
}
