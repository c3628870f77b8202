//! stream-layered: the docker-archive image of a `streamLayeredImage` conf, byte-identical to
//! nixpkgs' `stream_layered_image.py`.
//!
//! Input: the conf.json (store layers, customisation layer, config, owner, times, optional base image).
//! Output: the image tar (POSIX PAX format, as Python's `tarfile` writes it) on a writer, and the
//! original's progress lines on another.
//! Every layer's digest names its member, so all store layers are first hashed in parallel
//! (rayon, one layer per task; each layer is written into a hashing sink), then streamed.
//! Everything that can fail on bad input (conf, paths outside the store, missing paths, the
//! customisation checksum, the base image) is checked before the first byte is written.
//! Deterministic: the bytes depend only on the conf, the files it names and the options
//! (`now` only matters for `"created": "now"`). Memory: flat; a directory listing per walk
//! level and a copy buffer per thread, never a file or a layer.

pub mod base;
pub mod conf;
pub mod isotime;
pub mod layer;
pub mod makeconf;
pub mod oci;

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dockertools_common::hash::{sha256_hex, HashingWriter};
use dockertools_common::names::Names;
use dockertools_common::py::{bytes_code_points, repr_str_list, str_code_points};
use dockertools_common::pyjson;
use dockertools_common::tar::writer::{DataError, TarWriter};
use dockertools_common::tar::{self as tarfmt, pax, Header};
use serde_json::{Map, Value};

pub use conf::{Conf, ConfError};
pub use isotime::DateTime;
use layer::{LayerError, Owner};

/// Errors of stream-layered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The conf is malformed or incomplete.
    #[error("{}: {source}", .path.display())]
    Conf {
        /// The conf file.
        path: PathBuf,
        /// The problem.
        #[source]
        source: ConfError,
    },
    /// A store path does not start with `store_dir`.
    #[error("layer {layer}: {path} is not under store_dir {store_dir}")]
    OutsideStore {
        /// Layer number (1-based, as the progress lines count).
        layer: usize,
        /// The path.
        path: String,
        /// The store folder.
        store_dir: String,
    },
    /// A store layer could not be read.
    #[error("layer {layer}: {source}")]
    Layer {
        /// Layer number (1-based).
        layer: usize,
        /// The error.
        #[source]
        source: LayerError,
    },
    /// The customisation layer is unusable.
    #[error("customisation layer {}: {why}", .path.display())]
    Customisation {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The base image is unusable.
    #[error(transparent)]
    Base(#[from] base::BaseError),
    /// The config cannot be merged with the base config.
    #[error("config: {0}")]
    Config(String),
    /// `repo_tag` is absent and no `-t` was given.
    #[error("missing key \"repo_tag\" (and no --repo_tag given)")]
    NoRepoTag,
    /// A file changed between hashing and streaming.
    #[error("layer {layer} changed while it was streamed: {source}")]
    Changed {
        /// Layer number.
        layer: usize,
        /// What differed.
        #[source]
        source: DataError,
    },
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Write(#[source] io::Error),
}

impl From<base::CopyError> for Error {
    fn from(e: base::CopyError) -> Self {
        match e {
            base::CopyError::Base(b) => Error::Base(b),
            base::CopyError::Write(w) => Error::Write(w),
        }
    }
}

/// What the command line and the environment supply.
#[derive(Clone, Debug)]
pub struct Options {
    /// `-t`/`--repo_tag`: replaces `repo_tag` in `manifest.json`.
    pub repo_tag: Option<String>,
    /// The current time, for `"now"`.
    pub now: DateTime,
    /// User and group names, for the customisation layer's owner (as `tarfile.gettarinfo` looks them up).
    pub names: Names,
}

pub(crate) struct Customisation {
    pub(crate) checksum: String,
    pub(crate) path: PathBuf,
    header: Header,
}

fn load_customisation(dir: &str, mtime: i64, names: &Names) -> Result<Customisation, Error> {
    let checksum_path = Path::new(dir).join("checksum");
    let bad = |path: &Path, why: String| Error::Customisation {
        path: path.to_path_buf(),
        why,
    };
    let text = fs::read(&checksum_path).map_err(|e| bad(&checksum_path, e.to_string()))?;
    let text = String::from_utf8(text)
        .map_err(|_| bad(&checksum_path, "checksum is not UTF-8 text".into()))?;
    let checksum = text.trim().to_string();
    if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(
            &checksum_path,
            format!("invalid sha256 {checksum:?} (expected 64 hex digits)"),
        ));
    }
    let layer_path = Path::new(dir).join("layer.tar");
    let md = fs::symlink_metadata(&layer_path).map_err(|e| bad(&layer_path, e.to_string()))?;
    if !md.file_type().is_file() {
        return Err(bad(&layer_path, "not a regular file".into()));
    }
    let header = Header {
        name: format!("{checksum}/layer.tar").into_bytes(),
        mode: md.mode() & 0o7777,
        uid: u64::from(md.uid()),
        gid: u64::from(md.gid()),
        size: md.len(),
        mtime,
        typeflag: tarfmt::REGULAR,
        uname: names.user(u64::from(md.uid())),
        gname: names.group(u64::from(md.gid())),
        ..Header::default()
    };
    Ok(Customisation {
        checksum,
        path: layer_path,
        header,
    })
}

