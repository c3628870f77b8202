//! `--format registry`: the image pushed straight to a registry over the OCI distribution API,
//! as an OCI image manifest, without an archive on the way.
//!
//! For each layer (base layers, store layers, the customisation layer) the push:
//! - knows its diff_id without compressing it: the base config's, `store_layer_infos` or a
//!   hashing pass over the store layers (in parallel; skipped when the cache holds nothing for
//!   the compression, since no blob can then be looked up), the customisation layer's `checksum`;
//! - looks its blob's digest up in the local [`cache`] (or, uncompressed, takes the diff_id) and
//!   asks the registry for it (`HEAD`, unless the tag's current manifest lists it: [`tagged`]):
//!   a blob the registry has is skipped, unread;
//! - otherwise uploads it streamed (`POST`, one chunked `PATCH`, `PUT ?digest=`), compressed on
//!   the fly with the digests computed on the way (`upload`), and records it in the cache.
//!
//! Then the config blob, then the manifest under the tag: the registry checks that every blob
//! the manifest names is there, and the tag is the last thing written, so a push that fails
//! (unreachable registry, refused credentials, a 5xx that outlasts the retries, a full disk, a
//! layer that changed) exits 1 naming the step and never leaves the tag on a partial image.
//! Blobs uploaded before the failure stay in the registry, unreferenced, and are skipped by
//! the next push.

pub mod auth;
pub mod cache;
pub mod client;
pub mod pipe;
pub mod reference;
pub mod tagged;
mod upload;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use dockertools_common::compress::Compression;
use dockertools_common::hash::{sha256_hex, HashingWriter};
use rayon::prelude::*;

use crate::oci::{self, LayerCompression, Plan, Source};
use crate::prepare::Prepared;
use crate::{layer, Error};
use auth::AuthFileError;
use client::Client;
pub use reference::{Reference, ReferenceError};

/// Why a push failed at the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached, or the connection broke (after the retries).
    #[error("{}: {url}: {detail}", if *.reached { "the connection to the registry failed" } else { "cannot reach the registry" })]
    Unreachable {
        /// The request.
        url: String,
        /// Whether a connection was made (and then failed).
        reached: bool,
        /// The transport error.
        detail: String,
    },
    /// A 401 or 403.
    #[error("{registry}: access denied ({status}) {whose}: {detail}")]
    Denied {
        /// The registry.
        registry: String,
        /// 401 or 403.
        status: u16,
        /// Whose credentials were refused.
        whose: String,
        /// The registry's words.
        detail: String,
    },
    /// Another unexpected answer (after the retries, for a 5xx).
    #[error("{registry}: {what}: the registry answered {status}: {detail}")]
    Status {
        /// The registry.
        registry: String,
        /// The step.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's words.
        detail: String,
    },
    /// The bearer token could not be had.
    #[error("token realm {realm}: {why}")]
    Token {
        /// The realm.
        realm: String,
        /// Why.
        why: String,
    },
    /// An auth file is unusable.
    #[error(transparent)]
    AuthFile(#[from] AuthFileError),
    /// An upload answer without a `Location`.
    #[error("{registry}: {what}: the answer has no Location header")]
    NoLocation {
        /// The registry.
        registry: String,
        /// The step.
        what: String,
    },
    /// The registry names the manifest by another digest than ours.
    #[error("{registry}: the registry stored the manifest as {found}, not as {expected}")]
    ManifestDigest {
        /// The registry.
        registry: String,
        /// Ours.
        expected: String,
        /// The registry's.
        found: String,
    },
}

/// Where and how to push.
pub struct PushOptions {
    /// The destination.
    pub dest: Reference,
    /// The layers' compression.
    pub comp: LayerCompression,
    /// Verify the registry's TLS certificate (and never fall back to plain HTTP).
    pub tls_verify: bool,
    /// Auth files, in the order they are read.
    pub auth_files: Vec<PathBuf>,
    /// The cache folder (`$XDG_CACHE_HOME/dockertools-rs`), if any.
    pub cache_dir: Option<PathBuf>,
}

/// What a push did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest's digest (`sha256:…`).
    pub digest: String,
    /// Layer blobs uploaded.
    pub uploaded: usize,
    /// Layer blobs the registry had.
    pub skipped: usize,
}

fn say(progress: &mut dyn Write, line: &str) {
    // Progress is best effort: a closed stderr must not stop the push.
    let _ = writeln!(progress, "{line}");
}

