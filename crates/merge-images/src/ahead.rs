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
//! The output's bytes do not depend on it: the write pass cuts a gzip block before and after
//! the data of every such member, whether or not it was compressed here
//! ([`crate::write`]), and a member's blocks are its data in [`GZ_BLOCK`] pieces from its
//! start, compressed as the output's compressor would compress them after a cut.
//! The blocks are kept in memory while the budget shared with the spools lasts, then in an
//! unnamed file beside OUT ([`crate::store`]).
//! Memory: a few blocks in flight, the blocks kept within the budget, and 40 bytes per block.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read};
use std::path::Path;

use dockertools_common::compress::{GzBlock, GzBlocks, GZ_BLOCK};
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
    deflate: Kept,
    crc: u32,
    input_len: u32,
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
    budget: Budget,
    overflow: Overflow,
    members: BTreeMap<(usize, u64), Member>,
    /// Blocks being compressed, one pool for every member: a member's last blocks are still
    /// being compressed while the next member is read, so no thread waits at its end.
    blocks: GzBlocks,
    /// The member of each block submitted and not yet kept, in order.
    owners: VecDeque<(usize, u64)>,
}

impl Ahead {
    /// A cache for gzip output at `level` (as the output's compressor takes it), in memory from
    /// `budget`, then in an unnamed file in `dir`.
    pub fn new(dir: &Path, level: i32, budget: &Budget) -> io::Result<Ahead> {
        let level = dockertools_common::compress::gzip_level(level);
        Ok(Ahead {
            level,
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

    /// Reads the current entry's data (`size` bytes) from `reader`, hashing it and compressing
    /// it block by block; `key` is the input and the offset of the data.
    pub fn read<R: Read>(
        &mut self,
        key: (usize, u64),
        size: u64,
        reader: &mut Reader<R>,
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
        loop {
            let mut piece = vec![0u8; GZ_BLOCK];
            let n = reader.fill_data(&mut piece).map_err(AheadError::Tar)?;
            if n == 0 {
                break;
            }
            piece.truncate(n);
            sha.update(&piece);
            if head.is_empty() {
                head = piece.iter().take(4).copied().collect();
            }
            self.blocks.submit(piece, false);
            self.owners.push_back(key);
            while self.blocks.full() {
                self.store(true).map_err(AheadError::Cache)?;
            }
            while self.store(false).map_err(AheadError::Cache)? {}
        }
        if let Some(member) = self.members.get_mut(&key) {
            member.sha256 = sha.finalize().into();
            member.head = head;
        }
        Ok(())
    }

    /// Keeps the next compressed block as its member's, if there is one ready (or once it is,
    /// when `wait`).
    fn store(&mut self, wait: bool) -> io::Result<bool> {
        let Some(block) = self.blocks.next(wait) else {
            return Ok(false);
        };
        let mut block = block?;
        let too_big = || io::Error::other("a gzip block over 4 GiB");
        let len = u32::try_from(block.deflate.len()).map_err(|_| too_big())?;
        let input_len = u32::try_from(block.len).map_err(|_| too_big())?;
        let deflate = if self.budget.take(block.deflate.len()) {
            // The compressor's buffer is sized for the worst case; the budget counts what is kept.
            block.deflate.shrink_to_fit();
            Kept::Memory(block.deflate)
        } else {
            let at = self.overflow.append(&block.deflate)?;
            Kept::File { at, len }
        };
        let member = self.owners.pop_front();
        let Some(member) = member.and_then(|key| self.members.get_mut(&key)) else {
            return Err(io::Error::other("a gzip block of no member"));
        };
        member.blocks.push(BlockAt {
            deflate,
            crc: block.crc,
            input_len,
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
        let idx = (at / GZ_BLOCK as u64) as usize;
        let Some(block) = member.blocks.get(idx) else {
            return Ok(0);
        };
        let bytes = inflate(&self.deflate(block)?, block)?;
        let part = bytes.get((at % GZ_BLOCK as u64) as usize..).unwrap_or(&[]);
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
            Ok(GzBlock {
                deflate: self.deflate(b)?.into_owned(),
                crc: b.crc,
                len: u64::from(b.input_len),
            })
        })
    }
}

/// The bytes a block compressed ahead holds, checked against its CRC32.
fn inflate(deflate: &[u8], block: &BlockAt) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; block.input_len as usize];
    let mut z = flate2::Decompress::new(false);
    loop {
        let (used, made) = (z.total_in() as usize, z.total_out() as usize);
        let (Some(input), Some(room)) = (deflate.get(used..), out.get_mut(made..)) else {
            break;
        };
        if room.is_empty() {
            break;
        }
        z.decompress(input, room, flate2::FlushDecompress::Sync)
            .map_err(|e| io::Error::other(format!("a gzip block compressed ahead: {e}")))?;
        if z.total_in() as usize == used && z.total_out() as usize == made {
            break;
        }
    }
    if z.total_out() != u64::from(block.input_len) || crc32fast::hash(&out) != block.crc {
        return Err(io::Error::other(
            "a gzip block compressed ahead does not inflate to its bytes",
        ));
    }
    Ok(out)
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

    /// Merges `inputs` (written into `dir` under their names) into a gzip `out.tar.gz`, keeping
    /// up to `memory` bytes in memory.
    fn merged(dir: &Path, inputs: &[(&str, Vec<u8>)], memory: u64) -> Result<Vec<u8>, Error> {
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
            level: None,
            memory,
        };
        merge(&out, &paths, &opts)?;
        std::fs::read(&out).map_err(|source| Error::Io { input: out, source })
    }