/// `overlay_base_config`: the base config's `Env` first, then the conf's, one entry per name,
/// the last value winning at the first position.
fn overlay_env(base_config: &Value, config: &mut Value) -> Result<(), Error> {
    let env_of = |v: &Value, what: &str| -> Result<Vec<String>, Error> {
        match v.get("Env") {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| Error::Config(format!("{what} Env entries must be strings")))
                })
                .collect(),
            Some(_) => Err(Error::Config(format!("{what} Env is not a list"))),
        }
    };
    if !base_config.is_object() {
        return Err(Error::Config(
            "the base image config has no \"config\" object".into(),
        ));
    }
    let Value::Object(final_map) = config else {
        return Err(Error::Config("config is not an object".into()));
    };
    let mut env = env_of(base_config, "base image")?;
    env.extend(env_of(&Value::Object(final_map.clone()), "conf")?);
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
    final_map.insert(
        "Env".into(),
        Value::Array(
            resolved
                .into_iter()
                .map(|(_, e)| Value::String(e))
                .collect(),
        ),
    );
    Ok(())
}

pub(crate) struct LayerInfo {
    pub(crate) checksum: String,
    pub(crate) path: Vec<u8>,
    pub(crate) comment_paths: Vec<Vec<u32>>,
}

fn digest_layer(paths: &[String], owner: &Owner) -> Result<(String, u64), LayerError> {
    let sink = HashingWriter::new(io::sink());
    let (_, hex, size) = layer::write_layer(paths, owner, sink)?.finish();
    Ok((hex, size))
}

/// Layer digests computed by rayon tasks (one per layer, started in layer order), each
/// published as soon as it is known.
struct Digests {
    slots: std::sync::Arc<Vec<DigestSlot>>,
}

/// One layer's (sha256, size), once known, and the signal that it is.
type DigestSlot = (
    std::sync::Mutex<Option<Result<(String, u64), LayerError>>>,
    std::sync::Condvar,
);

impl Digests {
    fn start(layers: &[Vec<String>], owner: &Owner) -> Digests {
        let slots: Vec<_> = layers
            .iter()
            .map(|_| (std::sync::Mutex::new(None), std::sync::Condvar::new()))
            .collect();
        let slots = std::sync::Arc::new(slots);
        for (i, paths) in layers.iter().enumerate() {
            let (slots, paths, owner) = (slots.clone(), paths.clone(), owner.clone());
            rayon::spawn_fifo(move || {
                let result = digest_layer(&paths, &owner);
                let (lock, ready) = &slots[i];
                *lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
                ready.notify_all();
            });
        }
        Digests { slots }
    }

