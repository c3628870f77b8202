//! The conf.json that nixpkgs' `streamLayeredImage` writes, read as `stream_layered_image.py` reads it.
//!
//! Confs written by older nixpkgs releases are read as the script of their time read them:
//! - without `mtime`, files get the `created` time;
//! - without `uid`, `gid`, `uname` and `gname` (all four were added together, with nixpkgs'
//!   non-root store images in 2024), files belong to 0:0 `root:root` and `/nix` and `/nix/store`
//!   have mode 0555, which is what the script wrote before those keys existed.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::isotime::{self, DateTime};

/// Mode of `/nix` and `/nix/store` in a layer (the script's `nix_root`).
pub const NIX_ROOT_MODE: u32 = 0o755;

/// Mode of `/nix` and `/nix/store` written by the script before confs had an owner.
pub const LEGACY_NIX_ROOT_MODE: u32 = 0o555;

/// The owner keys: a conf has all of them or, from before they existed, none.
const OWNER_KEYS: [&str; 4] = ["uid", "gid", "uname", "gname"];

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
    /// Some owner keys are present and others are not.
    #[error("missing key {0:?} (a conf has all of uid, gid, uname and gname, or none of them)")]
    OwnerIncomplete(&'static str),
    /// A key has a value of the wrong kind.
    #[error("key {key:?}: {problem}")]
    Bad {
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: BadValue,
    },
    /// An id that is not between 0 and 2^64-1.
    #[error("key {key:?}: {value} is out of range (an id is from 0 to 18446744073709551615)")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The value as written in the conf.
        value: String,
    },
}

/// What is wrong with a conf value (each carries the value: a string's text, or the JSON of
/// anything else).
#[derive(Debug, thiserror::Error)]
pub enum BadValue {
    /// Not a string.
    #[error("expected a string, found {0}")]
    NotString(String),
    /// A string that is not a time.
    #[error("{0:?} is not an ISO 8601 time")]
    NotTime(String),
    /// A JSON number that neither Rust nor Python reads as a number.
    #[error("{0} is not a number")]
    NotNumber(String),
    /// A string that `int()` does not read.
    #[error("{0:?} is not an integer")]
    NotIntegerText(String),
    /// Neither a number, a string nor a boolean.
    #[error("expected an integer, found {0}")]
    NotInteger(String),
    /// `from_image` that is neither a string nor `null`.
    #[error("expected a path or null, found {0}")]
    NotPath(String),
    /// `store_layers` that is not a list of lists.
    #[error("expected a list of lists of store paths")]
    NotLayerList,
    /// A store path that is not a string.
    #[error("store paths must be strings")]
    StorePathNotString,
    /// `store_layer_infos` that is not a list.
    #[error("expected a list, found {0}")]
    NotInfoList(String),
    /// `store_layer_infos` with another length than `store_layers`.
    #[error("{found} infos for {layers} store layers (one per store layer, in order)")]
    InfoCount {
        /// Infos given.
        found: usize,
        /// Store layers.
        layers: usize,
    },
    /// One info is malformed.
    #[error("store layer {layer}: {problem}")]
    Info {
        /// The store layer (1-based).
        layer: usize,
        /// What is wrong.
        problem: InfoProblem,
    },
}

/// What is wrong with one `store_layer_infos` entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InfoProblem {
    /// Not an object.
    #[error("expected {{\"diff_id\": ..., \"size\": ...}}, found {0}")]
    NotObject(String),
    /// A key other than `diff_id` and `size`.
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    /// `diff_id` missing or not `sha256:` and 64 lowercase hex digits.
    #[error("diff_id must be \"sha256:\" and 64 lowercase hex digits, found {0}")]
    DiffId(String),
    /// `size` missing or not a whole number.
    #[error("size must be a whole number of bytes, found {0}")]
    Size(String),
}

