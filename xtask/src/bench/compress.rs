//! In-process gzip and zstd (the compressors every tool uses, run as `dockertools-compress`)
//! against `pigz -p2 -nTR` and the zstd command, on the s300 image and on a 1 GB image (s1g),
//! with output sizes.

use anyhow::Result;

use super::{best_of, in_store, sh, size_of, Ctx};

/// The script that compresses `input` into `output` with our compressor (`gz` or `zstd`) at
/// its default level, on as many threads as `RAYON_NUM_THREADS` says.
pub fn ours_script(ctx: &Ctx, format: &str, input: &str, output: &str) -> String {
    format!(
        "{} {format} < {input} > {output}",
        ctx.tool("dockertools-compress")
    )
}

/// Times a command against our compressor (1 thread and all, same bytes) on one image.
fn pair(ctx: &mut Ctx, label: &str, image: &str, (theirs, format): (&str, &str)) -> Result<()> {
    let size = size_of(image)?;
    let their_out = ctx.w("theirs.out");
    let t_theirs = best_of(3, || sh(&format!("{theirs} < {image} > {their_out}")))?;
    let their_size = size_of(&their_out)?;
    ctx.push(
        &format!("{theirs} ({label})"),
        t_theirs,
        Some(size),
        format!("{their_size} bytes"),
    );
    let ours = ctx.w("ours.out");
    let script = ours_script(ctx, format, image, &ours);
    ctx.scaled(&format!("our {format} ({label})"), 3, &script, Some(&ours))?;
    // The ratio from runs taken in turn, so that a slow spell of the machine (it is a shared
    // virtual machine whose speed drifts by 10-20% over minutes) weighs on both sides alike.
    let (mut best_theirs, mut best_ours) = (t_theirs, f64::MAX);
    for _ in 0..4 {
        best_theirs = best_theirs.min(best_of(1, || {
            sh(&format!("{theirs} < {image} > {their_out}"))
        })?);
        best_ours = best_ours.min(best_of(1, || sh(&script))?);
    }
    let n = size_of(&ours)?;
    ctx.push(
        &format!("our {format} against {theirs} ({label}), runs in turn"),
        best_ours,
        Some(size),
        format!(
            "{:.2}x its speed ({best_theirs:.3} s); {n} bytes ({:+.1}% vs it)",
            best_theirs / best_ours,
            100.0 * (n as f64 / their_size as f64 - 1.0)
        ),
    );
    Ok(())
}

/// Adds the compression rows.
pub fn bench(ctx: &mut Ctx) -> Result<()> {
    for (store, label) in [("s300", "s300 image"), ("s1g", "1 GB s1g image")] {
        let image = ctx.w(&format!("{store}-image.tar"));
        sh(&in_store(
            &ctx.store(store),
            &format!(
                "{} {} > {image}",
                ctx.tool("stream-layered"),
                ctx.conf(store).display()
            ),
        ))?;
        pair(ctx, label, &image, ("pigz -p2 -nTR", "gz"))?;
        pair(ctx, label, &image, ("zstd -q -T2 -3", "zstd"))?;
        std::fs::remove_file(&image)?;
    }
    Ok(())
}
