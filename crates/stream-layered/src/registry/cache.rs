//! The local blob cache: for a layer's diff_id, a compression and a level, the digest and size of
//! its compressed blob, so that a push can ask the registry for a blob without compressing the
//! layer (and, with `store_layer_infos`, without reading it).
//!
//! This is sound only because our compression is deterministic: the compressed bytes depend on
//! the input, the format and the level, never on the thread count. What could still change them
//! is another compressor (a new version of this tool or of libdeflate or zstd), so each key also
//! carries a fingerprint of the compressor: the digest of a fixed sample compressed with it.
//! An entry is written only after an upload computed its digest from the bytes sent, and it is
//! verified whenever it is used for an upload (the digest of the bytes sent must equal it; a
//! different one replaces it, with a warning).
//!
//! The file is `$XDG_CACHE_HOME/dockertools-rs/blobs-v1` (`main` passes the folder), one entry
//! a line: `DIFF_ID COMPRESSION LEVEL FINGERPRINT DIGEST SIZE`. Lines that do not parse are
//! skipped: it is a cache. It is rewritten whole, under a temporary name, merged with the lines
//! another push may have added meanwhile.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use dockertools_common::atomic::AtomicFile;
use dockertools_common::compress::{Compression, Compressor};
use dockertools_common::hash::HashingWriter;

use crate::oci::LayerCompression;

/// The cache file's name in its folder.
pub const FILE_NAME: &str = "blobs-v1";

/// What an entry is looked up by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// The layer's diff_id (hex).
    pub diff_id: String,
    /// `none`, `gz` or `zstd`.
    pub compression: &'static str,
    /// The level.
    pub level: i32,
    /// The compressor's fingerprint ([`fingerprint`]).
    pub fingerprint: String,
}

/// A compressed blob's digest (hex) and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// The digest (hex).
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The cache: what the file held when opened, and what this push learnt.
pub struct BlobCache {
    file: Option<PathBuf>,
    entries: BTreeMap<Key, Blob>,
    learnt: BTreeMap<Key, Blob>,
    fingerprint: String,
}

/// The bytes the fingerprint compresses: 1.25 MiB (more than one gzip block) of text-like bytes
/// from a fixed linear congruential sequence, then 64 KiB of its raw bytes, so that both the
/// compressed and the stored paths of the gzip writer show in the fingerprint.
fn sample() -> Vec<u8> {
    const ALPHABET: &[u8] = b"  etaoinshrdlu\n/.-_0123456789abcdefghijklmnopqrstuvwxyz";
    let mut x: u32 = 0x2545_f491;
    let mut next = move || {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        x
    };
    let mut out: Vec<u8> = (0..(5usize << 18))
        .map(|_| {
            let i = (next() >> 16) as usize % ALPHABET.len();
            ALPHABET.get(i).copied().unwrap_or(b' ')
        })
        .collect();
    out.extend((0..(64usize << 10)).map(|_| (next() >> 23) as u8));
    out
}

/// The compressor's fingerprint: the first 16 hex digits of the sha256 of `sample` compressed
/// with `comp`.
pub fn fingerprint(comp: LayerCompression) -> io::Result<String> {
    if comp.kind == Compression::None {
        return Ok("-".into());
    }
    let mut c = Compressor::new(HashingWriter::new(io::sink()), comp.kind, comp.level)?;
    c.write_all(&sample())?;
    let (_, hex, _) = c.finish()?.finish();
    Ok(hex.get(..16).unwrap_or_default().to_string())
}

fn parse_line(line: &str) -> Option<(Key, Blob)> {
    let f: Vec<&str> = line.split(' ').collect();
    let [diff_id, compression, level, fingerprint, digest, size] = f.as_slice() else {
        return None;
    };
    let compression = match *compression {
        "none" => "none",
        "gz" => "gz",
        "zstd" => "zstd",
        _ => return None,
    };
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(diff_id) || !hex(digest) {
        return None;
    }
    let key = Key {
        diff_id: diff_id.to_string(),
        compression,
        level: level.parse().ok()?,
        fingerprint: fingerprint.to_string(),
    };
    let blob = Blob {
        digest: digest.to_string(),
        size: size.parse().ok()?,
    };
    Some((key, blob))
}

fn read_entries(file: &Path) -> BTreeMap<Key, Blob> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines().filter_map(parse_line).collect()
}

