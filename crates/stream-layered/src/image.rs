//! The image's own JSON, the same for docker-archive and OCI output: the config (with the base
//! image's `Env` merged in, as `overlay_base_config` does) and docker-archive's `manifest.json`,
//! printed as Python's `json.dumps(..., indent=4)` prints them.

use dockertools_common::py::repr_str_list;
use dockertools_common::pyjson;
use serde_json::{Map, Value};

use crate::conf::Conf;

/// A config that cannot be merged with the base image's.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The base image's config has no `config` object.
    #[error("the base image config has no \"config\" object")]
    BaseNotObject,
    /// The conf's `config` is not an object.
    #[error("config is not an object")]
    NotObject,
    /// An `Env` that is not a list.
    #[error("{0} Env is not a list")]
    EnvNotList(&'static str),
    /// An `Env` entry that is not a string.
    #[error("{0} Env entries must be strings")]
    EnvEntry(&'static str),
}

/// What the config and manifest say about one layer.
pub struct LayerInfo {
    /// Its diff_id, without `sha256:`.
    pub checksum: String,
    /// Its member in a docker-archive (`<sha256>/layer.tar`, or the base image's member name).
    pub path: Vec<u8>,
    /// The paths of its history comment, as code points (Python's `repr` of a list of str).
    pub comment_paths: Vec<Vec<u32>>,
}

fn env_of(v: &Value, what: &'static str) -> Result<Vec<String>, ConfigError> {
    match v.get("Env") {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or(ConfigError::EnvEntry(what))
            })
            .collect(),
        Some(_) => Err(ConfigError::EnvNotList(what)),
    }
}

/// `overlay_base_config`: the base config's `Env` first, then the conf's, one entry per name,
/// the last value winning at the first position.
pub fn overlay_env(base_config: &Value, config: &mut Value) -> Result<(), ConfigError> {
    if !base_config.is_object() {
        return Err(ConfigError::BaseNotObject);
    }
    let mut env = env_of(base_config, "base image")?;
    env.extend(env_of(config, "conf")?);
    let Value::Object(final_map) = config else {
        return Err(ConfigError::NotObject);
    };
    if env.is_empty() {
        return Ok(());
    }
    let mut resolved: Vec<(String, String)> = Vec::new();
    for entry in env {
        let key = entry.split('=').next().unwrap_or_default().to_string();
        match resolved.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = entry,
            None => resolved.push((key, entry)),
        }
    }
    let env = resolved
        .into_iter()
        .map(|(_, e)| Value::String(e))
        .collect();
    final_map.insert("Env".into(), Value::Array(env));
    Ok(())
}

const STYLE: pyjson::Style = pyjson::Style {
    indent: Some(4),
    ensure_ascii: true,
};

/// The image config JSON (`<sha256>.json` in a docker-archive, the config blob in OCI).
pub fn config_json(conf: &Conf, config: Value, layers: &[LayerInfo]) -> Vec<u8> {
    let created = Value::String(conf.created.isoformat());
    let mut image = Map::new();
    image.insert("created".into(), created.clone());
    image.insert("architecture".into(), conf.architecture.clone());
    image.insert("os".into(), Value::String("linux".into()));
    image.insert("config".into(), config);
    let diff_ids = layers
        .iter()
        .map(|l| Value::String(format!("sha256:{}", l.checksum)))
        .collect();
    let mut rootfs = Map::new();
    rootfs.insert("diff_ids".into(), Value::Array(diff_ids));
    rootfs.insert("type".into(), Value::String("layers".into()));
    image.insert("rootfs".into(), Value::Object(rootfs));
    let history = layers
        .iter()
        .map(|l| {
            let mut h = Map::new();
            h.insert("created".into(), created.clone());
            let comment = format!("store paths: {}", repr_str_list(&l.comment_paths));
            h.insert("comment".into(), Value::String(comment));
            Value::Object(h)
        })
        .collect();
    image.insert("history".into(), Value::Array(history));
    pyjson::dumps(&Value::Object(image), STYLE).into_bytes()
}

/// docker-archive's `manifest.json`: one image with its config member, tag and layer members.
pub fn manifest_json(config_name: &str, repo_tag: &Value, layers: &[LayerInfo]) -> Vec<u8> {
    let mut manifest = Map::new();
    manifest.insert("Config".into(), Value::String(config_name.into()));
    manifest.insert("RepoTags".into(), Value::Array(vec![repo_tag.clone()]));
    let members = layers
        .iter()
        .map(|l| Value::String(String::from_utf8_lossy(&l.path).into_owned()))
        .collect();
    manifest.insert("Layers".into(), Value::Array(members));
    pyjson::dumps(&Value::Array(vec![Value::Object(manifest)]), STYLE).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_keeps_the_first_position_and_the_last_value() -> Result<(), ConfigError> {
        let base = json!({"Env": ["PATH=/base", "A=1", "B=2"]});
        let mut config = json!({"Env": ["B=3", "PATH=/override", "NEW=1"]});
        overlay_env(&base, &mut config)?;
        assert_eq!(
            config,
            json!({"Env": ["PATH=/override", "A=1", "B=3", "NEW=1"]})
        );
        Ok(())
    }

    #[test]
    fn no_env_anywhere_adds_none() -> Result<(), ConfigError> {
        let mut config = json!({"Cmd": ["x"]});
        overlay_env(&json!({}), &mut config)?;
        assert_eq!(config, json!({"Cmd": ["x"]}));
        Ok(())
    }

    #[test]
    fn env_of_the_wrong_shape_is_a_typed_error() {
        let mut config = json!({});
        let e = overlay_env(&json!({"Env": "A=1"}), &mut config);
        assert!(matches!(e, Err(ConfigError::EnvNotList("base image"))));
        let mut config = json!({"Env": [1]});
        let e = overlay_env(&json!({}), &mut config);
        assert!(matches!(e, Err(ConfigError::EnvEntry("conf"))));
        let e = overlay_env(&Value::Null, &mut json!({}));
        assert!(matches!(e, Err(ConfigError::BaseNotObject)));
        let e = overlay_env(&json!({"Env": ["A=1"]}), &mut json!([]));
        assert!(matches!(e, Err(ConfigError::NotObject)));
    }

    #[test]
    fn the_manifest_is_printed_as_python_prints_it() {
        let layers = [LayerInfo {
            checksum: "ab".into(),
            path: b"ab/layer.tar".to_vec(),
            comment_paths: Vec::new(),
        }];
        let m = manifest_json("c.json", &json!("x:y"), &layers);
        assert_eq!(
            String::from_utf8_lossy(&m),
            "[\n    {\n        \"Config\": \"c.json\",\n        \"RepoTags\": [\n            \"x:y\"\n        ],\n        \"Layers\": [\n            \"ab/layer.tar\"\n        ]\n    }\n]"
        );
    }
}
