//! The base image of `from_image`: a docker-archive (plain, gzip or zstd) whose layers are copied
//! into the new image with their headers re-encoded as Python's `tarfile` re-encodes them.
//!
//! Loading reads the archive once to its end for the member names (the last member of a name
//! wins, as `tarfile.getmember` finds it) and `manifest.json`, verifying the compressed stream's
//! checksums. The config comes shortly before `manifest.json` in the docker-archive writers we
//! know, so the last members that look like JSON objects are held on the way, [`HOLD_LIMIT`]
//! bytes in all; when the config is not among them, the archive is read a second time up to it. Only `manifest.json` and the config
//! it names are kept, each at most [`JSON_LIMIT`] bytes, and the member list is capped
//! ([`MEMBER_LIMIT`] members, [`NAME_BYTES_LIMIT`] bytes of names).
//! Every layer member is checked against the config's `diff_ids` while it is copied (one SHA-256
//! pass over bytes that are read anyway).
//! Memory: the member names, `manifest.json` and the config, never a layer.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use dockertools_common::compress::open_decompressed;
use dockertools_common::hash::hex;
use dockertools_common::tar::reader::{Entry, ReadError, Reader};
use dockertools_common::tar::writer::{read_some, Data, DataError, TarWriter, COPY_BUF};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Largest `manifest.json` or config read into memory.
pub const JSON_LIMIT: u64 = 16 << 20;
/// Most members a base archive may have.
pub const MEMBER_LIMIT: usize = 1 << 20;
/// Most bytes all member names together may take.
pub const NAME_BYTES_LIMIT: usize = 64 << 20;
/// Most bytes of small members held during the first read (see [`BaseImage::load`]).
pub const HOLD_LIMIT: u64 = 16 << 20;

/// Problems with the base image.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// The file could not be opened, read or decompressed.
    #[error("from_image {}: {source}", .path.display())]
    Io {
        /// The archive.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The archive is not a readable tar.
    #[error("from_image {}: {source}", .path.display())]
    Tar {
        /// The archive.
        path: PathBuf,
        /// The error.
        #[source]
        source: ReadError,
    },
    /// The archive is not a usable docker-archive.
    #[error("from_image {}: {problem}", .path.display())]
    Invalid {
        /// The archive.
        path: PathBuf,
        /// What is missing or wrong.
        #[source]
        problem: Problem,
    },
    /// Copying a layer member failed.
    #[error("from_image {} member {member}: {source}", .path.display())]
    Copy {
        /// The archive.
        path: PathBuf,
        /// The member.
        member: String,
        /// The error.
        #[source]
        source: DataError,
    },
}