/// The parsed conf.
#[derive(Debug)]
pub struct Conf {
    /// `architecture`, any JSON value, written back as is.
    pub architecture: Value,
    /// `config`, the image config.
    pub config: Value,
    /// `store_dir`: every store path must be below it.
    pub store_dir: String,
    /// `from_image`: a base docker-archive, if any.
    pub from_image: Option<PathBuf>,
    /// `store_layers`: the paths of each layer, in order, as written in the conf.
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
    /// Mode of `/nix` and `/nix/store` in each store layer ([`NIX_ROOT_MODE`], or
    /// [`LEGACY_NIX_ROOT_MODE`] for a conf without owner keys).
    pub nix_root_mode: u32,
    /// `store_layer_infos`: the diff_id and size of each store layer's tar, computed ahead (by
    /// `--layer-info`), so that the layers are read once; absent in confs nixpkgs writes.
    pub store_layer_infos: Option<Vec<StoreLayerInfo>>,
}

/// The digest and size of one store layer's tar, as `--layer-info` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreLayerInfo {
    /// The sha256 of the layer tar, lowercase hex (without `sha256:`).
    pub diff_id: String,
    /// The layer tar's size in bytes.
    pub size: u64,
}

impl StoreLayerInfo {
    /// The info as `--layer-info` prints it: `{"diff_id": "sha256:…", "size": …}`.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"diff_id\": \"sha256:{}\", \"size\": {}}}",
            self.diff_id, self.size
        )
    }

    /// Reads one info object.
    pub fn from_value(v: &Value) -> Result<StoreLayerInfo, InfoProblem> {
        let Value::Object(m) = v else {
            return Err(InfoProblem::NotObject(v.to_string()));
        };
        if let Some(k) = m.keys().find(|k| *k != "diff_id" && *k != "size") {
            return Err(InfoProblem::UnknownKey(k.clone()));
        }
        let shown = |k: &str| m.get(k).map_or("nothing".into(), Value::to_string);
        let hex = match m.get("diff_id") {
            Some(Value::String(s)) => s.strip_prefix("sha256:").unwrap_or_default(),
            _ => "",
        };
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(InfoProblem::DiffId(shown("diff_id")));
        }
        let size = match m.get("size") {
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        };
        let size = size.ok_or_else(|| InfoProblem::Size(shown("size")))?;
        Ok(StoreLayerInfo {
            diff_id: hex.to_string(),
            size,
        })
    }
}

/// What a store layer's tar depends on: the store, the layers' paths, the files' owner and
/// mtime. `--layer-info` needs only these keys, so that a small conf per layer (the Nix side's)
/// does not change when another part of the image does.
#[derive(Debug)]
pub struct LayerSettings {
    /// `store_dir`.
    pub store_dir: String,
    /// `store_layers`.
    pub store_layers: Vec<Vec<String>>,
    /// `int(mtime.timestamp())` (from `created` without `mtime`).
    pub mtime: i64,
    /// The files' owner and the mode of `/nix` and `/nix/store`.
    owner: Ownership,
}

fn get<'a>(m: &'a Map<String, Value>, key: &'static str) -> Result<&'a Value, ConfError> {
    m.get(key).ok_or(ConfError::Missing(key))
}

fn string(m: &Map<String, Value>, key: &'static str) -> Result<String, ConfError> {
    match get(m, key)? {
        Value::String(s) => Ok(s.clone()),
        other => Err(ConfError::Bad {
            key,
            problem: BadValue::NotString(other.to_string()),
        }),
    }
}

fn time(m: &Map<String, Value>, key: &'static str, now: DateTime) -> Result<DateTime, ConfError> {
    let s = string(m, key)?;
    if s == "now" {
        return Ok(now);
    }
    isotime::parse(&s).ok_or(ConfError::Bad {
        key,
        problem: BadValue::NotTime(s),
    })
}

/// Python's `int(x)` for an id given as a number, a string or a boolean, in u64's range.
fn id(m: &Map<String, Value>, key: &'static str) -> Result<u64, ConfError> {
    let out_of_range = |value: String| ConfError::OutOfRange { key, value };
    let n: i128 = match get(m, key)? {
        Value::Number(n) => {
            let text = n.to_string();
            match text.parse::<i128>() {
                Ok(i) => i,
                Err(_) => {
                    // A float, truncated toward zero as `int()` does; one beyond u64's range
                    // (1e400 included, which Python reads as infinity) is out of range.
                    let Ok(f) = text.parse::<f64>() else {
                        let problem = BadValue::NotNumber(text);
                        return Err(ConfError::Bad { key, problem });
                    };
                    if !(f > -1.0 && f < 18_446_744_073_709_551_616.0) {
                        return Err(out_of_range(text));
                    }
                    f.trunc() as i128
                }
            }
        }
        Value::Bool(b) => i128::from(*b),
        Value::String(s) => {
            let t = s.trim().replace('_', "");
            t.parse::<i128>().map_err(|_| ConfError::Bad {
                key,
                problem: BadValue::NotIntegerText(s.clone()),
            })?
        }
        other => {
            return Err(ConfError::Bad {
                key,
                problem: BadValue::NotInteger(other.to_string()),
            })
        }
    };
    u64::try_from(n).map_err(|_| out_of_range(n.to_string()))
}

