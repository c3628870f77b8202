//! The blobs the tag already names: one `GET` of the tag's current manifest before the layers.
//!
//! The distribution API keeps every blob a manifest in a repository references in that
//! repository (a manifest is refused until its blobs are there, and a blob stays while a
//! manifest references it), so each blob the tag's manifest lists is known to be present
//! without a `HEAD` of its own: a push after one layer changed asks for one manifest instead of
//! a hundred blobs.
//! A missing tag, a refusal, an index or any other kind of manifest, or a body that does not
//! parse gives an empty list, and every blob is asked for as before.
//!
//! tidy: lookup only (the map answers "does the tag list this blob?", it is never iterated).

use std::collections::HashMap;

use ureq::http::StatusCode;

use super::client::{Client, Payload, Request};
use super::RegistryError;

/// The manifest kinds whose `config` and `layers` list blobs, as the `Accept` header names them.
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Bodies larger than this are not a manifest of ours (a few kB for a hundred layers).
const MAX_MANIFEST: u64 = 4 << 20;

/// Blob digests (hex, without `sha256:`) and sizes that the tag's current manifest lists.
pub type Tagged = HashMap<String, u64>;

/// The blobs the destination tag's manifest lists; empty when there is none or it is of
/// another kind. Only an unreachable registry is an error (every later step would fail too).
pub fn tagged_blobs(client: &Client) -> Result<Tagged, RegistryError> {
    let tag = client.dest().tag.clone();
    let sent = client.send(Request {
        method: "GET",
        url: client.repo_path(&format!("manifests/{tag}")),
        headers: vec![("Accept", MANIFEST_TYPES.join(", "))],
        body: Payload::Empty,
    });
    let mut resp = match sent {
        Ok(resp) => resp,
        Err(e @ RegistryError::Unreachable { .. }) => return Err(e),
        Err(_) => return Ok(Tagged::new()),
    };
    if resp.status() != StatusCode::OK {
        return Ok(Tagged::new());
    }
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_string());
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_MANIFEST)
        .read_to_vec()
        .unwrap_or_default();
    Ok(parse(kind.as_deref(), &body))
}

/// The blobs of an image manifest of one of [`MANIFEST_TYPES`] (by its `mediaType`, or the
/// answer's `Content-Type` when the body has none); anything else lists nothing.
fn parse(content_type: Option<&str>, body: &[u8]) -> Tagged {
    let mut out = Tagged::new();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return out;
    };
    let kind = v.get("mediaType").and_then(|m| m.as_str()).or(content_type);
    if !kind.is_some_and(|k| MANIFEST_TYPES.contains(&k)) {
        return out;
    }
    let layers = v.get("layers").and_then(|l| l.as_array());
    let blobs = v
        .get("config")
        .into_iter()
        .chain(layers.into_iter().flatten());
    for blob in blobs {
        let digest = blob.get("digest").and_then(|d| d.as_str());
        let hex = digest.and_then(|d| d.strip_prefix("sha256:"));
        let size = blob.get("size").and_then(|s| s.as_u64());
        if let (Some(hex), Some(size)) = (hex.filter(|h| is_sha256_hex(h)), size) {
            out.insert(hex.to_string(), size);
        }
    }
    out
}

/// 64 lowercase hex digits, as our digests are written.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    #[test]
    fn an_image_manifest_lists_its_config_and_layers() {
        let (a, b, c) = (digest('a'), digest('b'), digest('c'));
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"digest":"sha256:{a}","size":10}},
            "layers":[{{"digest":"sha256:{b}","size":20}},{{"digest":"sha256:{c}","size":30}}]}}"#
        );
        let got = parse(None, body.as_bytes());
        let want: Tagged = [(a, 10), (b, 20), (c, 30)].into_iter().collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_content_type_stands_in_for_a_missing_media_type() {
        let a = digest('a');
        let body = format!(r#"{{"config":{{"digest":"sha256:{a}","size":1}},"layers":[]}}"#);
        let docker = "application/vnd.docker.distribution.manifest.v2+json";
        assert_eq!(parse(Some(docker), body.as_bytes()).get(&a), Some(&1));
        assert!(parse(None, body.as_bytes()).is_empty());
    }

    #[test]
    fn an_index_or_a_bad_body_lists_nothing() {
        let a = digest('a');
        let index = format!(
            r#"{{"mediaType":"application/vnd.oci.image.index.v1+json",
            "manifests":[{{"digest":"sha256:{a}","size":1}}],"config":{{"digest":"sha256:{a}","size":1}}}}"#
        );
        assert!(parse(None, index.as_bytes()).is_empty());
        assert!(parse(Some(MANIFEST_TYPES[0]), b"not json").is_empty());
        let odd = format!(
            r#"{{"mediaType":"{}","config":{{"digest":"sha512:{a}","size":1}},
            "layers":[{{"digest":"sha256:ABC","size":1}},{{"digest":"sha256:{a}"}}]}}"#,
            MANIFEST_TYPES[0]
        );
        assert!(parse(None, odd.as_bytes()).is_empty());
    }
}
