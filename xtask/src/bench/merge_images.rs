//! merge-images on the s300 and s10 gzip images, against the original's shell steps and against
//! its floor: compressing the merged tar alone with the same compressor; with `--baseline DIR`,
//! against DIR's merge-images too, the two run in turn.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};

use super::{best_of, compress::ours_script, in_store, sh, sh_env, Ctx};

/// Builds `NAME.tar` and `NAME.tar.gz` (pigz) from a fixture store's conf.
fn image(ctx: &Ctx, store: &str, name: &str) -> Result<()> {
    let out = ctx.w(&format!("{name}.tar"));
    sh(&in_store(
        &ctx.store(store),
        &format!(
            "{} {} > {out}",
            ctx.tool("stream-layered"),
            ctx.conf(store).display()
        ),
    ))?;
    sh(&format!("pigz -p2 -n < {out} > {out}.gz"))
}

/// Adds the merge-images rows.
pub fn bench(ctx: &mut Ctx) -> Result<()> {
    image(ctx, "s300", "a")?;
    image(ctx, "s10", "b")?;
    let original = format!(
        "cd {0}; rm -rf orig && mkdir -p orig/image orig/in/a orig/in/b && cd orig
         gzip -dc ../a.tar.gz | tar -xC in/a; gzip -dc ../b.tar.gz | tar -xC in/b
         cp -R -n in/*/* image/
         jq -s add in/a/manifest.json in/b/manifest.json > image/manifest.json
         tar -C image --hard-dereference --sort=name --mtime=@315532800 --owner=0 --group=0 --xform s:'^./':: -c . | pigz -p2 -nT > out.tar.gz",
        ctx.work.display()
    );
    let t_orig = best_of(3, || sh(&original))?;
    ctx.push(
        "mergeImages shell steps (untar, cp, jq, tar, pigz -p2)",
        t_orig,
        None,
        String::new(),
    );
    let merged = ctx.w("merged.tar.gz");
    let script = format!(
        "{} {merged} {} {}",
        ctx.tool("merge-images"),
        ctx.w("a.tar.gz"),
        ctx.w("b.tar.gz")
    );
    let t_mi = ctx.scaled(
        "merge-images s300+s10 gzip (digests verified)",
        3,
        &script,
        Some(&merged),
    )?;
    // The floor: the merged tar, compressed alone by the same compressor.
    let plain = ctx.w("merged.tar");
    sh(&format!("gzip -dc {merged} > {plain}"))?;
    let floor_script = ours_script(ctx, "gz", &plain, &ctx.w("floor.gz"));
    let floor = best_of(3, || sh(&floor_script))?;
    ctx.push(
        "gzip of the merged tar alone (merge-images' floor)",
        floor,
        Some(super::size_of(&plain)?),
        String::new(),
    );
    ctx.push(
        "merge-images against the original and its floor",
        t_mi,
        None,
        format!(
            "{:.1}x faster than the original; {:.2}x its floor",
            t_orig / t_mi,
            t_mi / floor
        ),
    );
    if let Some(dir) = ctx.baseline.clone() {
        against_baseline(ctx, &dir, floor)?;
    }
    Ok(())
}

/// Times the baseline's merge-images and the current one in turn, five times each with one
/// thread and with every core, so that both see the same machine; their outputs must hold the
/// same tar (their gzip bytes differ when one of them reuses the inputs' deflate data).
fn against_baseline(ctx: &mut Ctx, dir: &Path, floor: f64) -> Result<()> {
    let tools = [
        dir.join("merge-images").display().to_string(),
        ctx.tool("merge-images"),
    ];
    let inputs = format!("{} {}", ctx.w("a.tar.gz"), ctx.w("b.tar.gz"));
    let cores = ctx.cores.to_string();
    for threads in ["1", cores.as_str()] {
        let mut best = [f64::MAX; 2];
        let mut digests = [String::new(), String::new()];
        for _ in 0..5 {
            for (i, tool) in tools.iter().enumerate() {
                let out = ctx.w(&format!("mi-ab-{i}.tar.gz"));
                let t = Instant::now();
                sh_env(
                    &format!("{tool} {out} {inputs}"),
                    &[("RAYON_NUM_THREADS", threads)],
                )?;
                best[i] = best[i].min(t.elapsed().as_secs_f64());
                digests[i] = plain_sha256(&out)?;
            }
        }
        if digests[0] != digests[1] {
            bail!("merge-images: the baseline's output and the current one hold different tars");
        }
        let what = format!(
            "merge-images s300+s10 gzip, baseline {} [{threads} threads]",
            dir.display()
        );
        let note = format!("same tar; {:.2}x the floor", best[0] / floor);
        ctx.push(&what, best[0], None, note);
        ctx.push(
            &format!("merge-images s300+s10 gzip, current, in turn with the baseline [{threads} threads]"),
            best[1],
            None,
            format!(
                "{:.3}x the baseline's time; {:.2}x the floor",
                best[1] / best[0],
                best[1] / floor
            ),
        );
    }
    Ok(())
}

/// The sha256 of what the gzip file `path` decompresses to.
fn plain_sha256(path: &str) -> Result<String> {
    let out = std::process::Command::new("sh")
        .args(["-c", "gzip -dc < \"$1\" | sha256sum", "sh", path])
        .output()?;
    if !out.status.success() {
        bail!("gzip -dc {path} failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