fn from_image(m: &Map<String, Value>) -> Result<Option<PathBuf>, ConfError> {
    match m.get("from_image") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(PathBuf::from(s))),
        Some(other) => Err(ConfError::Bad {
            key: "from_image",
            problem: BadValue::NotPath(other.to_string()),
        }),
    }
}

fn store_layers(m: &Map<String, Value>) -> Result<Vec<Vec<String>>, ConfError> {
    let bad = |problem| ConfError::Bad {
        key: "store_layers",
        problem,
    };
    let Value::Array(layers) = get(m, "store_layers")? else {
        return Err(bad(BadValue::NotLayerList));
    };
    layers
        .iter()
        .map(|layer| {
            let Value::Array(paths) = layer else {
                return Err(bad(BadValue::NotLayerList));
            };
            paths
                .iter()
                .map(|p| match p {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(bad(BadValue::StorePathNotString)),
                })
                .collect()
        })
        .collect()
}

/// The owner of every file and the mode of `/nix` and `/nix/store`.
#[derive(Debug)]
struct Ownership {
    uid: u64,
    gid: u64,
    uname: String,
    gname: String,
    nix_root_mode: u32,
}

fn ownership(m: &Map<String, Value>) -> Result<Ownership, ConfError> {
    if let Some(missing) = OWNER_KEYS.iter().find(|k| !m.contains_key(**k)) {
        if OWNER_KEYS.iter().any(|k| m.contains_key(*k)) {
            return Err(ConfError::OwnerIncomplete(missing));
        }
        return Ok(Ownership {
            uid: 0,
            gid: 0,
            uname: "root".into(),
            gname: "root".into(),
            nix_root_mode: LEGACY_NIX_ROOT_MODE,
        });
    }
    Ok(Ownership {
        uid: id(m, "uid")?,
        gid: id(m, "gid")?,
        uname: string(m, "uname")?,
        gname: string(m, "gname")?,
        nix_root_mode: NIX_ROOT_MODE,
    })
}

