//! OCI image layout output (`--format oci-archive` on stdout, `--format oci-dir` into a folder):
//! `oci-layout`, `index.json` (the manifest descriptor carries
//! `org.opencontainers.image.ref.name`), and `blobs/sha256/` with the config, the manifest and
//! the layers, uncompressed, gzip or zstd. The config is the same image JSON as in the
//! docker-archive, so `rootfs.diff_ids` are always the uncompressed digests. With `from_image`,
//! the base image's layers come first, read from its archive and checked against its diff_ids.
//!
//! A tar member is named by its digest before its bytes are written, so oci-archive hashes
//! (and compresses) every layer once to learn its digest and size, then streams it again and
//! checks that it did not change; oci-dir writes each blob once, under a temporary name inside
//! an [`AtomicDir`] that is renamed into place only when complete. Memory stays flat either way.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use dockertools_common::atomic::AtomicDir;
use dockertools_common::compress::{Compression, Compressor};
use dockertools_common::hash::{sha256_hex, HashingWriter};
use dockertools_common::py::{bytes_code_points, str_code_points};
use dockertools_common::tar::writer::{Data, DataError, TarWriter};
use dockertools_common::tar::{self as tarfmt, Dialect, Header};
use rayon::prelude::*;
use serde_json::json;

use crate::base::{BaseImage, CopyError};
use crate::image::{self, LayerInfo};
use crate::layer::{self, LayerError};
use crate::prepare::{CustomisationError, Prepared, StoreLayer};
use crate::{Changed, Error};

/// Layer blob compression and level.
#[derive(Clone, Copy, Debug)]
pub struct LayerCompression {
    /// Format.
    pub kind: Compression,
    /// Level.
    pub level: i32,
}

