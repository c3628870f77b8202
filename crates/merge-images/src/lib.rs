//! merge-images: several docker-archive images (plain, gzip or zstd) merged into one archive,
//! byte-identical (after decompression) to nixpkgs' `mergeImages`.
//!
//! Input: image files. Output: one archive, compressed like the last input unless told otherwise.
//! The output tar is what `mergeImages`' final `tar --sort=name --hard-dereference --owner=0
//! --group=0 --mtime=@SOURCE_DATE_EPOCH --xform s:^./:: -c .` gives for the union of the inputs:
//! GNU format, `./` first, then every folder and member sorted by path component; `manifest.json`
//! is the concatenation of the inputs' manifests and `repositories` the merge of theirs, printed as
//! `jq` prints them.
//!
//! Nothing is unpacked. The pipeline has four stages:
//! - `index`: each input is opened once and its headers read (a plain file in place, seeking
//!   over data; a compressed input or a pipe decompressed once into a spool, in memory within
//!   [`Options::memory`], the rest in an unlinked file beside OUT; for a gzip output, the gzip
//!   blocks of its large members compressed meanwhile stand for their data); its members form
//!   a tree of their own, as `tar -x` would extract them, and that tree is merged into the
//!   image's as `cp -R --update=none` would copy it ([`tree`] keeps it safe to extract: nothing
//!   below a non-folder, no symlink leading outside);
//! - `json`: the inputs' `manifest.json` and `repositories` merged as `jq -s add`;
//! - `digests`: the sha256 each layer member must have, from the image configs' `diff_ids`;
//! - `write`: the tree streamed as a sorted GNU tar through the compressor, each layer member
//!   checked against that sha256 while it is copied.
//!
//! Memory: the member index (a few hundred bytes per member), the JSON members, and the spools
//! and blocks compressed ahead up to [`Options::memory`] (1 GiB by default) in all.
//! Deterministic: the bytes depend only on the inputs, the mtime and the compression options.
//! Errors: every failure names the input, the member or OUT, and leaves no output behind.

use std::path::{Path, PathBuf};

use dockertools_common::atomic::AtomicFile;
use dockertools_common::compress::Compression;
use dockertools_common::tar::reader::ReadError;
use dockertools_common::tar::HeaderError;

mod ahead;
mod digests;
mod index;
mod json;
mod store;
#[doc(hidden)]
pub mod tree;
mod write;

use index::Index;
use tree::Kind;

