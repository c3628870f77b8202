//! The merged JSON members: `manifest.json` is the inputs' lists joined and `repositories` their
//! objects merged, later keys winning, as mergeImages' `jq -s add` gives them, printed as `jq`
//! prints.

use std::path::Path;

use dockertools_common::jq;
use serde_json::{Map, Value};

use crate::{Error, ImageProblem};

/// One input's `manifest.json` and `repositories` bytes, as found.
#[derive(Clone, Debug, Default)]
pub(crate) struct ImageJson {
    /// `manifest.json`.
    pub manifest: Option<Vec<u8>>,
    /// `repositories`.
    pub repositories: Option<Vec<u8>>,
}

/// A member written from memory: its name and bytes.
pub(crate) type Generated = (Vec<u8>, Vec<u8>);

/// The members to write at the top level: `manifest.json`, and `repositories` when any input
/// has one (mergeImages would write `null`).
pub(crate) fn merge<'a>(
    inputs: impl IntoIterator<Item = (&'a Path, &'a ImageJson)>,
) -> Result<Vec<Generated>, Error> {
    let mut manifest: Vec<Value> = Vec::new();
    let mut repositories: Option<Map<String, Value>> = None;
    for (input, json) in inputs {
        manifest.extend(manifest_items(input, json.manifest.as_deref())?);
        if let Some(bytes) = &json.repositories {
            if let Some(m) = repositories_object(input, bytes)? {
                repositories.get_or_insert_with(Map::new).extend(m);
            }
        }
    }
    let mut members = vec![(
        b"manifest.json".to_vec(),
        jq::pretty(&Value::Array(manifest)).into_bytes(),
    )];
    if let Some(r) = repositories {
        members.push((
            b"repositories".to_vec(),
            jq::pretty(&Value::Object(r)).into_bytes(),
        ));
    }
    Ok(members)
}

fn not_image(input: &Path, problem: ImageProblem) -> Error {
    Error::NotImage {
        input: input.to_path_buf(),
        problem,
    }
}

fn parse(input: &Path, name: &str, bytes: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(bytes).map_err(|source| {
        let member = name.to_string();
        not_image(input, ImageProblem::Json { member, source })
    })
}

/// The images an input's `manifest.json` lists; an input without one is not an image.
fn manifest_items(input: &Path, bytes: Option<&[u8]>) -> Result<Vec<Value>, Error> {
    let bytes = bytes.ok_or_else(|| not_image(input, ImageProblem::NoManifest))?;
    match parse(input, "manifest.json", bytes)? {
        Value::Array(items) => Ok(items),
        _ => Err(not_image(input, ImageProblem::ManifestNotList)),
    }
}

/// An input's `repositories` object; `null` adds nothing, as in `jq -s add`.
fn repositories_object(input: &Path, bytes: &[u8]) -> Result<Option<Map<String, Value>>, Error> {
    match parse(input, "repositories", bytes)? {
        Value::Object(m) => Ok(Some(m)),
        Value::Null => Ok(None),
        _ => Err(not_image(input, ImageProblem::RepositoriesNotObject)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(manifest: &str, repositories: Option<&str>) -> ImageJson {
        ImageJson {
            manifest: Some(manifest.as_bytes().to_vec()),
            repositories: repositories.map(|r| r.as_bytes().to_vec()),
        }
    }

    fn text(members: &[Generated]) -> Vec<(String, String)> {
        members
            .iter()
            .map(|(n, b)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(b).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn manifests_are_joined_and_repositories_merged_later_keys_winning() -> Result<(), Error> {
        let a = json(
            r#"[{"Config":"a.json"}]"#,
            Some(r#"{"x":{"1":"a"},"y":{}}"#),
        );
        let b = json(r#"[{"Config":"b.json"}]"#, Some(r#"{"x":{"2":"b"}}"#));
        let (pa, pb) = (Path::new("a.tar"), Path::new("b.tar"));
        let members = merge([(pa, &a), (pb, &b)])?;
        let want = [
            (
                "manifest.json".to_string(),
                "[\n  {\n    \"Config\": \"a.json\"\n  },\n  {\n    \"Config\": \"b.json\"\n  }\n]\n"
                    .to_string(),
            ),
            (
                "repositories".to_string(),
                "{\n  \"x\": {\n    \"2\": \"b\"\n  },\n  \"y\": {}\n}\n".to_string(),
            ),
        ];
        assert_eq!(text(&members), want);
        Ok(())
    }

    #[test]
    fn no_repositories_anywhere_writes_none() -> Result<(), Error> {
        let a = json("[]", None);
        let b = json("[]", Some("null"));
        let members = merge([(Path::new("a"), &a), (Path::new("b"), &b)])?;
        assert_eq!(text(&members), [("manifest.json".into(), "[]\n".into())]);
        Ok(())
    }

    #[test]
    fn a_missing_or_malformed_manifest_names_the_input() {
        let none = ImageJson::default();
        let object = json("{}", None);
        let broken = json("[", None);
        let repos = json("[]", Some("[]"));
        for (j, why) in [
            (&none, "no manifest.json"),
            (&object, "manifest.json is not a list"),
            (
                &broken,
                "manifest.json: EOF while parsing a list at line 1 column 1",
            ),
            (&repos, "repositories is not an object"),
        ] {
            let e = merge([(Path::new("in.tar"), j)])
                .err()
                .map(|e| e.to_string());
            assert_eq!(e, Some(format!("in.tar: not a docker-archive: {why}")));
        }
    }
}