impl LayerCompression {
    pub(crate) fn media_type(self) -> &'static str {
        match self.kind {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Where a layer's bytes come from.
pub(crate) enum Source<'a> {
    /// Layer `i` of the base image.
    Base(&'a BaseImage, usize),
    Store(&'a StoreLayer),
    Customisation(&'a Path),
}

/// A layer blob: the uncompressed digest, the blob's digest and its size.
#[derive(Clone, Debug)]
pub(crate) struct Blob {
    pub(crate) diff_id: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
}

/// Why writing a blob failed: reading its layer, or writing the blob.
pub(crate) enum BlobError {
    Source(Error),
    Write(io::Error),
}

/// The image as an OCI layout: the prepared conf, its layer sources in image order, and how
/// their blobs are compressed.
pub(crate) struct Plan<'a> {
    pub(crate) prep: &'a Prepared,
    pub(crate) sources: Vec<Source<'a>>,
    pub(crate) comp: LayerCompression,
}

/// The layout's JSON: the config, the manifest and `index.json`.
pub(crate) struct Documents {
    pub(crate) config: Vec<u8>,
    pub(crate) manifest: Vec<u8>,
    pub(crate) index: Vec<u8>,
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

impl<'a> Plan<'a> {
    pub(crate) fn new(prep: &'a Prepared, comp: LayerCompression) -> Self {
        let mut sources: Vec<Source<'a>> = match &prep.base {
            Some(b) => (0..b.layers.len()).map(|i| Source::Base(b, i)).collect(),
            None => Vec::new(),
        };
        sources.extend(prep.layers.iter().map(Source::Store));
        sources.push(Source::Customisation(&prep.custom.path));
        Plan {
            prep,
            sources,
            comp,
        }
    }

    /// Writes layer `i`'s bytes to `out`.
    fn emit(&self, i: usize, out: &mut dyn Write) -> Result<(), BlobError> {
        let layer_err = |source| {
            BlobError::Source(Error::Layer {
                layer: i + 1,
                source,
            })
        };
        match self.sources.get(i) {
            Some(Source::Base(base, n)) => base.layer_to(*n, out).map_err(|e| match e {
                CopyError::Write(e) => BlobError::Write(e),
                CopyError::Base(e) => BlobError::Source(Error::Base(e)),
            }),
            Some(Source::Store(layer)) => {
                match layer::write_layer(&layer.paths, &self.prep.owner, out) {
                    Ok(_) => Ok(()),
                    Err(LayerError::Write(e))
                    | Err(LayerError::Data {
                        source: DataError::Write(e),
                        ..
                    }) => Err(BlobError::Write(e)),
                    Err(e) => Err(layer_err(e)),
                }
            }
            Some(Source::Customisation(path)) => copy_file(path, out),
            None => Ok(()),
        }
    }

    /// Writes the (compressed) blob of layer `i` to `out`, hashing both the layer and the blob.
    pub(crate) fn blob_to<W: Write>(&self, i: usize, out: W) -> Result<(W, Blob), BlobError> {
        let inner = HashingWriter::new(out);
        let compressor =
            Compressor::new(inner, self.comp.kind, self.comp.level).map_err(BlobError::Write)?;
        let mut outer = HashingWriter::new(compressor);
        self.emit(i, &mut outer)?;
        let (compressor, diff_id, _) = outer.finish();
        let inner = compressor.finish().map_err(BlobError::Write)?;
        let (out, digest, size) = inner.finish();
        let blob = Blob {
            diff_id,
            digest,
            size,
        };
        Ok((out, blob))
    }

    /// Hashes every blob (on rayon's threads) without keeping it.
    fn hash_blobs(&self) -> Result<Vec<Blob>, Error> {
        (0..self.sources.len())
            .into_par_iter()
            .map(|i| match self.blob_to(i, io::sink()) {
                Ok((_, blob)) => Ok(blob),
                Err(BlobError::Source(e)) => Err(e),
                Err(BlobError::Write(e)) => Err(Error::Write(e)),
            })
            .collect()
    }

    /// Checks the blobs' diff_ids against the base config and the customisation checksum, and
    /// writes the layout's JSON.
    pub(crate) fn documents(&self, blobs: &[Blob]) -> Result<Documents, Error> {
        let mut infos: Vec<LayerInfo> = Vec::with_capacity(blobs.len());
        for (source, blob) in self.sources.iter().zip(blobs) {
            let comment_paths = match source {
                Source::Base(base, n) => {
                    let Some(layer) = base.layers.get(*n) else {
                        continue;
                    };
                    base.verify(layer, blob.diff_id.clone())?;
                    vec![bytes_code_points(&layer.member)]
                }
                Source::Store(layer) => layer.given.iter().map(|p| str_code_points(p)).collect(),
                Source::Customisation(path) => {
                    self.check_customisation(path, blob)?;
                    vec![str_code_points(&self.prep.conf.customisation_layer)]
                }
            };
            infos.push(LayerInfo {
                checksum: blob.diff_id.clone(),
                path: Vec::new(),
                comment_paths,
            });
        }
        let config = image::config_json(&self.prep.conf, self.prep.config.clone(), &infos);
        let (manifest, index) = self.manifest_and_index(&config, blobs);
        Ok(Documents {
            config,
            manifest,
            index,
        })
    }

    /// The customisation layer's `checksum` file must be its real sha256, or the image is broken.
    fn check_customisation(&self, path: &Path, blob: &Blob) -> Result<(), Error> {
        let expected = &self.prep.custom.checksum;
        if blob.diff_id.eq_ignore_ascii_case(expected) {
            return Ok(());
        }
        Err(Error::Customisation(CustomisationError::Mismatch {
            path: path.to_path_buf(),
            expected: expected.clone(),
            found: blob.diff_id.clone(),
        }))
    }

    fn manifest_and_index(&self, config: &[u8], layers: &[Blob]) -> (Vec<u8>, Vec<u8>) {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{}", sha256_hex(config)),
                "size": config.len(),
            },
            "layers": layers.iter().map(|b| json!({
                "mediaType": self.comp.media_type(),
                "digest": format!("sha256:{}", b.digest),
                "size": b.size,
            })).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", sha256_hex(&manifest)),
                "size": manifest.len(),
                "annotations": { "org.opencontainers.image.ref.name": self.prep.repo_tag },
            }],
        });
        (manifest, serde_json::to_vec(&index).unwrap_or_default())
    }
}

