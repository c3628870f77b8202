//! One blob to the registry: asked for first (`HEAD`), uploaded streamed when missing, and the
//! manifest put under the tag.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;

use ureq::http::StatusCode;

use super::cache::{self, BlobCache};
use super::client::{Client, Payload, Request, RETRY_PAUSES};
use super::pipe::pipe;
use super::tagged::Tagged;
use super::{is_store, say, short, uncompressed, RegistryError, PARALLEL_LAYERS};
use crate::oci::{Blob, BlobError, Plan};
use crate::{Changed, Error};

/// A layer's blob and whether it was uploaded (not skipped).
pub type LayerResult = Result<(Blob, bool), Error>;

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// What pushing the layers needs; the cache and the progress lines are shared by the threads
/// that push layers at once.
pub(super) struct Layers<'a, 'p> {
    pub client: &'a Client,
    pub plan: &'a Plan<'p>,
    /// The blobs the tag's current manifest lists: known present without a `HEAD`.
    pub tagged: &'a Tagged,
    pub cache: Mutex<BlobCache>,
    pub progress: Mutex<&'a mut (dyn Write + Send)>,
}

/// The size of blob `digest` in the registry, or `None` when it does not have it: from the
/// tag's manifest when it lists the blob, else asked (`HEAD`).
fn blob_size(client: &Client, tagged: &Tagged, digest: &str) -> Result<Option<u64>, Error> {
    if let Some(&size) = tagged.get(digest) {
        return Ok(Some(size));
    }
    let mut resp = client.send(Request {
        method: "HEAD",
        url: client.repo_path(&format!("blobs/sha256:{digest}")),
        headers: Vec::new(),
        body: Payload::Empty,
    })?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        let what = format!("HEAD blob sha256:{digest}");
        return Err(client.status_error(&what, status, &mut resp).into());
    }
    let size = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    Ok(size)
}

/// `POST /v2/<repo>/blobs/uploads/`: the new upload's location.
fn start_upload(client: &Client) -> Result<String, Error> {
    let what = "start a blob upload";
    let mut resp = client.send(Request {
        method: "POST",
        url: client.repo_path("blobs/uploads/"),
        headers: Vec::new(),
        body: Payload::Empty,
    })?;
    location(client, what, &mut resp)
}

fn location(
    client: &Client,
    what: &str,
    resp: &mut ureq::http::Response<ureq::Body>,
) -> Result<String, Error> {
    let status = resp.status();
    if !status.is_success() {
        return Err(client.status_error(what, status, resp).into());
    }
    let loc = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    loc.ok_or_else(|| {
        RegistryError::NoLocation {
            registry: client.dest().registry.clone(),
            what: what.into(),
        }
        .into()
    })
}

/// `location` with `digest=sha256:…` added to its query.
fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest=sha256%3A{digest}")
}