/// What is wrong with a base archive.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// No `manifest.json` member.
    #[error("not a docker-archive: no manifest.json")]
    NoManifest,
    /// `manifest.json` is not JSON.
    #[error("manifest.json: {0}")]
    ManifestJson(#[source] serde_json::Error),
    /// `manifest.json` is not a list of objects with `Config` and `Layers`.
    #[error("manifest.json: {0}")]
    ManifestShape(&'static str),
    /// The config `manifest.json` names is not in the archive.
    #[error("config {0} not found")]
    ConfigMissing(String),
    /// The config is not JSON.
    #[error("config {name}: {source}")]
    ConfigJson {
        /// The config member.
        name: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The config has no `rootfs.diff_ids` list of strings.
    #[error("config {0} has no rootfs.diff_ids list of strings")]
    NoDiffIds(String),
    /// A layer `manifest.json` names is not in the archive.
    #[error("layer {0} not found")]
    LayerMissing(String),
    /// A diff_id that is not a sha256 digest, so the layer cannot be checked.
    #[error("diff_id {diff_id:?} of layer {member} is not a sha256 digest")]
    BadDiffId {
        /// The layer member.
        member: String,
        /// The diff_id.
        diff_id: String,
    },
    /// A JSON member larger than [`JSON_LIMIT`].
    #[error("{member} is {size} bytes, more than the {JSON_LIMIT} bytes a JSON member may have")]
    TooLarge {
        /// The member.
        member: String,
        /// Its size.
        size: i64,
    },
    /// More members, or longer names, than the caps allow.
    #[error("more than {MEMBER_LIMIT} members or {NAME_BYTES_LIMIT} bytes of member names")]
    TooManyMembers,
    /// A layer's bytes do not hash to the diff_id the config names.
    #[error("layer {member} has sha256 {found}, but the config's diff_id is {expected}")]
    DiffIdMismatch {
        /// The layer member.
        member: String,
        /// The sha256 of its bytes.
        found: String,
        /// The diff_id.
        expected: String,
    },
    /// A member found on the first read is gone on a later one.
    #[error("member {0} is gone on a second read (the archive changed)")]
    Changed(String),
}

/// One base layer to copy.
#[derive(Debug)]
pub struct BaseLayer {
    /// Member name (Python's `TarInfo.path`).
    pub member: Vec<u8>,
    /// Its diff_id as the config writes it, without `sha256:`.
    pub checksum: String,
    /// Index of the member in the archive.
    index: u64,
}

impl BaseLayer {
    fn member_name(&self) -> String {
        String::from_utf8_lossy(&self.member).into_owned()
    }
}

/// A loaded base image.
#[derive(Debug)]
pub struct BaseImage {
    path: PathBuf,
    /// The image config JSON.
    pub config: Value,
    /// Layers in manifest order (zipped with the config's diff_ids, as the original does).
    pub layers: Vec<BaseLayer>,
}

type BaseReader = Reader<Box<dyn Read + Send>>;

/// What the first read of the archive finds.
struct Index {
    /// Member name to the index of its last occurrence.
    members: BTreeMap<Vec<u8>, u64>,
    /// The last `manifest.json`.
    manifest: Option<Vec<u8>>,
    /// The last JSON-looking members read on the way (name, index, bytes), at most
    /// [`HOLD_LIMIT`] bytes in all, so that the config, which comes shortly before
    /// `manifest.json`, needs no second read.
    held: VecDeque<(Vec<u8>, u64, Vec<u8>)>,
    /// Bytes in `held`.
    held_bytes: u64,
}

impl Index {
    /// Keeps the member just read, dropping the oldest held ones beyond the budget.
    fn hold(&mut self, e: &Entry, bytes: Vec<u8>) {
        self.held_bytes += bytes.len() as u64;
        self.held.push_back((e.name.clone(), e.index, bytes));
        while self.held_bytes > HOLD_LIMIT {
            let Some((_, _, old)) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= old.len() as u64;
        }
    }

    /// The bytes of member `name` if they are held from its last occurrence.
    fn take_held(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        let last = *self.members.get(name)?;
        let at = self.held.iter().position(|(_, index, _)| *index == last)?;
        self.held.remove(at).map(|(_, _, bytes)| bytes)
    }
}

fn open(path: &Path) -> Result<BaseReader, BaseError> {
    let (_, r) = open_decompressed(path).map_err(|source| BaseError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Reader::new(Box::new(r)))
}

impl BaseImage {
    /// Reads `manifest.json`, the config and the layer list of the archive at `path`.
    pub fn load(path: &Path) -> Result<BaseImage, BaseError> {
        let mut base = BaseImage {
            path: path.to_path_buf(),
            config: Value::Null,
            layers: Vec::new(),
        };
        let mut index = base.index()?;
        let manifest_bytes = index
            .manifest
            .as_deref()
            .ok_or_else(|| base.invalid(Problem::NoManifest))?;
        let (config_name, layer_names) =
            parse_manifest(manifest_bytes).map_err(|p| base.invalid(p))?;
        let config_index = *index
            .members
            .get(config_name.as_bytes())
            .ok_or_else(|| base.invalid(Problem::ConfigMissing(config_name.clone())))?;
        let config_bytes = match index.take_held(config_name.as_bytes()) {
            Some(bytes) => bytes,
            None => base.read_member(config_index, &config_name)?,
        };
        base.config = serde_json::from_slice(&config_bytes).map_err(|source| {
            base.invalid(Problem::ConfigJson {
                name: config_name.clone(),
                source,
            })
        })?;
        let diff_ids = diff_ids(&base.config, &config_name).map_err(|p| base.invalid(p))?;
        for (name, diff_id) in layer_names.iter().zip(diff_ids) {
            let index = *index
                .members
                .get(name.as_bytes())
                .ok_or_else(|| base.invalid(Problem::LayerMissing(name.clone())))?;
            let checksum = diff_id.strip_prefix("sha256:").unwrap_or(&diff_id);
            if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(base.invalid(Problem::BadDiffId {
                    member: name.clone(),
                    diff_id: diff_id.clone(),
                }));
            }
            base.layers.push(BaseLayer {
                member: name.as_bytes().to_vec(),
                checksum: checksum.to_string(),
                index,
            });
        }
        Ok(base)
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn invalid(&self, problem: Problem) -> BaseError {
        BaseError::Invalid {
            path: self.path.clone(),
            problem,
        }
    }

    fn tar_err(&self, source: ReadError) -> BaseError {
        BaseError::Tar {
            path: self.path.clone(),
            source,
        }
    }

    /// The first read: every member name and `manifest.json`, then the compressed stream's end.
    fn index(&self) -> Result<Index, BaseError> {
        let io_err = |source| BaseError::Io {
            path: self.path.clone(),
            source,
        };
        let (_, mut stream) = open_decompressed(&self.path).map_err(io_err)?;
        let mut index = Index {
            members: BTreeMap::new(),
            manifest: None,
            held: VecDeque::new(),
            held_bytes: 0,
        };
        let mut name_bytes = 0usize;
        let mut reader = Reader::new(&mut stream);
        while let Some(e) = reader.next_entry().map_err(|e| self.tar_err(e))? {
            if e.name == b"manifest.json" {
                index.manifest = Some(self.read_json(&mut reader, &e)?);
            } else if e.size > 0 && e.size as u64 <= HOLD_LIMIT {
                self.maybe_hold(&mut reader, &e, &mut index)?;
            }
            name_bytes += e.name.len();
            if index.members.len() >= MEMBER_LIMIT || name_bytes > NAME_BYTES_LIMIT {
                return Err(self.invalid(Problem::TooManyMembers));
            }
            index.members.insert(e.name, e.index);
        }
        drop(reader);
        // The archive's end is not the stream's: read it to its end and check it.
        stream.finish().map_err(io_err)?;
        Ok(index)
    }

    /// Holds the member being read if it looks like a JSON object (a config does; a layer tar
    /// does not), so that layers are not copied into memory. Its bytes are read anyway, to
    /// reach the next member.
    fn maybe_hold<R: Read>(
        &self,
        r: &mut Reader<R>,
        e: &Entry,
        index: &mut Index,
    ) -> Result<(), BaseError> {
        let mut first = [0u8; 1];
        if r.read_data(&mut first).map_err(|e| self.tar_err(e))? != 1 || first[0] != b'{' {
            return Ok(());
        }
        let rest = r.read_to_vec(HOLD_LIMIT).map_err(|e| self.tar_err(e))?;
        let mut bytes = Vec::with_capacity(rest.len() + 1);
        bytes.push(b'{');
        bytes.extend_from_slice(&rest);
        index.hold(e, bytes);
        Ok(())
    }

    fn read_json<R: Read>(&self, r: &mut Reader<R>, e: &Entry) -> Result<Vec<u8>, BaseError> {
        if e.size < 0 || e.size as u64 > JSON_LIMIT {
            return Err(self.invalid(Problem::TooLarge {
                member: String::from_utf8_lossy(&e.name).into_owned(),
                size: e.size,
            }));
        }
        r.read_to_vec(JSON_LIMIT).map_err(|e| self.tar_err(e))
    }

    /// Reads the member at `index` (a JSON member) with a second read of the archive.
    fn read_member(&self, index: u64, name: &str) -> Result<Vec<u8>, BaseError> {
        let mut r = open(&self.path)?;
        let e = self.scan_to(&mut r, index, name)?;
        self.read_json(&mut r, &e)
    }

    /// Reads on to the member at `index` (the reader must be before it).
    fn scan_to<R: Read>(
        &self,
        r: &mut Reader<R>,
        index: u64,
        name: &str,
    ) -> Result<Entry, BaseError> {
        loop {
            let e = r
                .next_entry()
                .map_err(|e| self.tar_err(e))?
                .ok_or_else(|| self.invalid(Problem::Changed(name.into())))?;
            if e.index == index {
                return Ok(e);
            }
        }
    }

    /// Copies every layer into `tar`, calling `progress(n, member)` before each, and checks each
    /// against its diff_id.
    pub fn copy_layers<W: Write>(
        &self,
        tar: &mut TarWriter<W>,
        mut progress: impl FnMut(usize, &[u8]),
    ) -> Result<(), CopyError> {
        let mut reader: Option<BaseReader> = None;
        let mut next_index = 0u64;
        for (num, layer) in self.layers.iter().enumerate() {
            // Scan forward to the member; reopen when it lies behind us.
            if reader.is_none() || layer.index < next_index {
                reader = Some(open(&self.path)?);
            }
            let Some(r) = reader.as_mut() else { continue };
            let entry = self.scan_to(r, layer.index, &layer.member_name())?;
            next_index = entry.index + 1;
            progress(num + 1, &layer.member);
            let mut data = Verified::new(r.data());
            tar.append(&entry.to_header(), Data::Reader(&mut data))
                .map_err(|source| self.copy_err(layer, source))?;
            self.verify(layer, data.sha256())?;
        }
        Ok(())
    }

    fn copy_err(&self, layer: &BaseLayer, source: DataError) -> CopyError {
        match source {
            DataError::Write(e) => CopyError::Write(e),
            source => CopyError::Base(BaseError::Copy {
                path: self.path.clone(),
                member: layer.member_name(),
                source,
            }),
        }
    }

    /// Checks that layer `layer`'s bytes, whose sha256 is `found`, match its diff_id.
    pub fn verify(&self, layer: &BaseLayer, found: String) -> Result<(), BaseError> {
        if found.eq_ignore_ascii_case(&layer.checksum) {
            return Ok(());
        }
        Err(self.invalid(Problem::DiffIdMismatch {
            member: layer.member_name(),
            found,
            expected: layer.checksum.clone(),
        }))
    }

    /// Streams the bytes of base layer `i` (its member's data, the layer tar as stored) to `out`.
    pub fn layer_to(&self, i: usize, out: &mut dyn Write) -> Result<(), CopyError> {
        let Some(layer) = self.layers.get(i) else {
            return Ok(());
        };
        let mut r = open(&self.path)?;
        self.scan_to(&mut r, layer.index, &layer.member_name())?;
        let mut data = r.data();
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            let n = read_some(&mut data, &mut buf)
                .map_err(|e| self.copy_err(layer, DataError::Read(e)))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        }
        Ok(())
    }
}

/// `manifest.json`'s first image: its config name and layer names.
fn parse_manifest(bytes: &[u8]) -> Result<(String, Vec<String>), Problem> {
    let manifest: Value = serde_json::from_slice(bytes).map_err(Problem::ManifestJson)?;
    let first = manifest
        .get(0)
        .ok_or(Problem::ManifestShape("not a non-empty list"))?;
    let config = first
        .get("Config")
        .and_then(Value::as_str)
        .ok_or(Problem::ManifestShape("no Config"))?;
    let layers = first
        .get("Layers")
        .and_then(Value::as_array)
        .ok_or(Problem::ManifestShape("no Layers list"))?
        .iter()
        .map(|l| l.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or(Problem::ManifestShape("layer names must be strings"))?;
    Ok((config.to_string(), layers))
}

fn diff_ids(config: &Value, name: &str) -> Result<Vec<String>, Problem> {
    config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .and_then(|ids| {
            ids.iter()
                .map(|d| d.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| Problem::NoDiffIds(name.into()))
}

/// Errors while copying base layers.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the base failed.
    #[error(transparent)]
    Base(#[from] BaseError),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Write(#[source] io::Error),
}

/// A reader that hashes what passes through it.
struct Verified<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Verified<R> {
    fn new(inner: R) -> Self {
        Verified {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn sha256(self) -> String {
        hex(&self.hasher.finalize())
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, index: u64) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            index,
            ..Entry::default()
        }
    }

    fn index_of(members: &[(&str, u64)]) -> Index {
        Index {
            members: members
                .iter()
                .map(|(n, i)| (n.as_bytes().to_vec(), *i))
                .collect(),
            manifest: None,
            held: VecDeque::new(),
            held_bytes: 0,
        }
    }

    #[test]
    fn only_the_last_occurrence_of_a_held_member_counts() {
        let mut index = index_of(&[("c.json", 2)]);
        index.hold(&entry("c.json", 0), b"{old}".to_vec());
        assert_eq!(
            index.take_held(b"c.json"),
            None,
            "a later c.json was not held"
        );
        index.hold(&entry("c.json", 2), b"{new}".to_vec());
        assert_eq!(index.take_held(b"c.json"), Some(b"{new}".to_vec()));
        assert_eq!(index.take_held(b"other.json"), None);
    }

    #[test]
    fn held_members_stay_within_the_budget_oldest_dropped_first() {
        let mut index = index_of(&[("a", 0), ("b", 1), ("c", 2)]);
        let half = vec![b'{'; (HOLD_LIMIT / 2) as usize];
        index.hold(&entry("a", 0), half.clone());
        index.hold(&entry("b", 1), half.clone());
        index.hold(&entry("c", 2), half);
        assert!(index.held_bytes <= HOLD_LIMIT);
        assert_eq!(index.take_held(b"a"), None);
        assert!(index.take_held(b"b").is_some() && index.take_held(b"c").is_some());
    }

    #[test]
    fn the_manifest_names_a_config_and_layers() -> Result<(), Problem> {
        let (config, layers) =
            parse_manifest(br#"[{"Config": "c.json", "Layers": ["a/layer.tar", "b/layer.tar"]}]"#)?;
        assert_eq!(config, "c.json");
        assert_eq!(layers, ["a/layer.tar", "b/layer.tar"]);
        for bad in [
            &b"{}"[..],
            b"[]",
            br#"[{"Layers": []}]"#,
            br#"[{"Config": "c"}]"#,
            br#"[{"Config": "c", "Layers": [1]}]"#,
        ] {
            assert!(
                matches!(parse_manifest(bad), Err(Problem::ManifestShape(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_manifest(b"["),
            Err(Problem::ManifestJson(_))
        ));
        Ok(())
    }

    #[test]
    fn diff_ids_must_be_a_list_of_strings() {
        let ok = serde_json::json!({"rootfs": {"diff_ids": ["sha256:ab"]}});
        assert_eq!(diff_ids(&ok, "c").ok(), Some(vec!["sha256:ab".to_string()]));
        let bad = serde_json::json!({"rootfs": {"diff_ids": [1]}});
        assert!(matches!(diff_ids(&bad, "c"), Err(Problem::NoDiffIds(_))));
    }
}