/// Copies a file to `out`, telling read errors (the file's) from write errors (the blob's).
fn copy_file(path: &Path, out: &mut dyn Write) -> Result<(), BlobError> {
    let read_err = |source| {
        BlobError::Source(Error::Customisation(CustomisationError::Io {
            path: path.to_path_buf(),
            source,
        }))
    };
    let mut f = File::open(path).map_err(read_err)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        out.write_all(&buf[..n]).map_err(BlobError::Write)?;
    }
}

fn say(progress: &mut dyn Write, line: &str) {
    // Progress is best effort: a closed stderr must not stop the image.
    let _ = writeln!(progress, "{line}");
}

/// Writes the image of `prep` as an oci-archive to `out`, finishes the compression and flushes,
/// and only then prints `Done.`; returns the inner writer.
pub fn write_archive<W: Write>(
    prep: &Prepared,
    comp: LayerCompression,
    out: Compressor<W>,
    progress: &mut dyn Write,
) -> Result<W, Error> {
    let plan = Plan::new(prep, comp);
    say(
        progress,
        &format!("Hashing {} layers...", plan.sources.len()),
    );
    let blobs = plan.hash_blobs()?;
    let docs = plan.documents(&blobs)?;
    let mut tar = TarWriter::new(out, Dialect::Pax);
    let mtime = prep.conf.mtime;
    bytes_member(&mut tar, "oci-layout", OCI_LAYOUT, mtime)?;
    dir_member(&mut tar, "blobs/", mtime)?;
    dir_member(&mut tar, "blobs/sha256/", mtime)?;
    let config_name = format!("blobs/sha256/{}", sha256_hex(&docs.config));
    bytes_member(&mut tar, &config_name, &docs.config, mtime)?;
    for (i, blob) in blobs.iter().enumerate() {
        say(
            progress,
            &format!("Writing layer {} of {}...", i + 1, blobs.len()),
        );
        stream_blob(&plan, i, blob, &mut tar)?;
    }
    let manifest_name = format!("blobs/sha256/{}", sha256_hex(&docs.manifest));
    bytes_member(&mut tar, &manifest_name, &docs.manifest, mtime)?;
    bytes_member(&mut tar, "index.json", &docs.index, mtime)?;
    let compressor = tar.finish().map_err(Error::Write)?;
    let mut inner = compressor.finish().map_err(Error::Write)?;
    inner.flush().map_err(Error::Write)?;
    say(progress, "Done.");
    Ok(inner)
}

/// Writes layer `i`'s blob as a member named by the digest of its first pass, checking that the
/// second pass gives the same bytes.
fn stream_blob<W: Write>(
    plan: &Plan<'_>,
    i: usize,
    blob: &Blob,
    tar: &mut TarWriter<W>,
) -> Result<(), Error> {
    let name = format!("blobs/sha256/{}", blob.digest);
    let h = member(&name, tarfmt::REGULAR, blob.size, plan.prep.conf.mtime);
    let mut w = tar.append_writer(&h).map_err(Error::member(&h.name))?;
    let (_, again) = plan.blob_to(i, &mut w).map_err(|e| match e {
        BlobError::Source(e) => e,
        BlobError::Write(e) => Error::Write(e),
    })?;
    let changed = |source| Error::Changed {
        layer: i + 1,
        source,
    };
    if again.digest != blob.digest {
        return Err(changed(Changed::Digest {
            before: blob.digest.clone(),
            after: again.digest,
        }));
    }
    w.finish().map_err(|e| changed(Changed::Size(e)))
}

