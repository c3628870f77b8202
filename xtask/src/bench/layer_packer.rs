//! layer-packer on s300 against the mkPureLayer pipeline (`tar | tee | tarsum`) and GNU tar.

use anyhow::Result;

use super::{best_of, sh, sha_floor, size_of, Ctx};

const TAR_FLAGS: &str = "--sort=name --hard-dereference --mtime=@315532800 --owner=0 --group=0";

/// Adds the layer-packer rows.
pub fn bench(ctx: &mut Ctx) -> Result<()> {
    let s300 = ctx.store("s300").display().to_string();
    let t_plain = best_of(3, || {
        sh(&format!("tar -C {s300} {TAR_FLAGS} -cf - . > /dev/null"))
    })?;
    ctx.push(
        "tar -cf - . > /dev/null (s300; GNU tar skips reading data for /dev/null)",
        t_plain,
        None,
        String::new(),
    );
    let t_cat = best_of(3, || {
        sh(&format!(
            "tar -C {s300} {TAR_FLAGS} -cf - . | cat > /dev/null"
        ))
    })?;
    ctx.push(
        "tar -cf - . | cat > /dev/null (s300, data read)",
        t_cat,
        None,
        String::new(),
    );
    let layer = ctx.w("pipe-layer.tar");
    let tarsum = ctx.tool("tarsum");
    let t_pipe = best_of(3, || {
        sh(&format!(
            "tar -C {s300} {TAR_FLAGS} -cf - . | tee {layer} | {tarsum} > /dev/null"
        ))
    })?;
    ctx.push(
        "tar | tee layer.tar | tarsum (s300; our tarsum stands in for Go's)",
        t_pipe,
        None,
        String::new(),
    );
    // The hashing layer-packer cannot avoid: SHA-256 of the whole tar plus SHA-256 of every
    // file (the tarsum), about twice the tar's bytes; on 2 cores at best half that time.
    let t_sha2 = best_of(3, || {
        sha_floor(layer.as_ref())?;
        sha_floor(layer.as_ref())
    })?;
    ctx.push(
        "two SHA-256 passes over the s300 layer.tar (layer-packer's hashing work)",
        t_sha2,
        Some(2 * size_of(&layer)?),
        format!("{:.3} s when spread over 2 cores", t_sha2 / 2.0),
    );
    let out = ctx.w("lp");
    let script = format!(
        "rm -rf {out}; {} pure --out {out} {s300}",
        ctx.tool("layer-packer")
    );
    let out_tar = format!("{out}/layer.tar");
    let t_lp = ctx.scaled("layer-packer pure (s300)", 3, &script, Some(&out_tar))?;
    ctx.push(
        "layer-packer pure against the pipeline and the floors",
        t_lp,
        None,
        format!(
            "{:.1}x faster than the pipeline; {:.2}x tar|cat, {:.2}x tar>/dev/null, {:.2}x the hashing floor on 2 cores",
            t_pipe / t_lp,
            t_lp / t_cat,
            t_lp / t_plain,
            t_lp / (t_sha2 / 2.0)
        ),
    );
    Ok(())
}
