//! `--layer-info N`: the diff_id and size of store layer N, exactly as the image stream would
//! write its tar, so that a build system can compute each layer's digest once, in a step of its
//! own, and hand the results to the stream in the conf's `store_layer_infos`.
//!
//! Only the keys a layer's tar depends on are read ([`LayerSettings`]: `store_dir`,
//! `store_layers`, the owner keys and `mtime`, or `created` without it), so a conf holding just
//! those (and the one layer) gives the same info as the whole image's conf.

use std::io;
use std::path::Path;

use dockertools_common::hash::HashingWriter;

use crate::conf::{LayerSettings, StoreLayerInfo};
use crate::layer::{self, LayerOwner, Owner};
use crate::store::Store;
use crate::{DateTime, Error};

/// The store layers' owner and mtime, as every layer entry gets them.
pub fn layer_owner(settings: &LayerSettings) -> LayerOwner {
    let (uid, gid) = settings.ids();
    let (uname, gname) = settings.names();
    LayerOwner {
        owner: Owner {
            mtime: settings.mtime,
            uid,
            gid,
            uname: uname.as_bytes().to_vec(),
            gname: gname.as_bytes().to_vec(),
        },
        nix_root_mode: settings.nix_root_mode(),
    }
}

/// Hashes store layer `n` (1-based, the `n`th list of `store_layers`) of the conf in
/// `conf_bytes`; `now` is what `"now"` means.
pub fn layer_info(
    conf_path: &Path,
    conf_bytes: &[u8],
    n: usize,
    now: DateTime,
) -> Result<StoreLayerInfo, Error> {
    let settings = LayerSettings::parse(conf_bytes, now).map_err(|source| Error::Conf {
        path: conf_path.to_path_buf(),
        source,
    })?;
    let count = settings.store_layers.len();
    let given = n
        .checked_sub(1)
        .and_then(|i| settings.store_layers.get(i))
        .ok_or(Error::NoSuchLayer { n, count })?;
    let store = Store::new(&settings.store_dir);
    let paths = given
        .iter()
        .map(|p| store.check(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::StorePath { layer: n, source })?;
    let layer_err = |source| Error::Layer { layer: n, source };
    let sink = HashingWriter::new(io::sink());
    let sink = layer::write_layer(&paths, &layer_owner(&settings), sink).map_err(layer_err)?;
    let (_, diff_id, size) = sink.finish();
    Ok(StoreLayerInfo { diff_id, size })
}