/// Errors of merge-images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input could not be opened or read, or its compressed stream is corrupt.
    #[error("{}: {source}", .input.display())]
    Io {
        /// The input.
        input: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An input is not a readable tar (truncated, garbage).
    #[error("{}: {source}", .input.display())]
    Tar {
        /// The input.
        input: PathBuf,
        /// The error.
        #[source]
        source: ReadError,
    },
    /// An entry that must not be merged (absolute, `..`, device, hard link out of the archive).
    #[error("{}: entry {entry:?}: {why}", .input.display())]
    Unsafe {
        /// The input.
        input: PathBuf,
        /// The entry name.
        entry: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A member the tree cannot hold: below a file or symlink, or a symlink that leads
    /// outside the image or loops.
    #[error("{}: {source}", .input.display())]
    Tree {
        /// The input.
        input: PathBuf,
        /// What is wrong.
        #[source]
        source: tree::TreeError,
    },
    /// An input without a usable `manifest.json`, `repositories` or image config.
    #[error("{}: not a docker-archive: {problem}", .input.display())]
    NotImage {
        /// The input.
        input: PathBuf,
        /// What is wrong.
        #[source]
        problem: ImageProblem,
    },
    /// A `manifest.json` or `repositories` too large to read into memory.
    #[error("{}: {member} is larger than {} MiB", .input.display(), .limit >> 20)]
    JsonTooLarge {
        /// The input.
        input: PathBuf,
        /// The member.
        member: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// Two inputs hold different bytes (or symlink targets) under one path.
    #[error("entry {entry:?} differs between {} and {}", .first.display(), .second.display())]
    Conflict {
        /// The path.
        entry: String,
        /// The input that provided it first.
        first: PathBuf,
        /// The input that disagrees.
        second: PathBuf,
    },
    /// Two inputs hold different kinds of member under one path.
    #[error("entry {entry:?} is a {first_kind} in {} and a {second_kind} in {}", .first.display(), .second.display())]
    KindConflict {
        /// The path.
        entry: String,
        /// The input that provided it first.
        first: PathBuf,
        /// What it is there.
        first_kind: &'static str,
        /// The input that disagrees.
        second: PathBuf,
        /// What it is there.
        second_kind: &'static str,
    },
    /// A layer member whose bytes do not hash to the digest its image config (or its name)
    /// gives it.
    #[error("{}: entry {entry:?}: bytes hash to sha256 {actual}, not {expected} ({from})", .input.display())]
    Digest {
        /// The input.
        input: PathBuf,
        /// The member.
        entry: String,
        /// The sha256 it should have.
        expected: String,
        /// Where that digest comes from.
        from: DigestSource,
        /// The sha256 of its bytes.
        actual: String,
    },
    /// An input read in place ended before a member it listed: it changed while merging.
    #[error("{}: ended early while reading entry {entry:?} (changed while merging)", .input.display())]
    EndedEarly {
        /// The input.
        input: PathBuf,
        /// The member being read.
        entry: String,
    },
    /// An input read in place was written to while merging.
    #[error("{}: changed while merging", .input.display())]
    Changed {
        /// The input.
        input: PathBuf,
    },
    /// The spool file of a compressed or piped input (beside OUT) could not be written.
    #[error("spool file beside {} (for {}): {source}", .out.display(), .input.display())]
    Spool {
        /// The input being spooled.
        input: PathBuf,
        /// The output, beside which the spool is.
        out: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The cache of gzip blocks compressed ahead (beside OUT) could not be written or read.
    #[error("gzip block cache beside {}: {source}", .out.display())]
    Cache {
        /// The output, beside which the cache is.
        out: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `--level` does not fit the output's compression (known once the last input is open).
    #[error("{0}")]
    Level(String),
    /// The output could not be written.
    #[error("{}: {source}", .out.display())]
    Output {
        /// The output file.
        out: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A header value does not fit.
    #[error("entry {entry:?}: {source}")]
    Overflow {
        /// The entry.
        entry: String,
        /// The field.
        #[source]
        source: HeaderError,
    },
}

/// Where the digest a layer member must have comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestSource {
    /// The `rootfs.diff_ids` of an image config (its member name).
    DiffId(String),
    /// The member's own name (`blobs/sha256/<sha256>`).
    Name,
}

impl std::fmt::Display for DigestSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DigestSource::DiffId(config) => write!(f, "its diff_id in {config}"),
            DigestSource::Name => f.write_str("its name"),
        }
    }
}

/// What makes an input unusable as a docker-archive.
#[derive(Debug, thiserror::Error)]
pub enum ImageProblem {
    /// It has no `manifest.json`.
    #[error("no manifest.json")]
    NoManifest,
    /// A JSON member (`manifest.json`, `repositories`) is a folder, link or device.
    #[error("{member} is not a regular file")]
    NotRegular {
        /// The member.
        member: String,
    },
    /// A JSON member or an image config is not JSON.
    #[error("{member}: {source}")]
    Json {
        /// The member.
        member: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// `manifest.json` is not a list.
    #[error("manifest.json is not a list")]
    ManifestNotList,
    /// `repositories` is neither an object nor `null`.
    #[error("repositories is not an object")]
    RepositoriesNotObject,
    /// An item of `manifest.json` without `Config`.
    #[error("a manifest.json item has no Config")]
    NoConfig,
    /// An item of `manifest.json` without `Layers`.
    #[error("the manifest.json item of {config} has no Layers")]
    NoLayers {
        /// Its config.
        config: String,
    },
    /// A layer or config name that is not a clean path inside the archive.
    #[error("{what} {name:?}: bad name")]
    BadName {
        /// `layer` or `config`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A config the archive does not hold.
    #[error("manifest.json names config {config}, which the image does not have")]
    ConfigMissing {
        /// The config's name.
        config: String,
    },
    /// A config that is not a regular file.
    #[error("config {config} is not a regular file")]
    ConfigNotRegular {
        /// The config's name.
        config: String,
    },
    /// A config too large to read into memory.
    #[error("config {config} is larger than {} MiB", .limit >> 20)]
    ConfigTooLarge {
        /// The config's name.
        config: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A diff_id that is not `sha256:` and 64 hex digits.
    #[error("config {config}: diff_id {diff_id} is not sha256:<64 hex digits>")]
    BadDiffId {
        /// The config's name.
        config: String,
        /// The diff_id as written.
        diff_id: String,
    },
    /// A config whose diff_ids do not pair with its manifest item's layers.
    #[error("{config} lists {diff_ids} diff_ids for {layers} layers")]
    DiffIdCount {
        /// The config's name.
        config: String,
        /// How many diff_ids it lists.
        diff_ids: usize,
        /// How many layers the manifest item lists.
        layers: usize,
    },
    /// A layer that two configs give different diff_ids.
    #[error("layer {layer:?} has two different diff_ids (in {config} and another config)")]
    TwoDiffIds {
        /// The layer.
        layer: String,
        /// The second config.
        config: String,
    },
}

/// Options.
#[derive(Clone, Debug)]
pub struct Options {
    /// mtime of every output entry (`SOURCE_DATE_EPOCH`).
    pub mtime: i64,
    /// Output compression; `None` means "like the last input".
    pub compress: Option<Compression>,
    /// Compression level; `None` is the format's default.
    pub level: Option<i32>,
    /// Bytes of memory the decompressed inputs and the gzip blocks compressed ahead may keep
    /// (see [`DEFAULT_MEMORY`]); past it they go to unnamed files beside OUT.
    pub memory: u64,
}

/// The default of [`Options::memory`]: 1 GiB, enough to keep most images (decompressed,
/// with their large members' gzip blocks) off the disk.
pub const DEFAULT_MEMORY: u64 = 1 << 30;

/// Merges `inputs` into `out`.
pub fn merge(out: &Path, inputs: &[PathBuf], opts: &Options) -> Result<(), Error> {
    let out_err = |source| Error::Output {
        out: out.to_path_buf(),
        source,
    };
    // OUT is checked, and its temporary created, before any work.
    let file = AtomicFile::create(out).map_err(out_err)?;
    let mut index = Index::new(out, opts.memory);
    // A gzip output (asked for, or the last input's compression) is compressed partly while
    // the inputs are read.
    let predicted = opts
        .compress
        .or_else(|| inputs.last().and_then(|p| index::peek_compression(p)));
    if predicted == Some(Compression::Gzip) {
        let level = opts
            .level
            .unwrap_or_else(|| Compression::Gzip.default_level());
        // The inputs' own deflate data is reused only at the default level: a level asked
        // for is one the whole output is compressed at.
        index.read_ahead(level, opts.level.is_none())?;
    }
    for input in inputs {
        index.add(input)?;
    }
    index.end_read_ahead()?;
    index.check_links()?;
    let generated = json::merge(index.inputs.iter().map(|i| (i.path.as_path(), &i.json)))?;
    for (name, bytes) in generated {
        // The inputs' own JSON members were taken out of the tree: these names are free.
        index
            .tree
            .add(0, &[name], Kind::Generated(bytes), 0o644)
            .map_err(|source| Error::Tree {
                input: out.to_path_buf(),
                source,
            })?;
    }
    let compression = opts.compress.unwrap_or_else(|| {
        index
            .inputs
            .last()
            .map_or(Compression::None, |i| i.compression)
    });
    if let Some(level) = opts.level {
        compression.check_level(level).map_err(Error::Level)?;
    }
    let format = write::Format {
        compression,
        level: opts.level.unwrap_or_else(|| compression.default_level()),
        mtime: opts.mtime,
    };
    let digests = digests::Digests::of(&index)?;
    let written = write::write(file, &index, &digests, &format, out);
    // An input rewritten while merging explains a wrong digest or a short read best.
    index.check_unchanged()?;
    let file = written?;
    file.commit().map_err(out_err)
}
