//! The conf.json that nixpkgs' `streamLayeredImage` writes, read as `stream_layered_image.py` reads it.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::isotime::{self, DateTime};

/// A conf problem: malformed JSON, a missing key or a value of the wrong kind.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// Not JSON.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The top level is not an object.
    #[error("the top level is not a JSON object")]
    NotObject,
    /// A required key is absent.
    #[error("missing key {0:?}")]
    Missing(&'static str),
    /// A key has a value of the wrong kind.
    #[error("key {key:?}: {why}")]
    Bad {
        /// The key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// The parsed conf.
#[derive(Debug)]
pub struct Conf {
    /// `architecture`, any JSON value, written back as is.
    pub architecture: Value,
    /// `config`, the image config.
    pub config: Value,
    /// `store_dir`: every store path must start with it.
    pub store_dir: String,
    /// `from_image`: a base docker-archive, if any.
    pub from_image: Option<PathBuf>,
    /// `store_layers`: the paths of each layer, in order.
    pub store_layers: Vec<Vec<String>>,
    /// `customisation_layer`: a folder with `layer.tar` and `checksum`.
    pub customisation_layer: String,
    /// `repo_tag` (absent is fine when `-t` is given).
    pub repo_tag: Option<Value>,
    /// `created`.
    pub created: DateTime,
    /// `int(mtime.timestamp())` (from `created` in older confs without `mtime`).
    pub mtime: i64,
    /// `int(uid)`.
    pub uid: u64,
    /// `int(gid)`.
    pub gid: u64,
    /// `uname`.
    pub uname: String,
    /// `gname`.
    pub gname: String,
}

fn get<'a>(m: &'a Map<String, Value>, key: &'static str) -> Result<&'a Value, ConfError> {
    m.get(key).ok_or(ConfError::Missing(key))
}

fn string(m: &Map<String, Value>, key: &'static str) -> Result<String, ConfError> {
    match get(m, key)? {
        Value::String(s) => Ok(s.clone()),
        other => Err(ConfError::Bad {
            key,
            why: format!("expected a string, found {other}"),
        }),
    }
}

fn time(m: &Map<String, Value>, key: &'static str, now: DateTime) -> Result<DateTime, ConfError> {
    let s = string(m, key)?;
    if s == "now" {
        return Ok(now);
    }
    isotime::parse(&s).ok_or_else(|| ConfError::Bad {
        key,
        why: format!("{s:?} is not an ISO 8601 time"),
    })
}

/// Python's `int(x)` for an id given as a number or a string.
fn id(m: &Map<String, Value>, key: &'static str) -> Result<u64, ConfError> {
    let bad = |why: String| ConfError::Bad { key, why };
    let v = get(m, key)?;
    let n: i128 = match v {
        Value::Number(n) => {
            let text = n.to_string();
            if let Ok(i) = text.parse::<i128>() {
                i
            } else {
                text.parse::<f64>()
                    .map(|f| f.trunc() as i128)
                    .map_err(|_| bad(format!("{text} is not a number")))?
            }
        }
        Value::Bool(b) => i128::from(*b),
        Value::String(s) => {
            let t = s.trim().replace('_', "");
            t.parse::<i128>()
                .map_err(|_| bad(format!("{s:?} is not an integer")))?
        }
        other => return Err(bad(format!("expected an integer, found {other}"))),
    };
    u64::try_from(n).map_err(|_| bad(format!("{n} is out of range")))
}

impl Conf {
    /// Parses conf bytes; `now` is what `"now"` means.
    pub fn parse(bytes: &[u8], now: DateTime) -> Result<Conf, ConfError> {
        let v: Value = serde_json::from_slice(bytes)?;
        let Value::Object(m) = v else {
            return Err(ConfError::NotObject);
        };
        let created = time(&m, "created", now)?;
        let mtime = if m.contains_key("mtime") {
            time(&m, "mtime", now)?
        } else {
            created
        }
        .timestamp();
        let from_image = match m.get("from_image") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(PathBuf::from(s)),
            Some(other) => {
                return Err(ConfError::Bad {
                    key: "from_image",
                    why: format!("expected a path or null, found {other}"),
                })
            }
        };
        let layers_bad = |why: &str| ConfError::Bad {
            key: "store_layers",
            why: why.into(),
        };
        let Value::Array(layers) = get(&m, "store_layers")? else {
            return Err(layers_bad("expected a list of lists of store paths"));
        };
        let mut store_layers = Vec::with_capacity(layers.len());
        for layer in layers {
            let Value::Array(paths) = layer else {
                return Err(layers_bad("expected a list of lists of store paths"));
            };
            let mut out = Vec::with_capacity(paths.len());
            for p in paths {
                let Value::String(s) = p else {
                    return Err(layers_bad("store paths must be strings"));
                };
                out.push(s.clone());
            }
            store_layers.push(out);
        }
        Ok(Conf {
            architecture: get(&m, "architecture")?.clone(),
            config: get(&m, "config")?.clone(),
            store_dir: string(&m, "store_dir")?,
            from_image,
            store_layers,
            customisation_layer: string(&m, "customisation_layer")?,
            repo_tag: m.get("repo_tag").cloned(),
            created,
            mtime,
            uid: id(&m, "uid")?,
            gid: id(&m, "gid")?,
            uname: string(&m, "uname")?,
            gname: string(&m, "gname")?,
        })
    }
}