/// Ends an upload: `PUT location?digest=…` (with `body`, for a monolithic upload).
fn close_upload(client: &Client, location: &str, digest: &str, body: &[u8]) -> Result<(), Error> {
    let mut resp = client.send(Request {
        method: "PUT",
        url: with_digest(location, digest),
        headers: vec![("Content-Type", "application/octet-stream".into())],
        body: Payload::Bytes(body),
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let what = format!("finish the upload of blob sha256:{digest}");
    Err(client.status_error(&what, status, &mut resp).into())
}

/// Pushes a blob held in memory (the config), unless the registry has it.
pub(super) fn push_bytes(
    client: &Client,
    tagged: &Tagged,
    digest: &str,
    bytes: &[u8],
) -> Result<(), Error> {
    if blob_size(client, tagged, digest)?.is_some() {
        return Ok(());
    }
    let loc = start_upload(client)?;
    close_upload(client, &loc, digest, bytes)
}

/// Puts the manifest under the tag; returns its digest (`sha256:…`).
pub(super) fn put_manifest(client: &Client, manifest: &[u8]) -> Result<String, Error> {
    let digest = format!("sha256:{}", dockertools_common::hash::sha256_hex(manifest));
    let tag = client.dest().tag.clone();
    let mut resp = client.send(Request {
        method: "PUT",
        url: client.repo_path(&format!("manifests/{tag}")),
        headers: vec![("Content-Type", MANIFEST_TYPE.into())],
        body: Payload::Bytes(manifest),
    })?;
    let status = resp.status();
    if !status.is_success() {
        let what = format!("PUT manifest {tag}");
        return Err(client.status_error(&what, status, &mut resp).into());
    }
    let theirs = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match theirs {
        Some(found) if found != digest => Err(RegistryError::ManifestDigest {
            registry: client.dest().registry.clone(),
            expected: digest,
            found,
        }
        .into()),
        _ => Ok(digest),
    }
}

/// How one upload attempt failed.
enum Attempt {
    /// The transfer failed (a reset connection, a 5xx): start the blob over.
    Again(Error),
    /// Anything else.
    Fatal(Error),
}

impl Layers<'_, '_> {
    fn say(&self, line: &str) {
        let mut p = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        say(*p, line);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, BlobCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes every layer ([`PARALLEL_LAYERS`] at once), `ids` being their diff_ids (when known
    /// ahead); after a
    /// failure no new layer is started. Returns each layer's result, in order (those never
    /// started are left out).
    pub fn push_all(&self, ids: &[Option<String>]) -> Vec<LayerResult> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let slots: Vec<Mutex<Option<LayerResult>>> = ids.iter().map(|_| Mutex::new(None)).collect();
        thread::scope(|s| {
            for _ in 0..PARALLEL_LAYERS.min(ids.len()) {
                s.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let (Some(id), Some(slot)) = (ids.get(i), slots.get(i)) else {
                            break;
                        };
                        let result = self.push_layer(i, id.as_deref(), ids.len());
                        failed.fetch_or(result.is_err(), Ordering::Relaxed);
                        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
                    }
                });
            }
        });
        slots
            .into_iter()
            .filter_map(|s| s.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect()
    }

    /// Pushes layer `i` (of `count`), whose diff_id is `diff_id` when known ahead; returns its
    /// blob and whether it was uploaded.
    fn push_layer(&self, i: usize, diff_id: Option<&str>, count: usize) -> LayerResult {
        let comp = self.plan.comp;
        let known = diff_id.and_then(|d| match uncompressed(comp) {
            true => Some(cache::Blob {
                digest: d.to_string(),
                size: 0,
            }),
            false => {
                let cache = self.cache();
                cache.get(&cache.key(d, comp)).cloned()
            }
        });
        let name = |d: &str| format!("layer {}/{count} {}", i + 1, short(d));
        if let (Some(k), Some(d)) = (&known, diff_id) {
            if let Some(size) = blob_size(self.client, self.tagged, &k.digest)? {
                let size = if size > 0 { size } else { k.size };
                self.say(&format!(
                    "{}: skipped, the registry has it ({size} bytes)",
                    name(d)
                ));
                let blob = Blob {
                    diff_id: d.to_string(),
                    digest: k.digest.clone(),
                    size,
                };
                return Ok((blob, false));
            }
        }
        let blob = self.upload(i)?;
        if let Some(d) = diff_id.filter(|d| *d != blob.diff_id && is_store(self.plan, i)) {
            return Err(self.changed(i, d, &blob));
        }
        let name = name(&blob.diff_id);
        if let Some(k) = known.filter(|k| k.digest != blob.digest && !uncompressed(comp)) {
            self.say(&format!("warning: {name}: the cache said blob sha256:{}, the upload gave sha256:{}; entry replaced", k.digest, blob.digest));
        }
        let entry = cache::Blob {
            digest: blob.digest.clone(),
            size: blob.size,
        };
        let key = self.cache().key(&blob.diff_id, comp);
        self.cache().put(key, entry);
        let of = match uncompressed(comp) {
            true => String::new(),
            false => format!(" ({} of {})", comp.kind.name(), short(&blob.digest)),
        };
        self.say(&format!("{name}: uploaded {} bytes{of}", blob.size));
        Ok((blob, true))
    }

    /// The error of store layer `i`, whose upload found another diff_id than `before`.
    fn changed(&self, i: usize, before: &str, blob: &Blob) -> Error {
        let source = Changed::Digest {
            before: before.to_string(),
            after: blob.diff_id.clone(),
        };
        match self.plan.prep.conf.store_layer_infos {
            Some(_) => Error::InfoMismatch {
                layer: i + 1,
                source,
            },
            None => Error::Changed {
                layer: i + 1,
                source,
            },
        }
    }

    /// Uploads layer `i`, starting over after a failed transfer.
    fn upload(&self, i: usize) -> Result<Blob, Error> {
        let mut pauses = RETRY_PAUSES.iter();
        loop {
            match self.upload_once(i) {
                Ok(b) => return Ok(b),
                Err(Attempt::Again(e)) => match pauses.next() {
                    Some(p) => thread::sleep(*p),
                    None => return Err(e),
                },
                Err(Attempt::Fatal(e)) => return Err(e),
            }
        }
    }

    /// One upload of layer `i`: the blob is written (read, compressed, hashed) on a thread of
    /// its own into a pipe that the `PATCH` request's body reads.
    fn upload_once(&self, i: usize) -> Result<Blob, Attempt> {
        let client = self.client;
        let loc = start_upload(client).map_err(Attempt::Fatal)?;
        let plan = self.plan;
        let (sent, produced) = thread::scope(|s| {
            let (w, mut r) = pipe();
            let producer = s.spawn(move || -> Result<Blob, BlobError> {
                let (w, blob) = plan.blob_to(i, w)?;
                w.finish().map_err(BlobError::Write)?;
                Ok(blob)
            });
            let sent = client.send(Request {
                method: "PATCH",
                url: loc.clone(),
                headers: vec![("Content-Type", "application/octet-stream".into())],
                body: Payload::Stream(&mut r),
            });
            // The reader goes first, so that a writer still waiting on it stops.
            drop(r);
            (sent, producer.join())
        });
        let blob = match produced {
            Ok(Ok(blob)) => blob,
            Ok(Err(BlobError::Source(e))) => return Err(Attempt::Fatal(e)),
            Ok(Err(BlobError::Write(e))) => match sent {
                Err(sent) => return Err(Attempt::Again(sent.into())),
                Ok(_) => return Err(Attempt::Fatal(Error::Write(e))),
            },
            Err(_) => {
                return Err(Attempt::Fatal(Error::Write(std::io::Error::other(
                    "the blob writer panicked",
                ))))
            }
        };
        let mut resp = sent.map_err(|e| Attempt::Again(e.into()))?;
        let what = format!("upload layer {}", i + 1);
        let status = resp.status();
        if status.is_server_error() {
            return Err(Attempt::Again(
                client.status_error(&what, status, &mut resp).into(),
            ));
        }
        let loc = location(client, &what, &mut resp).map_err(Attempt::Fatal)?;
        close_upload(client, &loc, &blob.digest, &[]).map_err(Attempt::Fatal)?;
        Ok(blob)
    }
}
