//! The conf.json streamLayeredImage's `conf` derivation writes with jq: the base JSON
//! (`architecture`, `config`, `os`, ...) followed by `store_dir`, `from_image`, `store_layers`,
//! `customisation_layer`, `repo_tag`, `created`, `mtime`, `uid`, `gid`, `uname`, `gname`
//! (ids as strings), printed as jq prints it. Times other than `now` are normalised the way
//! `date -Iseconds -d` does in a UTC build: seconds precision with a `+00:00` offset.

use dockertools_common::jq;
use serde_json::{Map, Value};

use crate::isotime::{self, DateTime};

/// Inputs the conf cannot be made from.
#[derive(Debug, thiserror::Error)]
pub enum MakeConfError {
    /// The base JSON is not an object.
    #[error("the base JSON is not an object")]
    BaseNotObject,
    /// `store_layers` is not a list of lists of strings.
    #[error("store_layers is not a list of lists of store paths")]
    LayersShape,
    /// `created` or `mtime` is neither `now` nor an ISO 8601 time.
    #[error("{what} {value:?} is not an ISO 8601 time")]
    BadTime {
        /// `created` or `mtime`.
        what: &'static str,
        /// The value given.
        value: String,
    },
}

/// The values the conf derivation passes to jq.
#[derive(Clone, Debug)]
pub struct ConfArgs {
    /// `storeDir`.
    pub store_dir: String,
    /// `fromImage`, if any.
    pub from_image: Option<String>,
    /// The customisation layer's store path.
    pub customisation_layer: String,
    /// `imageName:imageTag`.
    pub repo_tag: String,
    /// `created` (`now` or an ISO 8601 time).
    pub created: String,
    /// `mtime` (`now` or an ISO 8601 time).
    pub mtime: String,
    /// uid.
    pub uid: u64,
    /// gid.
    pub gid: u64,
    /// uname.
    pub uname: String,
    /// gname.
    pub gname: String,
}

fn normalise(what: &'static str, t: &str) -> Result<String, MakeConfError> {
    if t == "now" {
        return Ok(t.to_string());
    }
    let dt = isotime::parse(t).ok_or_else(|| MakeConfError::BadTime {
        what,
        value: t.to_string(),
    })?;
    let utc = DateTime::from_unix(dt.timestamp(), 0);
    Ok(utc.isoformat())
}

/// Builds the conf text; `base` must be a JSON object, `store_layers` a list of lists of paths.
pub fn make_conf(
    base: &Value,
    store_layers: &Value,
    args: &ConfArgs,
) -> Result<String, MakeConfError> {
    let Value::Object(base) = base else {
        return Err(MakeConfError::BaseNotObject);
    };
    let ok_layers = store_layers.as_array().is_some_and(|ls| {
        ls.iter().all(|l| {
            l.as_array()
                .is_some_and(|ps| ps.iter().all(Value::is_string))
        })
    });
    if !ok_layers {
        return Err(MakeConfError::LayersShape);
    }
    let mut m: Map<String, Value> = base.clone();
    let s = |v: &str| Value::String(v.to_string());
    m.insert("store_dir".into(), s(&args.store_dir));
    m.insert(
        "from_image".into(),
        args.from_image.as_deref().map_or(Value::Null, s),
    );
    m.insert("store_layers".into(), store_layers.clone());
    m.insert("customisation_layer".into(), s(&args.customisation_layer));
    m.insert("repo_tag".into(), s(&args.repo_tag));
    m.insert("created".into(), s(&normalise("created", &args.created)?));
    m.insert("mtime".into(), s(&normalise("mtime", &args.mtime)?));
    m.insert("uid".into(), s(&args.uid.to_string()));
    m.insert("gid".into(), s(&args.gid.to_string()));
    m.insert("uname".into(), s(&args.uname));
    m.insert("gname".into(), s(&args.gname));
    Ok(jq::pretty(&Value::Object(m)))
}
