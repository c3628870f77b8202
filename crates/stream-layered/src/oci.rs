//! OCI image layout output (`--format oci-archive` on stdout, `--format oci-dir` into a folder):
//! `oci-layout`, `index.json` (the manifest descriptor carries
//! `org.opencontainers.image.ref.name`), and `blobs/sha256/` with the config, the manifest and
//! the layers, uncompressed, gzip or zstd. The config is the same image JSON as in the
//! docker-archive, so `rootfs.diff_ids` are always the uncompressed digests. With `from_image`,
//! the base image's layers come first, read from its archive.
//!
//! A tar member is named by its digest before its bytes are written, so oci-archive hashes
//! (and compresses) every layer once to learn its digest and size, then streams it again;
//! oci-dir writes each blob once under a temporary name. Memory stays flat either way.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use dockertools_common::compress::{Compression, Compressor};
use dockertools_common::hash::{sha256_hex, HashingWriter};
use dockertools_common::tar::writer::TarWriter;
use dockertools_common::tar::{self as tarfmt, pax, Header};
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::base::{BaseError, BaseImage, CopyError};
use crate::layer::{self, LayerError, Owner};
use crate::{image_config, Error, LayerInfo, Prepared};

/// Where the OCI layout goes.
pub enum Target<W: Write> {
    /// An oci-archive tar on this writer.
    Archive(W),
    /// An oci layout folder (written under a temporary name, then renamed).
    Dir(PathBuf),
}

/// Layer blob compression and level.
#[derive(Clone, Copy, Debug)]
pub struct LayerCompression {
    /// Format.
    pub kind: Compression,
    /// Level.
    pub level: i32,
}

