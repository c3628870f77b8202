//! Everything bad input can break, found before the first byte of output: the conf, the tag, the
//! base image (its manifest, config and compressed stream), the store paths (containment, see
//! [`crate::store`]), every file of every store layer (it exists and can be opened, no socket),
//! and the customisation layer (its checksum and `layer.tar`).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dockertools_common::names::Names;
use dockertools_common::tar::writer::DataError;
use dockertools_common::tar::{self as tarfmt, Header, Owner};
use serde_json::Value;

use crate::base::BaseImage;
use crate::conf::Conf;
use crate::image::overlay_env;
use crate::layer::{self, LayerOwner};
use crate::store::{Store, StorePath};
use crate::{Error, Options};

/// The customisation layer is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CustomisationError {
    /// A file could not be read.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The checksum file is not text.
    #[error("{}: the checksum is not UTF-8 text", .path.display())]
    NotUtf8 {
        /// The checksum file.
        path: PathBuf,
    },
    /// The checksum is not a sha256.
    #[error("{}: invalid sha256 {found:?} (expected 64 hex digits)", .path.display())]
    BadChecksum {
        /// The checksum file.
        path: PathBuf,
        /// Its text, stripped.
        found: String,
    },
    /// `layer.tar` is not a regular file.
    #[error("{}: not a regular file", .path.display())]
    NotRegular {
        /// `layer.tar`.
        path: PathBuf,
    },
    /// `layer.tar` does not hash to the checksum (found by OCI output, which hashes it).
    #[error("{}: the checksum file says {expected} but layer.tar has sha256 {found}", .path.display())]
    Mismatch {
        /// `layer.tar`.
        path: PathBuf,
        /// The checksum file's value.
        expected: String,
        /// The real sha256.
        found: String,
    },
    /// `layer.tar` changed or could not be read while it was copied.
    #[error("{}: {source}", .path.display())]
    Data {
        /// `layer.tar`.
        path: PathBuf,
        /// The error.
        #[source]
        source: DataError,
    },
}

/// The customisation layer: its checksum and the header of `layer.tar` in the image.
pub struct Customisation {
    /// The checksum file's sha256.
    pub checksum: String,
    /// `layer.tar`.
    pub path: PathBuf,
    /// Its header in a docker-archive.
    pub header: Header,
}

/// One store layer: the paths as the conf writes them (for progress and history) and checked.
pub struct StoreLayer {
    /// The paths as written in the conf.
    pub given: Vec<String>,
    /// The checked, normalised paths.
    pub paths: Vec<StorePath>,
}

/// A conf read and checked, with everything the image needs except the layer bytes.
pub struct Prepared {
    /// The conf.
    pub conf: Conf,
    /// The tag for `manifest.json` / `index.json`.
    pub repo_tag: Value,
    /// The base image, if any.
    pub base: Option<BaseImage>,
    /// The image config (`config`, with the base image's `Env` merged in).
    pub config: Value,
    /// The store layers.
    pub layers: Vec<StoreLayer>,
    /// The customisation layer.
    pub custom: Customisation,
    /// The owner of every store layer entry.
    pub owner: LayerOwner,
}

impl Prepared {
    /// Number of base image layers (layer numbers in messages count them first).
    pub fn base_count(&self) -> usize {
        self.base.as_ref().map_or(0, |b| b.layers.len())
    }
}

/// Reads and checks the conf: everything that bad input can break is found here, before any
/// output.
pub fn prepare(conf_path: &Path, conf_bytes: &[u8], opts: &Options) -> Result<Prepared, Error> {
    let conf = Conf::parse(conf_bytes, opts.now).map_err(|source| Error::Conf {
        path: conf_path.to_path_buf(),
        source,
    })?;
    let repo_tag = match opts.repo_tag.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Value::String(t.to_string()),
        None => conf.repo_tag.clone().ok_or(Error::NoRepoTag)?,
    };
    let base = conf
        .from_image
        .as_deref()
        .map(BaseImage::load)
        .transpose()?;
    let mut config = conf.config.clone();
    if let Some(b) = &base {
        overlay_env(b.config.get("config").unwrap_or(&Value::Null), &mut config)?;
    }
    let base_count = base.as_ref().map_or(0, |b| b.layers.len());
    let layers = store_layers(&conf, base_count)?;
    let custom = load_customisation(&conf.customisation_layer, conf.mtime, &opts.names)
        .map_err(Error::Customisation)?;
    // Without infos every layer is read for its digest anyway, so the check costs little.
    let skip = !opts.check_files && conf.store_layer_infos.is_some();
    let checked = if skip { &[][..] } else { layers.as_slice() };
    for (i, layer) in checked.iter().enumerate() {
        layer::check_layer(&layer.paths).map_err(|source| Error::Layer {
            layer: base_count + i + 1,
            source,
        })?;
    }
    let owner = LayerOwner {
        owner: Owner {
            mtime: conf.mtime,
            uid: conf.uid,
            gid: conf.gid,
            uname: conf.uname.clone().into_bytes(),
            gname: conf.gname.clone().into_bytes(),
        },
        nix_root_mode: conf.nix_root_mode,
    };
    Ok(Prepared {
        conf,
        repo_tag,
        base,
        config,
        layers,
        custom,
        owner,
    })
}

/// Checks every store path against `store_dir` (layer numbers count the base layers first).
fn store_layers(conf: &Conf, base_count: usize) -> Result<Vec<StoreLayer>, Error> {
    let store = Store::new(&conf.store_dir);
    let mut layers = Vec::with_capacity(conf.store_layers.len());
    for (i, given) in conf.store_layers.iter().enumerate() {
        let paths = given
            .iter()
            .map(|p| store.check(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::StorePath {
                layer: base_count + i + 1,
                source,
            })?;
        layers.push(StoreLayer {
            given: given.clone(),
            paths,
        });
    }
    Ok(layers)
}

fn load_customisation(
    dir: &str,
    mtime: i64,
    names: &Names,
) -> Result<Customisation, CustomisationError> {
    let checksum_path = Path::new(dir).join("checksum");
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CustomisationError::Io { path, source }
    };
    let text = fs::read(&checksum_path).map_err(io_err(&checksum_path))?;
    let text = String::from_utf8(text).map_err(|_| CustomisationError::NotUtf8 {
        path: checksum_path.clone(),
    })?;
    let checksum = text.trim().to_string();
    if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CustomisationError::BadChecksum {
            path: checksum_path,
            found: checksum,
        });
    }
    let layer_path = Path::new(dir).join("layer.tar");
    let md = fs::symlink_metadata(&layer_path).map_err(io_err(&layer_path))?;
    if !md.file_type().is_file() {
        return Err(CustomisationError::NotRegular { path: layer_path });
    }
    // Opened now, as its bytes will be, so that a file we may not read fails before any output.
    fs::File::open(&layer_path).map_err(io_err(&layer_path))?;
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
