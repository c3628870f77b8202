//! The digest each layer member must hash to, checked while it is copied ([`crate::write`]).
//!
//! A docker-archive says it in its image configs: `manifest.json` pairs each image's `Layers`
//! with its `Config`, whose `rootfs.diff_ids` are the sha256 of those layer tars, in order.
//! That is the only reliable source: streamLayeredImage names a layer member by its sha256
//! (`<sha256>/layer.tar`), but buildImage names it by the sha256 of the layer's legacy JSON.
//! An OCI-style member `blobs/sha256/<sha256>` is named by its own digest.
//! A layer member stored compressed (which `docker load` accepts) has a diff_id of its
//! decompressed bytes, so it is not checked here; nor are the layers of an image whose config
//! is missing or has no `rootfs.diff_ids`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::index::{Index, JSON_LIMIT};
use crate::tree::{components, Kind};
pub(crate) use crate::DigestSource as Source;
use crate::{Error, ImageProblem};

/// An expected sha256 and where it comes from.
pub(crate) type Expected = ([u8; 32], Source);

/// Layer member path (components joined by `/`) to the digest its bytes must have.
#[derive(Debug, Default)]
pub(crate) struct Digests(BTreeMap<Vec<u8>, Expected>);

impl Digests {
    /// Reads every input's manifest and the configs it names.
    pub fn of(index: &Index) -> Result<Digests, Error> {
        let mut d = Digests::default();
        for input in &index.inputs {
            let Some(bytes) = &input.json.manifest else {
                continue;
            };
            let not_image = |problem| Error::NotImage {
                input: input.path.clone(),
                problem,
            };
            let items: Vec<Value> = serde_json::from_slice(bytes).map_err(|source| {
                let member = "manifest.json".to_string();
                not_image(ImageProblem::Json { member, source })
            })?;
            for item in &items {
                d.add_image(index, item).map_err(|e| match e {
                    Invalid::Image(problem) => not_image(problem),
                    Invalid::Input(e) => *e,
                })?;
            }
        }
        Ok(d)
    }

    /// The digest `path`'s bytes must have, if any.
    pub fn expected(&self, path: &[u8]) -> Option<Expected> {
        if let Some(e) = self.0.get(path) {
            return Some(e.clone());
        }
        blob_digest(path).map(|d| (d, Source::Name))
    }

    /// Pairs one manifest item's `Layers` with its config's `diff_ids`.
    fn add_image(&mut self, index: &Index, item: &Value) -> Result<(), Invalid> {
        let Some(config) = item.get("Config").and_then(Value::as_str) else {
            return Err(ImageProblem::NoConfig.into());
        };
        let config_name = || config.to_string();
        let layers: Vec<&str> = match item.get("Layers").and_then(Value::as_array) {
            Some(l) => l.iter().filter_map(Value::as_str).collect(),
            None => {
                return Err(ImageProblem::NoLayers {
                    config: config_name(),
                }
                .into())
            }
        };
        let Some(diff_ids) = config_diff_ids(index, config)? else {
            return Ok(());
        };
        if diff_ids.len() != layers.len() {
            return Err(ImageProblem::DiffIdCount {
                config: config_name(),
                diff_ids: diff_ids.len(),
                layers: layers.len(),
            }
            .into());
        }
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            let key = normalised(layer).ok_or_else(|| bad_name("layer", layer))?;
            match self.0.get(&key) {
                Some((other, _)) if *other != diff_id => {
                    let layer = layer.to_string();
                    let config = config_name();
                    return Err(ImageProblem::TwoDiffIds { layer, config }.into());
                }
                _ => {
                    self.0.insert(key, (diff_id, Source::DiffId(config_name())));
                }
            }
        }
        Ok(())
    }
}

/// A member name as the tree spells it: clean components joined by `/`.
fn normalised(name: &str) -> Option<Vec<u8>> {
    components(name.as_bytes())
        .ok()
        .flatten()
        .map(|parts| parts.join(&b'/'))
}

/// Why an image's digests cannot be read: the image is wrong, or reading its input failed
/// (an error of its own, naming the input).
enum Invalid {
    Image(ImageProblem),
    Input(Box<Error>),
}

impl From<ImageProblem> for Invalid {
    fn from(p: ImageProblem) -> Self {
        Invalid::Image(p)
    }
}

fn bad_name(what: &'static str, name: &str) -> ImageProblem {
    let name = name.to_string();
    ImageProblem::BadName { what, name }
}

/// The `rootfs.diff_ids` of the config member `config`; `None` when it has none.
fn config_diff_ids(index: &Index, config: &str) -> Result<Option<Vec<[u8; 32]>>, Invalid> {
    let parts = components(config.as_bytes())
        .ok()
        .flatten()
        .ok_or_else(|| bad_name("config", config))?;
    let config_name = || config.to_string();
    // Without its config an image cannot be loaded, and there is nothing to check its layers
    // against; mergeImages copies such an archive as it is, and so does this.
    let Some(node) = index.tree.get(&parts) else {
        return Ok(None);
    };
    let Kind::File(data) = node.kind else {
        return Err(ImageProblem::ConfigNotRegular {
            config: config_name(),
        }
        .into());
    };
    if data.size > JSON_LIMIT {
        let (config, limit) = (config_name(), JSON_LIMIT);
        return Err(ImageProblem::ConfigTooLarge { config, limit }.into());
    }
    let mut bytes = vec![0u8; data.size as usize];
    index
        .read_exact_at(node.input, &mut bytes, data.offset, config.as_bytes())
        .map_err(|e| Invalid::Input(Box::new(e)))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|source| ImageProblem::Json {
        member: format!("config {config}"),
        source,
    })?;
    diff_ids(&value, config)
}

/// The `rootfs.diff_ids` of the config `value` named `config`, each `sha256:` and 64 hex digits;
/// `None` when it has none.
fn diff_ids(value: &Value, config: &str) -> Result<Option<Vec<[u8; 32]>>, Invalid> {
    let Some(ids) = value.pointer("/rootfs/diff_ids").and_then(Value::as_array) else {
        return Ok(None);
    };
    ids.iter()
        .map(|id| {
            id.as_str()
                .and_then(|s| s.strip_prefix("sha256:"))
                .and_then(parse_hex)
                .ok_or_else(|| {
                    let (config, diff_id) = (config.to_string(), id.to_string());
                    ImageProblem::BadDiffId { config, diff_id }.into()
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The digest that names an OCI-style blob member, `blobs/sha256/<sha256>`.
pub(crate) fn blob_digest(path: &[u8]) -> Option<[u8; 32]> {
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    match parts.as_slice() {
        [b"blobs", b"sha256", sha] => std::str::from_utf8(sha).ok().and_then(parse_hex),
        _ => None,
    }
}

/// 64 lowercase hex digits as 32 bytes.
fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 || !hex.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.chunks(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(s, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blobs_are_named_by_their_digest() {
        let sha = "a".repeat(64);
        assert!(blob_digest(format!("blobs/sha256/{sha}").as_bytes()).is_some());
        for not in [
            format!("{sha}/layer.tar"),
            format!("blobs/sha256/{}", sha.to_uppercase()),
            format!("blobs/sha256/{}", &sha[1..]),
            format!("x/blobs/sha256/{sha}"),
        ] {
            assert_eq!(blob_digest(not.as_bytes()), None, "{not}");
        }
    }

    #[test]
    fn names_are_normalised_as_the_tree_spells_them() {
        assert_eq!(
            normalised("./a//b/layer.tar"),
            Some(b"a/b/layer.tar".to_vec())
        );
        assert_eq!(normalised("../x"), None);
    }
}