/// The header of a member of the layout (`tarfile.TarInfo` defaults, as the docker-archive's).
fn member(name: &str, typeflag: u8, size: u64, mtime: i64) -> Header {
    let mode = if typeflag == tarfmt::DIR {
        0o755
    } else {
        0o644
    };
    Header {
        name: name.as_bytes().to_vec(),
        mode,
        size,
        mtime,
        typeflag,
        ..Header::default()
    }
}

fn dir_member<W: Write>(tar: &mut TarWriter<W>, name: &str, mtime: i64) -> Result<(), Error> {
    let h = member(name, tarfmt::DIR, 0, mtime);
    tar.append(&h, Data::Empty).map_err(Error::member(&h.name))
}

fn bytes_member<W: Write>(
    tar: &mut TarWriter<W>,
    name: &str,
    bytes: &[u8],
    mtime: i64,
) -> Result<(), Error> {
    let h = member(name, tarfmt::REGULAR, bytes.len() as u64, mtime);
    tar.append(&h, Data::Bytes(bytes))
        .map_err(Error::member(&h.name))
}

/// Writes the image of `prep` as an OCI layout into `dir` (created by the caller before any
/// work, so that an unusable target is refused at once), renames it into place, and only then
/// prints `Done.`.
pub fn write_dir(
    prep: &Prepared,
    comp: LayerCompression,
    dir: AtomicDir,
    progress: &mut dyn Write,
) -> Result<(), Error> {
    let plan = Plan::new(prep, comp);
    let target = dir.target().to_path_buf();
    let out_err = |source| Error::Output {
        path: target.clone(),
        source,
    };
    say(
        progress,
        &format!("Hashing {} layers...", plan.sources.len()),
    );
    let blobs_dir = PathBuf::from("blobs/sha256");
    fs::create_dir(dir.path().join("blobs")).map_err(out_err)?;
    fs::create_dir(dir.path().join(&blobs_dir)).map_err(out_err)?;
    let blobs = (0..plan.sources.len())
        .into_par_iter()
        .map(|i| write_blob(&plan, i, &dir, &blobs_dir))
        .collect::<Result<Vec<_>, _>>()?;
    let docs = plan.documents(&blobs)?;
    for (name, bytes) in [
        (blobs_dir.join(sha256_hex(&docs.config)), &docs.config[..]),
        (
            blobs_dir.join(sha256_hex(&docs.manifest)),
            &docs.manifest[..],
        ),
        (PathBuf::from("index.json"), &docs.index[..]),
        (PathBuf::from("oci-layout"), OCI_LAYOUT),
    ] {
        dir.create_file(&name)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(out_err)?;
    }
    dir.commit().map_err(out_err)?;
    say(progress, "Done.");
    Ok(())
}

/// Writes layer `i`'s blob into the folder under a new temporary name, then renames it to its
/// digest.
fn write_blob(plan: &Plan<'_>, i: usize, dir: &AtomicDir, blobs: &Path) -> Result<Blob, Error> {
    let out_err = |source| Error::Output {
        path: dir.target().to_path_buf(),
        source,
    };
    let tmp = blobs.join(format!("layer-{i}.tmp"));
    let file = dir.create_file(&tmp).map_err(out_err)?;
    let (w, blob) = plan
        .blob_to(i, BufWriter::with_capacity(1 << 20, file))
        .map_err(|e| match e {
            BlobError::Source(e) => e,
            BlobError::Write(e) => out_err(e),
        })?;
    w.into_inner().map_err(|e| out_err(e.into_error()))?;
    let blobs = dir.path().join(blobs);
    fs::rename(
        blobs.join(format!("layer-{i}.tmp")),
        blobs.join(&blob.digest),
    )
    .map_err(out_err)?;
    Ok(blob)
}
