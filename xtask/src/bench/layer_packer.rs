//! layer-packer on s300 against the mkPureLayer pipeline (`tar | tee | tarsum`) and GNU tar;
//! with `--baseline DIR`, against DIR's layer-packer too, the two run in turn.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};

use super::{best_of, file_sha256, sh, sha_floor, size_of, Ctx};

const TAR_FLAGS: &str = "--sort=name --hard-dereference --mtime=@315532800 --owner=0 --group=0";

/// The floors: GNU tar alone, the pipeline layer-packer replaces, and the hashing it cannot
/// avoid. Returns (tar > /dev/null, tar | cat, the pipeline, two SHA-256 passes).
fn floors(ctx: &mut Ctx, s300: &str) -> Result<(f64, f64, f64, f64)> {
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
    Ok((t_plain, t_cat, t_pipe, t_sha2))
}

/// Adds the layer-packer rows.
pub fn bench(ctx: &mut Ctx) -> Result<()> {
    let s300 = ctx.store("s300").display().to_string();
    let (t_plain, t_cat, t_pipe, t_sha2) = floors(ctx, &s300)?;
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
    if let Some(dir) = ctx.baseline.clone() {
        against_baseline(ctx, &dir, &s300)?;
    }
    Ok(())
}

/// Times the baseline's layer-packer and the current one in turn, five times each, so that
/// both see the same machine; their layers must be the same bytes.
fn against_baseline(ctx: &mut Ctx, dir: &Path, s300: &str) -> Result<()> {
    let tools = [
        dir.join("layer-packer").display().to_string(),
        ctx.tool("layer-packer"),
    ];
    let mut best = [f64::MAX; 2];
    let mut digests = [String::new(), String::new()];
    for _ in 0..5 {
        for (i, tool) in tools.iter().enumerate() {
            let out = ctx.w(&format!("lp-ab-{i}"));
            let t = Instant::now();
            sh(&format!("rm -rf {out}; {tool} pure --out {out} {s300}"))?;
            best[i] = best[i].min(t.elapsed().as_secs_f64());
            digests[i] = file_sha256(&format!("{out}/layer.tar"))?;
        }
    }
    if digests[0] != digests[1] {
        bail!("layer-packer: the baseline's layer and the current one differ");
    }
    let what = format!("layer-packer pure (s300), baseline {}", dir.display());
    ctx.push(&what, best[0], None, "same bytes".into());
    ctx.push(
        "layer-packer pure (s300), current, in turn with the baseline",
        best[1],
        None,
        format!("{:.3}x the baseline's time", best[1] / best[0]),
    );
    Ok(())
}
