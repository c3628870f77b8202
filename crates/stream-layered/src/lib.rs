//! stream-layered: the docker-archive image of a `streamLayeredImage` conf, byte-identical to
//! nixpkgs' `stream_layered_image.py`, or the same image as an OCI layout.
//!
//! Input: the conf.json (store layers, customisation layer, config, owner, times, optional base
//! image). Output: the image tar (POSIX PAX format, as Python's `tarfile` writes it) on a writer,
//! and the original's progress lines on another; or an OCI layout.
//!
//! The pipeline, one module per stage:
//! - [`prepare`](mod@prepare) reads the conf ([`conf`]) and checks everything bad input can break before the
//!   first byte: store paths against `store_dir` ([`store`]), every file of every layer (it exists
//!   and can be opened), the customisation layer and the base image ([`base`]);
//! - [`image`] writes the image's config and manifest;
//! - [`docker_archive`] streams the docker-archive: every store layer is hashed in parallel
//!   (rayon, one layer per task, each layer tar written by [`layer`] into a hashing sink), then
//!   streamed as the digests arrive;
//! - [`oci`] writes the same image as an OCI layout, on a writer or into a folder.
//!
//! What can still fail after the first byte: a file that changes, disappears or cannot be read
//! between the check and the copy, a base layer whose bytes do not match its diff_id, and
//! writing the output. The stream then stops (the last member may be cut short) before
//! `manifest.json`, which is written last, so no consumer takes it for an image.
//!
//! Deterministic: the bytes depend only on the conf, the files it names and the options
//! (`now` only matters for `"created": "now"`). Memory: flat; a directory listing per walk
//! level and a copy buffer per thread, never a file or a layer.

pub mod base;
pub mod conf;
pub mod docker_archive;
pub mod image;
pub mod info;
pub mod isotime;
pub mod layer;
pub mod makeconf;
pub mod oci;
pub mod prepare;
pub mod registry;
pub mod store;
pub mod tee_hash;

use std::io;
use std::path::PathBuf;

use dockertools_common::names::Names;
use dockertools_common::tar::writer::DataError;

pub use conf::{Conf, ConfError};
pub use isotime::DateTime;
pub use prepare::{prepare, Prepared};

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
    /// A store path is not a path in the store.
    #[error("layer {layer}: {source}")]
    StorePath {
        /// Layer number (1-based, as the progress lines count, base layers first).
        layer: usize,
        /// Why it is refused.
        #[source]
        source: store::StorePathError,
    },
    /// A store layer could not be read.
    #[error("layer {layer}: {source}")]
    Layer {
        /// Layer number (1-based).
        layer: usize,
        /// The error.
        #[source]
        source: layer::LayerError,
    },
    /// The customisation layer is unusable.
    #[error("customisation layer {0}")]
    Customisation(#[source] prepare::CustomisationError),
    /// The base image is unusable.
    #[error(transparent)]
    Base(#[from] base::BaseError),
    /// The config cannot be merged with the base config.
    #[error("config: {0}")]
    Config(#[from] image::ConfigError),
    /// `repo_tag` is absent and no `-t` was given.
    #[error("missing key \"repo_tag\" (and no --repo_tag given)")]
    NoRepoTag,
    /// A layer changed between hashing and streaming.
    #[error("layer {layer} changed while it was streamed: {source}")]
    Changed {
        /// Layer number.
        layer: usize,
        /// What differed.
        #[source]
        source: Changed,
    },
    /// A store layer's bytes do not match its `store_layer_infos` entry.
    #[error("layer {layer} does not match its store_layer_infos entry (a store path changed since --layer-info ran, or the info is stale): {source}")]
    InfoMismatch {
        /// Layer number.
        layer: usize,
        /// What differed.
        #[source]
        source: Changed,
    },
    /// `--layer-info N` names no store layer of the conf.
    #[error("--layer-info {n}: the conf has {count} store layers (numbered from 1)")]
    NoSuchLayer {
        /// The number asked for.
        n: usize,
        /// How many store layers the conf has.
        count: usize,
    },
    /// The push to a registry failed.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// The output folder could not be written.
    #[error("output {}: {source}", .path.display())]
    Output {
        /// The output folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing the output stream failed.
    #[error("writing output: {0}")]
    Write(#[source] io::Error),
    /// A member of the image's own could not be written.
    #[error("member {member}: {source}")]
    Member {
        /// The member's name.
        member: String,
        /// The error.
        #[source]
        source: DataError,
    },
}

impl Error {
    /// The error of the image's member `name` that could not be written: writing the output
    /// failed, or the member itself is wrong.
    fn member(name: &[u8]) -> impl Fn(DataError) -> Error + '_ {
        move |source| match source {
            DataError::Write(e) => Error::Write(e),
            source => Error::Member {
                member: String::from_utf8_lossy(name).into_owned(),
                source,
            },
        }
    }
}

/// How a layer differed on its second pass.
#[derive(Debug, thiserror::Error)]
pub enum Changed {
    /// Its size (or a file's) differs.
    #[error("{0}")]
    Size(#[source] DataError),
    /// Its bytes hash to another digest.
    #[error("its blob had sha256 {before}, now {after}")]
    Digest {
        /// The first pass's digest.
        before: String,
        /// The second pass's.
        after: String,
    },
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
    /// Open every file of every store layer before any output (a stream's consumer must not get
    /// a partial image from bad input). A registry push with `store_layer_infos` turns it off:
    /// it reads only the layers the registry lacks, finds a bad file while uploading, and writes
    /// no tag then.
    pub check_files: bool,
}
