//! The docker-archive stream, as `stream_layered_image.py` writes it: base layers copied from
//! `from_image`, each store layer as `<sha256>/layer.tar`, the customisation layer, the config
//! and `manifest.json`, in Python `tarfile`'s PAX format.
//!
//! A member is named by its layer's digest before its bytes are written, so every store layer is
//! hashed first: all of them start at once on rayon's threads (each layer tar written into a
//! hashing sink), and each is streamed as soon as its digest is known, in order.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use dockertools_common::compress::Compressor;
use dockertools_common::hash::{sha256_hex, HashingWriter};
use dockertools_common::py::{bytes_code_points, repr_str_list, str_code_points};
use dockertools_common::tar::writer::{Data, DataError, TarWriter};
use dockertools_common::tar::{self as tarfmt, Dialect, Header};

use crate::conf::StoreLayerInfo;
use crate::image::{self, LayerInfo};
use crate::layer::{self, LayerError, LayerOwner};
use crate::prepare::{CustomisationError, Prepared, StoreLayer};
use crate::store::StorePath;
use crate::tee_hash::TeeHash;
use crate::{Changed, Error};

/// One layer's (sha256, size), once known, and the signal that it is.
type DigestSlot = (Mutex<Option<Result<(String, u64), LayerError>>>, Condvar);

/// Layer digests computed by rayon tasks (one per layer, started in layer order), each
/// published as soon as it is known.
struct Digests {
    slots: Arc<Vec<DigestSlot>>,
}

impl Digests {
    fn start(layers: Vec<Vec<StorePath>>, owner: &LayerOwner) -> Digests {
        let slots: Vec<DigestSlot> = layers
            .iter()
            .map(|_| (Mutex::new(None), Condvar::new()))
            .collect();
        let slots = Arc::new(slots);
        for (i, paths) in layers.into_iter().enumerate() {
            let (slots, owner) = (slots.clone(), owner.clone());
            rayon::spawn_fifo(move || {
                let sink = HashingWriter::new(io::sink());
                let result = layer::write_layer(&paths, &owner, sink).map(|w| {
                    let (_, hex, size) = w.finish();
                    (hex, size)
                });
                if let Some((lock, ready)) = slots.get(i) {
                    *lock.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
                    ready.notify_all();
                }
            });
        }
        Digests { slots }
    }
}

/// Waits for one layer's digest and size.
fn wait((lock, ready): &DigestSlot) -> Result<(String, u64), LayerError> {
    let mut slot = lock.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(result) = slot.take() {
            return result;
        }
        slot = ready.wait(slot).unwrap_or_else(PoisonError::into_inner);
    }
}

/// The header `tarfile.TarInfo(name)` gets for the image's own members.
fn member_header(name: &[u8], size: u64, mtime: i64) -> Header {
    Header {
        name: name.to_vec(),
        mode: 0o644,
        size,
        mtime,
        typeflag: tarfmt::REGULAR,
        ..Header::default()
    }
}

/// The archive being written, the layers written so far, and where progress lines go.
struct Archive<'p, W: Write> {
    tar: TarWriter<W>,
    layers: Vec<LayerInfo>,
    progress: &'p mut dyn Write,
}

impl<W: Write> Archive<'_, W> {
    /// Progress is best effort: a closed stderr must not stop the image.
    fn say(&mut self, line: &str) {
        let _ = writeln!(self.progress, "{line}");
    }

    fn bytes_member(&mut self, name: &[u8], bytes: &[u8], mtime: i64) -> Result<(), Error> {
        let h = member_header(name, bytes.len() as u64, mtime);
        self.tar
            .append(&h, Data::Bytes(bytes))
            .map_err(Error::member(name))
    }
}

/// Writes the image of `prep` to `out`, finishes the compression and flushes, and only then
/// prints `Done.`; returns the inner writer.
///
/// With `store_layer_infos` in the conf, the layers are not hashed ahead: each is streamed once
/// under the name its info gives, hashed on the way (on a thread of its own, [`TeeHash`]), and
/// checked against its info at its end.
pub fn write<W: Write>(
    prep: &Prepared,
    out: Compressor<W>,
    progress: &mut dyn Write,
) -> Result<W, Error> {
    let digests = match &prep.conf.store_layer_infos {
        Some(_) => None,
        // Hash every store layer in the background, in order, while earlier ones are streamed.
        None => Some(Digests::start(
            prep.layers.iter().map(|l| l.paths.clone()).collect(),
            &prep.owner,
        )),
    };
    let mut archive = Archive {
        tar: TarWriter::new(out, Dialect::Pax),
        layers: Vec::new(),
        progress,
    };
    base_layers(prep, &mut archive)?;
    for (i, layer) in prep.layers.iter().enumerate() {
        let expected = match (&digests, &prep.conf.store_layer_infos) {
            (_, Some(infos)) => infos.get(i).map(Expected::Known),
            (Some(d), None) => d.slots.get(i).map(Expected::Pending),
            (None, None) => None,
        };
        if let Some(expected) = expected {
            store_layer(prep, layer, expected, &mut archive)?;
        }
    }
    customisation_layer(prep, &mut archive)?;
    archive.say("Adding manifests...");
    let config = image::config_json(&prep.conf, prep.config.clone(), &archive.layers);
    let config_name = format!("{}.json", sha256_hex(&config));
    let manifest = image::manifest_json(&config_name, &prep.repo_tag, &archive.layers);
    let mtime = prep.conf.mtime;
    archive.bytes_member(config_name.as_bytes(), &config, mtime)?;
    archive.bytes_member(b"manifest.json", &manifest, mtime)?;
    let compressor = archive.tar.finish().map_err(Error::Write)?;
    let mut inner = compressor.finish().map_err(Error::Write)?;
    inner.flush().map_err(Error::Write)?;
    let _ = writeln!(archive.progress, "Done.");
    Ok(inner)
}