/// Each layer's diff_id (hex, lowercase), without compressing anything: store layers from
/// `store_layer_infos`, or hashed in parallel when `hash_store`; otherwise `None` for them,
/// and their upload computes it.
fn diff_ids(
    plan: &Plan<'_>,
    hash_store: bool,
    progress: &mut dyn Write,
) -> Result<Vec<Option<String>>, Error> {
    let prep = plan.prep;
    let base = prep.base.iter().flat_map(|b| b.layers.iter());
    let mut ids: Vec<Option<String>> = base
        .map(|l| Some(l.checksum.to_ascii_lowercase()))
        .collect();
    match &prep.conf.store_layer_infos {
        Some(infos) => ids.extend(infos.iter().map(|i| Some(i.diff_id.clone()))),
        None if !hash_store => ids.extend(prep.layers.iter().map(|_| None)),
        None => {
            say(
                progress,
                &format!("Hashing {} store layers...", prep.layers.len()),
            );
            let offset = ids.len();
            let hashed = prep
                .layers
                .par_iter()
                .enumerate()
                .map(|(i, l)| {
                    let sink = HashingWriter::new(std::io::sink());
                    layer::write_layer(&l.paths, &prep.owner, sink)
                        .map(|w| Some(w.finish().1))
                        .map_err(|source| Error::Layer {
                            layer: offset + i + 1,
                            source,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            ids.extend(hashed);
        }
    }
    ids.push(Some(prep.custom.checksum.to_ascii_lowercase()));
    Ok(ids)
}

/// Layers pushed at once: small layers cost a few round trips each, which overlap.
pub const PARALLEL_LAYERS: usize = 4;

/// Pushes the image of `prep` to `opts.dest`; progress lines go to `progress`.
pub fn push(
    prep: &Prepared,
    opts: &PushOptions,
    progress: &mut (dyn Write + Send),
) -> Result<Pushed, Error> {
    let creds =
        auth::find_credentials(&opts.auth_files, &opts.dest).map_err(RegistryError::from)?;
    // Opening the cache compresses a sample for its fingerprint (some 20 ms): meanwhile, the
    // registry is reached and the tag's manifest fetched.
    let (opened, connected) = std::thread::scope(|s| {
        let opened = s.spawn(|| cache::BlobCache::open(opts.cache_dir.as_deref(), opts.comp));
        let connected = connect(opts, creds);
        (opened.join(), connected)
    });
    let (client, tagged) = connected?;
    let plan = Plan::new(prep, opts.comp);
    let cache = usable_cache(opened, opts, progress)?;
    // A diff_id only serves to look its blob up: uncompressed, the blob is the diff_id; else
    // in the cache. A cache with nothing for this compression cannot know any blob, so every
    // store layer is uploaded, and hashing it ahead would read it twice for nothing.
    let hash_store = uncompressed(opts.comp) || cache.knows(opts.comp);
    let ids = diff_ids(&plan, hash_store, progress)?;
    let layers = upload::Layers {
        client: &client,
        plan: &plan,
        tagged: &tagged,
        cache: Mutex::new(cache),
        progress: Mutex::new(progress),
    };
    let results = layers.push_all(&ids);
    let upload::Layers {
        cache, progress, ..
    } = layers;
    let (cache, progress) = (
        cache.into_inner().unwrap_or_else(PoisonError::into_inner),
        progress
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
    );
    // What the uploads learnt is kept even when a later step fails.
    save_cache(&cache, progress);
    let mut pushed = Pushed::default();
    let blobs = tally(results, &mut pushed)?;
    let docs = plan.documents(&blobs)?;
    let config_digest = sha256_hex(&docs.config);
    upload::push_bytes(&client, &tagged, &config_digest, &docs.config)?;
    say(progress, &format!("config sha256:{config_digest}: pushed"));
    pushed.digest = upload::put_manifest(&client, &docs.manifest)?;
    let done = format!(
        "Pushed {} ({}), {} layers uploaded, {} skipped",
        opts.dest.display(),
        pushed.digest,
        pushed.uploaded,
        pushed.skipped
    );
    say(progress, &done);
    Ok(pushed)
}

/// The opened blob cache, or (with a warning) an empty one that is never written when the
/// cache could not be opened.
fn usable_cache(
    opened: std::thread::Result<io::Result<cache::BlobCache>>,
    opts: &PushOptions,
    progress: &mut (dyn Write + Send),
) -> Result<cache::BlobCache, Error> {
    let why = match opened {
        Ok(Ok(c)) => return Ok(c),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "its reader panicked".into(),
    };
    say(progress, &format!("warning: blob cache not used: {why}"));
    cache::BlobCache::open(None, opts.comp).map_err(Error::Write)
}

/// Writes the cache back; a failure only costs future uploads, so it is a warning.
fn save_cache(cache: &cache::BlobCache, progress: &mut (dyn Write + Send)) {
    if let Err(e) = cache.save() {
        let file = cache
            .file()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        say(
            progress,
            &format!("warning: blob cache {file} not written: {e}"),
        );
    }
}

/// The layers' blobs in order, counting the uploaded and skipped ones; the first failed layer
/// is the error.
fn tally(results: Vec<upload::LayerResult>, pushed: &mut Pushed) -> Result<Vec<oci::Blob>, Error> {
    let mut blobs = Vec::with_capacity(results.len());
    for result in results {
        let (blob, uploaded) = result?;
        match uploaded {
            true => pushed.uploaded += 1,
            false => pushed.skipped += 1,
        }
        blobs.push(blob);
    }
    Ok(blobs)
}

/// The client of the destination, and the blobs its tag lists.
fn connect(
    opts: &PushOptions,
    creds: Option<auth::Credentials>,
) -> Result<(Client, tagged::Tagged), Error> {
    let client = Client::connect(&opts.dest, opts.tls_verify, creds, opts.auth_files.clone())?;
    let tagged = tagged::tagged_blobs(&client)?;
    Ok((client, tagged))
}

/// A layer's short name in progress lines: `sha256:` and 12 hex digits.
fn short(digest: &str) -> String {
    format!("sha256:{}", digest.get(..12).unwrap_or(digest))
}

/// True for store layers (whose diff_id mismatches are this module's to report; the base and
/// customisation layers are checked when the config is written).
fn is_store(plan: &Plan<'_>, i: usize) -> bool {
    matches!(plan.sources.get(i), Some(Source::Store(_)))
}

/// The compression of blobs whose digest is their diff_id.
fn uncompressed(comp: LayerCompression) -> bool {
    comp.kind == Compression::None
}