impl BlobCache {
    /// Opens the cache in `dir` (none when `dir` is `None`) for blobs compressed with `comp`.
    pub fn open(dir: Option<&Path>, comp: LayerCompression) -> io::Result<BlobCache> {
        let file = dir.map(|d| d.join(FILE_NAME));
        let entries = file.as_deref().map(read_entries).unwrap_or_default();
        Ok(BlobCache {
            file,
            entries,
            learnt: BTreeMap::new(),
            fingerprint: fingerprint(comp)?,
        })
    }

    /// The key of `diff_id`'s blob with `comp`.
    pub fn key(&self, diff_id: &str, comp: LayerCompression) -> Key {
        Key {
            diff_id: diff_id.to_string(),
            compression: comp.kind.name(),
            level: match comp.kind {
                Compression::None => 0,
                _ => comp.level,
            },
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// The cached blob of `key`.
    pub fn get(&self, key: &Key) -> Option<&Blob> {
        self.learnt.get(key).or_else(|| self.entries.get(key))
    }

    /// Whether any entry was made with `comp` (its kind, level and this compressor): when none
    /// was, no layer's blob digest can be known before it is compressed.
    pub fn knows(&self, comp: LayerCompression) -> bool {
        let probe = self.key("", comp);
        self.entries.keys().any(|k| {
            (k.compression, k.level, &k.fingerprint)
                == (probe.compression, probe.level, &probe.fingerprint)
        })
    }

    /// Records what an upload computed.
    pub fn put(&mut self, key: Key, blob: Blob) {
        self.learnt.insert(key, blob);
    }

    /// Writes the file again with what this push learnt, merged into what the file holds now.
    /// Nothing to do without a folder or without news.
    pub fn save(&self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if self.learnt.is_empty() {
            return Ok(());
        }
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut all = read_entries(file);
        all.extend(self.learnt.iter().map(|(k, b)| (k.clone(), b.clone())));
        let mut out = AtomicFile::create(file)?;
        for (k, b) in &all {
            writeln!(
                out,
                "{} {} {} {} {} {}",
                k.diff_id, k.compression, k.level, k.fingerprint, b.digest, b.size
            )?;
        }
        out.commit()
    }

    /// The cache file, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GZ: LayerCompression = LayerCompression {
        kind: Compression::Gzip,
        level: 6,
    };

    #[test]
    fn entries_survive_a_save_and_merge_with_the_file() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("sl-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d1 = "a".repeat(64);
        let d2 = "b".repeat(64);
        let mut one = BlobCache::open(Some(&dir), GZ)?;
        let mut two = BlobCache::open(Some(&dir), GZ)?;
        let k1 = one.key(&d1, GZ);
        let blob = Blob {
            digest: "c".repeat(64),
            size: 42,
        };
        one.put(k1.clone(), blob.clone());
        one.save()?;
        let k2 = two.key(&d2, GZ);
        two.put(k2.clone(), blob.clone());
        two.save()?;
        let three = BlobCache::open(Some(&dir), GZ)?;
        assert_eq!(three.get(&k1), Some(&blob));
        assert_eq!(three.get(&k2), Some(&blob));
        let zstd = LayerCompression {
            kind: Compression::Zstd,
            level: 3,
        };
        assert_eq!(three.get(&three.key(&d1, zstd)), None);
        let text = std::fs::read_to_string(dir.join(FILE_NAME))?;
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with(&format!(
            "{d1} gz 6 {} {} 42\n",
            k1.fingerprint,
            "c".repeat(64)
        )));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let good = format!("{} gz 6 f {} 1", "a".repeat(64), "b".repeat(64));
        assert!(parse_line(&good).is_some());
        for bad in [
            "",
            "x gz 6 f y 1",
            &format!("{} lz4 6 f {} 1", "a".repeat(64), "b".repeat(64)),
            &format!("{} gz six f {} 1", "a".repeat(64), "b".repeat(64)),
            &format!("{} gz 6 f {}", "a".repeat(64), "b".repeat(64)),
        ] {
            assert!(parse_line(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_fingerprint_depends_on_the_compressor_and_level_only() -> io::Result<()> {
        let a = fingerprint(GZ)?;
        assert_eq!(a, fingerprint(GZ)?);
        assert_ne!(a, fingerprint(LayerCompression { level: 1, ..GZ })?);
        assert_eq!(a.len(), 16);
        Ok(())
    }
}