    /// Waits for layer `i`'s digest and size.
    fn wait(&self, i: usize) -> Result<(String, u64), LayerError> {
        let (lock, ready) = &self.slots[i];
        let mut slot = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(result) = slot.take() {
                return result;
            }
            slot = ready
                .wait(slot)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

fn outer_header(name: &[u8], size: u64, mtime: i64) -> Header {
    Header {
        name: name.to_vec(),
        mode: 0o644,
        size,
        mtime,
        typeflag: tarfmt::REGULAR,
        ..Header::default()
    }
}

/// The image config JSON (`<sha256>.json` in a docker-archive, the config blob in OCI).
pub(crate) fn image_config(conf: &Conf, config: Value, layers: &[LayerInfo]) -> Vec<u8> {
    let created = Value::String(conf.created.isoformat());
    let mut image = Map::new();
    image.insert("created".into(), created.clone());
    image.insert("architecture".into(), conf.architecture.clone());
    image.insert("os".into(), Value::String("linux".into()));
    image.insert("config".into(), config);
    let mut rootfs = Map::new();
    rootfs.insert(
        "diff_ids".into(),
        Value::Array(
            layers
                .iter()
                .map(|l| Value::String(format!("sha256:{}", l.checksum)))
                .collect(),
        ),
    );
    rootfs.insert("type".into(), Value::String("layers".into()));
    image.insert("rootfs".into(), Value::Object(rootfs));
    let history = layers
        .iter()
        .map(|l| {
            let mut h = Map::new();
            h.insert("created".into(), created.clone());
            h.insert(
                "comment".into(),
                Value::String(format!("store paths: {}", repr_str_list(&l.comment_paths))),
            );
            Value::Object(h)
        })
        .collect();
    image.insert("history".into(), Value::Array(history));
    let style = pyjson::Style {
        indent: Some(4),
        ensure_ascii: true,
    };
    pyjson::dumps(&Value::Object(image), style).into_bytes()
}

/// A conf read and checked, with everything the image needs except the layer bytes.
pub struct Prepared {
    /// The conf.
    pub conf: Conf,
    /// The tag for `manifest.json` / `index.json`.
    pub repo_tag: Value,
    /// The base image, if any.
    pub base: Option<base::BaseImage>,
    /// The image config (`config`, with the base image's `Env` merged in).
    pub config: Value,
    custom: Customisation,
    owner: Owner,
    base_count: usize,
}

/// Reads and checks the conf: everything that bad input can break is found here, before
/// any output (malformed conf, paths outside the store, missing paths, the customisation
/// layer, the base image).
pub fn prepare(conf_path: &Path, conf_bytes: &[u8], opts: &Options) -> Result<Prepared, Error> {
    let conf = Conf::parse(conf_bytes, opts.now).map_err(|source| Error::Conf {
        path: conf_path.to_path_buf(),
        source,
    })?;
    let repo_tag = match opts.repo_tag.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Value::String(t.to_string()),
        None => conf.repo_tag.clone().ok_or(Error::NoRepoTag)?,
    };
    let base = match &conf.from_image {
        Some(p) => Some(base::BaseImage::load(p)?),
        None => None,
    };
    let mut config = conf.config.clone();
    if let Some(b) = &base {
        overlay_env(b.config.get("config").unwrap_or(&Value::Null), &mut config)?;
    }
    let base_count = base.as_ref().map_or(0, |b| b.layers.len());
    for (i, layer) in conf.store_layers.iter().enumerate() {
        if let Some(p) = layer.iter().find(|p| !p.starts_with(&conf.store_dir)) {
            return Err(Error::OutsideStore {
                layer: base_count + i + 1,
                path: p.clone(),
                store_dir: conf.store_dir.clone(),
            });
        }
    }
    let custom = load_customisation(&conf.customisation_layer, conf.mtime, &opts.names)?;
    let owner = Owner {
        mtime: conf.mtime,
        uid: conf.uid,
        gid: conf.gid,
        uname: conf.uname.clone().into_bytes(),
        gname: conf.gname.clone().into_bytes(),
    };
    // Everything bad input can break is found before the first byte: a metadata-only walk.
    for (i, paths) in conf.store_layers.iter().enumerate() {
        layer::check_layer(paths).map_err(|source| Error::Layer {
            layer: base_count + i + 1,
            source,
        })?;
    }
    Ok(Prepared {
        conf,
        repo_tag,
        base,
        config,
        custom,
        owner,
        base_count,
    })
}

/// Builds the image for the conf bytes and writes it to `out`; progress lines go to `progress`.
pub fn build<W: Write>(
    conf_path: &Path,
    conf_bytes: &[u8],
    opts: &Options,
    out: W,
    progress: &mut dyn Write,
) -> Result<W, Error> {
    let Prepared {
        conf,
        repo_tag,
        base,
        config,
        custom,
        owner,
        base_count,
    } = prepare(conf_path, conf_bytes, opts)?;
    // Hash every store layer in the background, in order, while earlier ones are streamed.
    let digests = Digests::start(&conf.store_layers, &owner);

    let mut tar = TarWriter::new(out);
    let mut layers: Vec<LayerInfo> = Vec::new();
    let mut head = Vec::new();
    let say = |progress: &mut dyn Write, line: String| {
        // Progress is best effort: a closed stderr must not stop the image.
        let _ = writeln!(progress, "{line}");
    };
    match &base {
        None => say(progress, "No 'fromImage' provided".into()),
        Some(b) => {
            b.copy_layers(&mut tar, |num, member| {
                say(
                    progress,
                    format!(
                        "Adding base layer {num} from {}",
                        String::from_utf8_lossy(member)
                    ),
                );
            })?;
            for l in &b.layers {
                layers.push(LayerInfo {
                    checksum: l.checksum.clone(),
                    path: l.member.clone(),
                    comment_paths: vec![bytes_code_points(&l.member)],
                });
            }
        }
    }
    for (i, paths) in conf.store_layers.iter().enumerate() {
        let num = layers.len() + 1;
        let (checksum, size) = &digests.wait(i).map_err(|source| Error::Layer {
            layer: base_count + i + 1,
            source,
        })?;
        let list: Vec<Vec<u32>> = paths.iter().map(|p| str_code_points(p)).collect();
        say(
            progress,
            format!("Creating layer {num} from paths: {}", repr_str_list(&list)),
        );
        let name = format!("{checksum}/layer.tar").into_bytes();
        head.clear();
        pax::encode(&outer_header(&name, *size, conf.mtime), &mut head);
        tar.raw(&head).map_err(Error::Write)?;
        let mut w = tar.entry_writer();
        layer::write_layer(paths, &owner, &mut w).map_err(|source| match source {
            LayerError::Write(e) => Error::Write(e),
            LayerError::Data {
                source: DataError::Write(e),
                ..
            } => Error::Write(e),
            source => Error::Layer {
                layer: base_count + i + 1,
                source,
            },
        })?;
        w.finish(*size).map_err(|source| match source {
            DataError::Write(e) => Error::Write(e),
            source => Error::Changed { layer: num, source },
        })?;
        layers.push(LayerInfo {
            checksum: checksum.clone(),
            path: name,
            comment_paths: list,
        });
    }
    say(
        progress,
        format!("Creating layer {} with customisation...", layers.len() + 1),
    );
    head.clear();
    pax::encode(&custom.header, &mut head);
    tar.raw(&head).map_err(Error::Write)?;
    let mut file = fs::File::open(&custom.path).map_err(|e| Error::Customisation {
        path: custom.path.clone(),
        why: e.to_string(),
    })?;
    tar.data_from(&mut file, custom.header.size)
        .map_err(|source| match source {
            DataError::Write(e) => Error::Write(e),
            source => Error::Customisation {
                path: custom.path.clone(),
                why: source.to_string(),
            },
        })?;
    layers.push(LayerInfo {
        checksum: custom.checksum.clone(),
        path: custom.header.name.clone(),
        comment_paths: vec![str_code_points(&conf.customisation_layer)],
    });
    say(progress, "Adding manifests...".into());

    let style = pyjson::Style {
        indent: Some(4),
        ensure_ascii: true,
    };
    let image_json = image_config(&conf, config, &layers);
    let image_name = format!("{}.json", sha256_hex(&image_json));
    head.clear();
    pax::encode(
        &outer_header(image_name.as_bytes(), image_json.len() as u64, conf.mtime),
        &mut head,
    );
    tar.raw(&head).map_err(Error::Write)?;
    tar.data_bytes(&image_json).map_err(Error::Write)?;

    let mut manifest = Map::new();
    manifest.insert("Config".into(), Value::String(image_name));
    manifest.insert("RepoTags".into(), Value::Array(vec![repo_tag]));
    manifest.insert(
        "Layers".into(),
        Value::Array(
            layers
                .iter()
                .map(|l| Value::String(String::from_utf8_lossy(&l.path).into_owned()))
                .collect(),
        ),
    );
    let manifest_json =
        pyjson::dumps(&Value::Array(vec![Value::Object(manifest)]), style).into_bytes();
    head.clear();
    pax::encode(
        &outer_header(b"manifest.json", manifest_json.len() as u64, conf.mtime),
        &mut head,
    );
    tar.raw(&head).map_err(Error::Write)?;
    tar.data_bytes(&manifest_json).map_err(Error::Write)?;
    let out = tar.finish().map_err(Error::Write)?;
    say(progress, "Done.".into());
    Ok(out)
}

impl Error {
    /// True when the failure is a closed downstream pipe.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Write(e) => e.kind() == io::ErrorKind::BrokenPipe,
            Error::Layer { source, .. } => source.is_broken_pipe(),
            _ => false,
        }
    }
}