fn base_layers<W: Write>(prep: &Prepared, archive: &mut Archive<'_, W>) -> Result<(), Error> {
    let Some(base) = &prep.base else {
        archive.say("No 'fromImage' provided");
        return Ok(());
    };
    let Archive { tar, progress, .. } = archive;
    base.copy_layers(tar, |num, member| {
        let member = String::from_utf8_lossy(member);
        let _ = writeln!(progress, "Adding base layer {num} from {member}");
    })?;
    archive.layers.extend(base.layers.iter().map(|l| LayerInfo {
        checksum: l.checksum.clone(),
        path: l.member.clone(),
        comment_paths: vec![bytes_code_points(&l.member)],
    }));
    Ok(())
}

/// Where a store layer's digest and size come from.
enum Expected<'a> {
    /// The conf's `store_layer_infos` entry: checked while the layer streams.
    Known(&'a StoreLayerInfo),
    /// The background hashing pass.
    Pending(&'a DigestSlot),
}

fn store_layer<W: Write>(
    prep: &Prepared,
    layer: &StoreLayer,
    expected: Expected<'_>,
    archive: &mut Archive<'_, W>,
) -> Result<(), Error> {
    let num = archive.layers.len() + 1;
    let layer_err = |source| Error::Layer { layer: num, source };
    let (checksum, size) = match expected {
        Expected::Known(info) => (info.diff_id.clone(), info.size),
        Expected::Pending(slot) => wait(slot).map_err(layer_err)?,
    };
    let list: Vec<Vec<u32>> = layer.given.iter().map(|p| str_code_points(p)).collect();
    archive.say(&format!(
        "Creating layer {num} from paths: {}",
        repr_str_list(&list)
    ));
    let name = format!("{checksum}/layer.tar").into_bytes();
    let known = matches!(expected, Expected::Known(_));
    let mismatch = |source| match known {
        true => Error::InfoMismatch { layer: num, source },
        false => Error::Changed { layer: num, source },
    };
    let h = member_header(&name, size, prep.conf.mtime);
    let mut w = archive
        .tar
        .append_writer(&h)
        .map_err(Error::member(&name))?;
    let found = stream_layer(prep, layer, &mut w, known).map_err(|source| match source {
        LayerError::Write(e) => Error::Write(e),
        LayerError::Data {
            source: DataError::Write(e),
            ..
        } => Error::Write(e),
        source => layer_err(source),
    })?;
    // Bytes past the declared size were counted, not written: the member never overflows.
    w.finish().map_err(|source| match source {
        DataError::Write(e) => Error::Write(e),
        source => mismatch(Changed::Size(source)),
    })?;
    if let Some(found) = found.filter(|f| *f != checksum) {
        return Err(mismatch(Changed::Digest {
            before: checksum,
            after: found,
        }));
    }
    archive.layers.push(LayerInfo {
        checksum,
        path: name,
        comment_paths: list,
    });
    Ok(())
}

/// Writes the layer's tar to `out`; with `hash`, returns its sha256.
fn stream_layer(
    prep: &Prepared,
    layer: &StoreLayer,
    out: &mut dyn Write,
    hash: bool,
) -> Result<Option<String>, LayerError> {
    if !hash {
        layer::write_layer(&layer.paths, &prep.owner, out)?;
        return Ok(None);
    }
    // Hashed on another thread, so that checking the layer costs this thread no time.
    let tee = layer::write_layer(&layer.paths, &prep.owner, TeeHash::new(out))?;
    let (hex, _) = tee.finish().map_err(LayerError::Write)?;
    Ok(Some(hex))
}

fn customisation_layer<W: Write>(
    prep: &Prepared,
    archive: &mut Archive<'_, W>,
) -> Result<(), Error> {
    let custom = &prep.custom;
    archive.say(&format!(
        "Creating layer {} with customisation...",
        archive.layers.len() + 1
    ));
    let mut file = std::fs::File::open(&custom.path).map_err(|source| {
        Error::Customisation(CustomisationError::Io {
            path: custom.path.clone(),
            source,
        })
    })?;
    let data = Data::Reader(&mut file);
    archive
        .tar
        .append(&custom.header, data)
        .map_err(|source| match source {
            DataError::Write(e) => Error::Write(e),
            source => Error::Customisation(CustomisationError::Data {
                path: custom.path.clone(),
                source,
            }),
        })?;
    archive.layers.push(LayerInfo {
        checksum: custom.checksum.clone(),
        path: custom.header.name.clone(),
        comment_paths: vec![str_code_points(&prep.conf.customisation_layer)],
    });
    Ok(())
}