    #[test]
    fn gzip_output_is_the_same_whether_members_were_compressed_ahead_or_not() -> TestResult {
        let dir = tempfile::tempdir()?;
        let body: Vec<u8> = (0..GZ_BLOCK + 12_345).map(|i| (i % 13) as u8).collect();
        let diff_id = sha256_hex(&body);
        let tar = image(&"a".repeat(64), &body, &diff_id)?;
        // A plain input is read in place (nothing ahead); a gzip one is spooled (its large
        // members compressed ahead); a mix of both; and one thread against all.
        let all = crate::DEFAULT_MEMORY;
        let plain = merged(dir.path(), &[("in.tar", tar.clone())], all)?;
        let spooled = merged(dir.path(), &[("in.tar.gz", gzip(&tar)?)], all)?;
        assert!(plain == spooled);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
        let gz = gzip(&tar)?;
        let one = pool.install(|| merged(dir.path(), &[("in.tar.gz", gz)], all))?;
        assert!(one == plain);
        // Spool and blocks in files (no memory), or partly (the spool's first chunk and a
        // block or two in memory, the rest in files): the same bytes.
        for memory in [0, (4 << 20) + GZ_BLOCK as u64] {
            let spilled = merged(dir.path(), &[("in.tar.gz", gzip(&tar)?)], memory)?;
            assert!(spilled == plain, "{memory}");
        }
        // The output reads back as the merged tar, and the blocks cut around each large member
        // did not change what it holds.
        let (_, mut r) = dockertools_common::compress::decompress(io::Cursor::new(plain))?;
        let mut back = Vec::new();
        r.read_to_end(&mut back)?;
        r.finish()?;
        let at = back.windows(body.len()).position(|w| w == body.as_slice());
        assert!(at.is_some_and(|at| at % 512 == 0));
        Ok(())
    }

    #[test]
    fn members_read_ahead_are_read_back_from_their_blocks() -> TestResult {
        let dir = tempfile::tempdir()?;
        let body: Vec<u8> = (0..GZ_BLOCK + 7).map(|i| (i % 11) as u8).collect();
        let diff_id = sha256_hex(&body);
        // A manifest and a config of more than a block: read ahead, then read back for the
        // JSON merge and the digests.
        let image = image_padded(&"d".repeat(64), &body, &diff_id, GZ_BLOCK + 3)?;
        let all = crate::DEFAULT_MEMORY;
        let plain = merged(dir.path(), &[("in.tar", image.clone())], all)?;
        for memory in [all, 0] {
            let gz = merged(dir.path(), &[("in.tar.gz", gzip(&image)?)], memory)?;
            assert!(gz == plain, "{memory}");
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