/// `store_layer_infos`, when present: one info per store layer.
fn store_layer_infos(
    m: &Map<String, Value>,
    layers: usize,
) -> Result<Option<Vec<StoreLayerInfo>>, ConfError> {
    let bad = |problem| ConfError::Bad {
        key: "store_layer_infos",
        problem,
    };
    let list = match m.get("store_layer_infos") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(bad(BadValue::NotInfoList(other.to_string()))),
    };
    if list.len() != layers {
        return Err(bad(BadValue::InfoCount {
            found: list.len(),
            layers,
        }));
    }
    let infos = list
        .iter()
        .enumerate()
        .map(|(i, v)| {
            StoreLayerInfo::from_value(v).map_err(|problem| {
                bad(BadValue::Info {
                    layer: i + 1,
                    problem,
                })
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(infos))
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, ConfError> {
    match serde_json::from_slice(bytes)? {
        Value::Object(m) => Ok(m),
        _ => Err(ConfError::NotObject),
    }
}

impl LayerSettings {
    /// Parses the keys a store layer's tar depends on; `now` is what `"now"` means.
    pub fn parse(bytes: &[u8], now: DateTime) -> Result<LayerSettings, ConfError> {
        Self::from_map(&object(bytes)?, now).map(|(s, _)| s)
    }

    /// The settings and the `created` time.
    fn from_map(
        m: &Map<String, Value>,
        now: DateTime,
    ) -> Result<(LayerSettings, DateTime), ConfError> {
        let created = time(m, "created", now)?;
        let mtime = if m.contains_key("mtime") {
            time(m, "mtime", now)?
        } else {
            created
        }
        .timestamp();
        let owner = ownership(m)?;
        let settings = LayerSettings {
            store_dir: string(m, "store_dir")?,
            store_layers: store_layers(m)?,
            mtime,
            owner,
        };
        Ok((settings, created))
    }

    /// Owner and group ids.
    pub fn ids(&self) -> (u64, u64) {
        (self.owner.uid, self.owner.gid)
    }

    /// Owner and group names.
    pub fn names(&self) -> (&str, &str) {
        (&self.owner.uname, &self.owner.gname)
    }

    /// Mode of `/nix` and `/nix/store`.
    pub fn nix_root_mode(&self) -> u32 {
        self.owner.nix_root_mode
    }
}

impl Conf {
    /// Parses conf bytes; `now` is what `"now"` means.
    pub fn parse(bytes: &[u8], now: DateTime) -> Result<Conf, ConfError> {
        let m = object(bytes)?;
        let (layers, created) = LayerSettings::from_map(&m, now)?;
        let store_layer_infos = store_layer_infos(&m, layers.store_layers.len())?;
        let owner = layers.owner;
        Ok(Conf {
            architecture: get(&m, "architecture")?.clone(),
            config: get(&m, "config")?.clone(),
            store_dir: layers.store_dir,
            from_image: from_image(&m)?,
            store_layers: layers.store_layers,
            customisation_layer: string(&m, "customisation_layer")?,
            repo_tag: m.get("repo_tag").cloned(),
            created,
            mtime: layers.mtime,
            uid: owner.uid,
            gid: owner.gid,
            uname: owner.uname,
            gname: owner.gname,
            nix_root_mode: owner.nix_root_mode,
            store_layer_infos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: DateTime = DateTime {
        year: 2001,
        month: 2,
        day: 3,
        hour: 4,
        minute: 5,
        second: 6,
        micro: 7,
        offset_us: Some(0),
    };

    /// A conf as nixpkgs writes it today, with `edit` applied to its object.
    fn conf_with(edit: impl FnOnce(&mut Map<String, Value>)) -> Result<Conf, ConfError> {
        let mut v = serde_json::json!({
            "architecture": "amd64", "config": {"Env": ["A=1"]}, "os": "linux",
            "store_dir": "/nix/store", "from_image": null,
            "store_layers": [["/nix/store/a-x"], ["/nix/store/b-y", "/nix/store/c-z"]],
            "customisation_layer": "/nix/store/d-customisation-layer", "repo_tag": "x:y",
            "created": "1970-01-01T00:00:01+00:00", "mtime": "1970-01-01T00:00:02+00:00",
            "uid": "1000", "gid": "100", "uname": "alice", "gname": "users"
        });
        if let Value::Object(m) = &mut v {
            edit(m);
        }
        Conf::parse(v.to_string().as_bytes(), NOW)
    }

    #[test]
    fn a_current_conf_is_read_key_by_key() -> Result<(), ConfError> {
        let c = conf_with(|_| {})?;
        assert_eq!(c.store_dir, "/nix/store");
        assert_eq!(c.store_layers.len(), 2);
        assert_eq!(c.store_layers[1], ["/nix/store/b-y", "/nix/store/c-z"]);
        assert_eq!(c.mtime, 2);
        assert_eq!(c.created.timestamp(), 1);
        assert_eq!((c.uid, c.gid), (1000, 100));
        assert_eq!((c.uname.as_str(), c.gname.as_str()), ("alice", "users"));
        assert_eq!(c.nix_root_mode, 0o755);
        assert_eq!(c.from_image, None);
        assert_eq!(c.repo_tag, Some(Value::String("x:y".into())));
        Ok(())
    }

    #[test]
    fn a_conf_without_mtime_uses_created() -> Result<(), ConfError> {
        let c = conf_with(|m| {
            m.remove("mtime");
        })?;
        assert_eq!(c.mtime, 1);
        let c = conf_with(|m| {
            m.insert("mtime".into(), "now".into());
        })?;
        assert_eq!(c.mtime, NOW.timestamp());
        Ok(())
    }

    #[test]
    fn a_conf_from_before_owner_keys_is_root_with_0555_store_folders() -> Result<(), ConfError> {
        let c = conf_with(|m| {
            for k in OWNER_KEYS {
                m.remove(k);
            }
        })?;
        assert_eq!((c.uid, c.gid), (0, 0));
        assert_eq!((c.uname.as_str(), c.gname.as_str()), ("root", "root"));
        assert_eq!(c.nix_root_mode, 0o555);
        Ok(())
    }

    #[test]
    fn a_conf_with_some_owner_keys_names_the_missing_one() {
        let e = conf_with(|m| {
            m.remove("gname");
        });
        assert!(
            matches!(e, Err(ConfError::OwnerIncomplete("gname"))),
            "{e:?}"
        );
    }

    #[test]
    fn ids_are_read_as_python_int_reads_them() -> Result<(), ConfError> {
        for (v, want) in [
            (serde_json::json!(5), 5u64),
            (serde_json::json!("7"), 7),
            (serde_json::json!(" 1_000 "), 1000),
            (serde_json::json!(2.9), 2),
            (serde_json::json!(true), 1),
            (serde_json::json!(-0.5), 0),
            (serde_json::json!("18446744073709551615"), u64::MAX),
        ] {
            let c = conf_with(|m| {
                m.insert("uid".into(), v.clone());
            })?;
            assert_eq!(c.uid, want, "{v}");
        }
        Ok(())
    }

    #[test]
    fn an_id_out_of_range_says_so_with_the_conf_text() {
        for (text, shown) in [
            ("1e400", "1e+400"),
            ("-1", "-1"),
            ("18446744073709551616", "18446744073709551616"),
            ("1e20", "1e+20"),
        ] {
            let bytes = format!(
                r#"{{"architecture": "amd64", "config": {{}}, "store_dir": "/s", "store_layers": [],
                "customisation_layer": "/c", "created": "now", "uid": {text}, "gid": 0, "uname": "", "gname": ""}}"#
            );
            match Conf::parse(bytes.as_bytes(), NOW) {
                Err(ConfError::OutOfRange { key: "uid", value }) => assert_eq!(value, shown),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn values_of_the_wrong_kind_name_their_key() {
        let cases: [(&str, Value, &str); 6] = [
            ("uid", serde_json::json!("abc"), "\"abc\" is not an integer"),
            (
                "uid",
                serde_json::json!([1]),
                "expected an integer, found [1]",
            ),
            ("uname", serde_json::json!(5), "expected a string, found 5"),
            (
                "created",
                serde_json::json!("yesterday"),
                "\"yesterday\" is not an ISO 8601 time",
            ),
            (
                "from_image",
                serde_json::json!(3),
                "expected a path or null, found 3",
            ),
            (
                "store_layers",
                serde_json::json!([["/nix/store/a", 5]]),
                "store paths must be strings",
            ),
        ];
        for (key, v, why) in cases {
            let e = conf_with(|m| {
                m.insert(key.into(), v.clone());
            });
            assert!(
                matches!(&e, Err(ConfError::Bad { key: k, problem }) if *k == key && problem.to_string() == why),
                "{key}: {e:?}"
            );
        }
    }

    #[test]
    fn required_keys_and_shapes_are_checked() {
        for key in [
            "store_layers",
            "store_dir",
            "customisation_layer",
            "created",
            "config",
        ] {
            let e = conf_with(|m| {
                m.remove(key);
            });
            assert!(
                matches!(&e, Err(ConfError::Missing(k)) if *k == key),
                "{key}: {e:?}"
            );
        }
        assert!(matches!(
            Conf::parse(b"[1]", NOW),
            Err(ConfError::NotObject)
        ));
        assert!(matches!(Conf::parse(b"{", NOW), Err(ConfError::Json(_))));
    }

    #[test]
    fn from_image_may_be_absent_null_or_a_path() -> Result<(), ConfError> {
        assert_eq!(
            conf_with(|m| drop(m.remove("from_image")))?.from_image,
            None
        );
        let c = conf_with(|m| {
            m.insert("from_image".into(), "/b.tar".into());
        })?;
        assert_eq!(c.from_image, Some(PathBuf::from("/b.tar")));
        Ok(())
    }
}