impl LayerCompression {
    fn media_type(self) -> &'static str {
        match self.kind {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

enum Source<'a> {
    /// Layer `1` of the base image.
    Base(&'a BaseImage, usize),
    Store(&'a [String]),
    File(&'a Path),
}

#[derive(Clone, Debug)]
struct Blob {
    diff_id: String,
    digest: String,
    size: u64,
}

fn emit(source: &Source<'_>, owner: &Owner, out: &mut dyn Write) -> Result<(), LayerError> {
    match source {
        Source::Base(base, i) => base.layer_to(*i, out).map_err(|e| match e {
            CopyError::Write(e) => LayerError::Write(e),
            CopyError::Base(e) => LayerError::Base(Box::new(e)),
        }),
        Source::Store(paths) => layer::write_layer(paths, owner, out).map(drop),
        Source::File(path) => {
            let mut f = fs::File::open(path).map_err(|source| LayerError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            io::copy(&mut f, out).map(drop).map_err(LayerError::Write)
        }
    }
}

/// Writes the (compressed) blob of `source` to `out`, hashing both the layer and the blob.
fn blob_to<W: Write>(
    source: &Source<'_>,
    owner: &Owner,
    comp: LayerCompression,
    out: W,
) -> Result<(W, Blob), LayerError> {
    let inner = HashingWriter::new(out);
    let compressor = Compressor::new(inner, comp.kind, comp.level).map_err(LayerError::Write)?;
    let mut outer = HashingWriter::new(compressor);
    emit(source, owner, &mut outer)?;
    let (compressor, diff_id, _) = outer.finish();
    let inner = compressor.finish().map_err(LayerError::Write)?;
    let (out, digest, size) = inner.finish();
    Ok((
        out,
        Blob {
            diff_id,
            digest,
            size,
        },
    ))
}

fn manifest_and_index(
    config: &[u8],
    layers: &[Blob],
    comp: LayerCompression,
    tag: &Value,
) -> (Vec<u8>, Vec<u8>) {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256_hex(config)),
            "size": config.len(),
        },
        "layers": layers.iter().map(|b| json!({
            "mediaType": comp.media_type(),
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
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    (manifest, serde_json::to_vec(&index).unwrap_or_default())
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes the image of `prep` as an OCI layout.
pub fn build<W: Write>(
    prep: Prepared,
    comp: LayerCompression,
    target: Target<W>,
    progress: &mut dyn Write,
) -> Result<Option<W>, Error> {
    let Prepared {
        conf,
        repo_tag,
        base,
        config,
        custom,
        owner,
        ..
    } = prep;
    let mut sources: Vec<Source<'_>> = match &base {
        Some(b) => (0..b.layers.len()).map(|i| Source::Base(b, i)).collect(),
        None => Vec::new(),
    };
    sources.extend(conf.store_layers.iter().map(|p| Source::Store(p)));
    sources.push(Source::File(&custom.path));
    let layer_err = |i: usize| {
        move |source| Error::Layer {
            layer: i + 1,
            source,
        }
    };
    let _ = writeln!(progress, "Hashing {} layers...", sources.len());
    match target {
        Target::Dir(dir) => {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "oci".into());
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let temp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
            let result = write_dir(
                &temp,
                &dir,
                &sources,
                &owner,
                comp,
                &conf,
                base.as_ref(),
                config,
                &repo_tag,
                &custom.checksum,
            );
            if result.is_err() {
                let _ = fs::remove_dir_all(&temp);
            }
            result.map(|()| None)
        }
        Target::Archive(out) => {
            let blobs: Vec<Result<Blob, Error>> = sources
                .par_iter()
                .enumerate()
                .map(|(i, s)| {
                    blob_to(s, &owner, comp, io::sink())
                        .map(|(_, b)| b)
                        .map_err(layer_err(i))
                })
                .collect();
            let blobs = blobs.into_iter().collect::<Result<Vec<_>, _>>()?;
            check_customisation(&blobs, &custom.checksum, &custom.path)?;
            let infos = layer_infos(&conf, base.as_ref(), &blobs)?;
            let config_json = image_config(&conf, config, &infos);
            let (manifest, index) = manifest_and_index(&config_json, &blobs, comp, &repo_tag);
            let mut tar = TarWriter::new(out);
            let mut head = Vec::new();
            let mut entry = |tar: &mut TarWriter<W>,
                             name: &str,
                             typeflag: u8,
                             size: u64|
             -> Result<(), Error> {
                head.clear();
                let mode = if typeflag == tarfmt::DIR {
                    0o755
                } else {
                    0o644
                };
                pax::encode(
                    &Header {
                        name: name.as_bytes().to_vec(),
                        mode,
                        size,
                        mtime: conf.mtime,
                        typeflag,
                        ..Header::default()
                    },
                    &mut head,
                );
                tar.raw(&head).map_err(Error::Write)
            };
            entry(
                &mut tar,
                "oci-layout",
                tarfmt::REGULAR,
                OCI_LAYOUT.len() as u64,
            )?;
            tar.data_bytes(OCI_LAYOUT).map_err(Error::Write)?;
            entry(&mut tar, "blobs/", tarfmt::DIR, 0)?;
            entry(&mut tar, "blobs/sha256/", tarfmt::DIR, 0)?;
            entry(
                &mut tar,
                &format!("blobs/sha256/{}", sha256_hex(&config_json)),
                tarfmt::REGULAR,
                config_json.len() as u64,
            )?;
            tar.data_bytes(&config_json).map_err(Error::Write)?;
            for (i, (source, blob)) in sources.iter().zip(&blobs).enumerate() {
                let _ = writeln!(progress, "Writing layer {} of {}...", i + 1, blobs.len());
                entry(
                    &mut tar,
                    &format!("blobs/sha256/{}", blob.digest),
                    tarfmt::REGULAR,
                    blob.size,
                )?;
                let mut w = tar.entry_writer();
                let again = blob_to(source, &owner, comp, &mut w).map_err(|e| match e {
                    LayerError::Write(io) => Error::Write(io),
                    other => layer_err(i)(other),
                })?;
                if again.1.digest != blob.digest {
                    return Err(Error::Config(format!(
                        "layer {} changed while it was streamed",
                        i + 1
                    )));
                }
                w.finish(blob.size).map_err(|source| Error::Changed {
                    layer: i + 1,
                    source,
                })?;
            }
            entry(
                &mut tar,
                &format!("blobs/sha256/{}", sha256_hex(&manifest)),
                tarfmt::REGULAR,
                manifest.len() as u64,
            )?;
            tar.data_bytes(&manifest).map_err(Error::Write)?;
            entry(&mut tar, "index.json", tarfmt::REGULAR, index.len() as u64)?;
            tar.data_bytes(&index).map_err(Error::Write)?;
            let out = tar.finish().map_err(Error::Write)?;
            let _ = writeln!(progress, "Done.");
            Ok(Some(out))
        }
    }
}

/// The config's layer list: base layers (whose bytes must hash to the diff_ids the base
/// config names), store layers, then the customisation layer.
fn layer_infos(
    conf: &crate::Conf,
    base: Option<&BaseImage>,
    blobs: &[Blob],
) -> Result<Vec<LayerInfo>, Error> {
    let mut infos: Vec<LayerInfo> = Vec::new();
    let base_layers = base.map_or(&[][..], |b| &b.layers[..]);
    for (l, b) in base_layers.iter().zip(blobs) {
        if !b.diff_id.eq_ignore_ascii_case(&l.checksum) {
            return Err(Error::Base(BaseError::NotDockerArchive {
                path: base.map(|b| b.path().to_path_buf()).unwrap_or_default(),
                why: format!(
                    "layer {} has sha256 {} but the config's diff_id is {} (a compressed layer member cannot go into an OCI layout as is)",
                    String::from_utf8_lossy(&l.member),
                    b.diff_id,
                    l.checksum
                ),
            }));
        }
        infos.push(LayerInfo {
            checksum: b.diff_id.clone(),
            path: Vec::new(),
            comment_paths: vec![dockertools_common::py::bytes_code_points(&l.member)],
        });
    }
    let blobs = &blobs[base_layers.len().min(blobs.len())..];
    infos.extend(conf.store_layers.iter().zip(blobs).map(|(paths, b)| {
        LayerInfo {
            checksum: b.diff_id.clone(),
            path: Vec::new(),
            comment_paths: paths
                .iter()
                .map(|p| dockertools_common::py::str_code_points(p))
                .collect(),
        }
    }));
    if let Some(b) = blobs.last() {
        infos.push(LayerInfo {
            checksum: b.diff_id.clone(),
            path: Vec::new(),
            comment_paths: vec![dockertools_common::py::str_code_points(
                &conf.customisation_layer,
            )],
        });
    }
    Ok(infos)
}

/// The customisation layer's `checksum` file must be its real sha256, or the image is broken.
fn check_customisation(blobs: &[Blob], checksum: &str, path: &Path) -> Result<(), Error> {
    match blobs.last() {
        Some(b) if !b.diff_id.eq_ignore_ascii_case(checksum) => Err(Error::Customisation {
            path: path.to_path_buf(),
            why: format!(
                "checksum file says {checksum} but layer.tar has sha256 {}",
                b.diff_id
            ),
        }),
        _ => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn write_dir(
    temp: &Path,
    dir: &Path,
    sources: &[Source<'_>],
    owner: &Owner,
    comp: LayerCompression,
    conf: &crate::Conf,
    base: Option<&BaseImage>,
    config: Value,
    tag: &Value,
    checksum: &str,
) -> Result<(), Error> {
    let layer_err = |i: usize| {
        move |source| Error::Layer {
            layer: i + 1,
            source,
        }
    };
    let io_err = |path: PathBuf| {
        move |source| Error::Customisation {
            path,
            why: format!("{source}"),
        }
    };
    let blobs_dir = temp.join("blobs/sha256");
    fs::create_dir_all(&blobs_dir).map_err(io_err(blobs_dir.clone()))?;
    let blobs: Vec<Result<Blob, Error>> = sources
        .par_iter()
        .enumerate()
        .map(|(i, s)| {
            let tmp = blobs_dir.join(format!("layer-{i}.tmp"));
            let file = fs::File::create(&tmp).map_err(io_err(tmp.clone()))?;
            let (w, blob) = blob_to(s, owner, comp, io::BufWriter::with_capacity(1 << 20, file))
                .map_err(layer_err(i))?;
            w.into_inner()
                .map_err(|e| io_err(tmp.clone())(e.into_error()))?;
            fs::rename(&tmp, blobs_dir.join(&blob.digest)).map_err(io_err(tmp.clone()))?;
            Ok(blob)
        })
        .collect();
    let blobs = blobs.into_iter().collect::<Result<Vec<_>, _>>()?;
    if let Some(Source::File(p)) = sources.last() {
        check_customisation(&blobs, checksum, p)?;
    }
    let infos = layer_infos(conf, base, &blobs)?;
    let config_json = image_config(conf, config, &infos);
    let (manifest, index) = manifest_and_index(&config_json, &blobs, comp, tag);
    for (name, bytes) in [
        (blobs_dir.join(sha256_hex(&config_json)), &config_json[..]),
        (blobs_dir.join(sha256_hex(&manifest)), &manifest[..]),
        (temp.join("index.json"), &index[..]),
        (temp.join("oci-layout"), OCI_LAYOUT),
    ] {
        fs::write(&name, bytes).map_err(io_err(name.clone()))?;
    }
    if dir.exists() {
        fs::remove_dir(dir).map_err(io_err(dir.to_path_buf()))?;
    }
    fs::rename(temp, dir).map_err(io_err(dir.to_path_buf()))
}
