//! tarsum on a 1 GB layer tar, from the file and from a pipe, against SHA-256 (the sha2 crate)
//! over the same bytes.

use anyhow::Result;

use super::{best_of, sh, sha_floor, size_of, Ctx};

/// Adds the tarsum rows.
pub fn bench(ctx: &mut Ctx) -> Result<()> {
    let tar = ctx.w("s1g-layer.tar");
    sh(&format!(
        "tar -C {} --sort=name -cf {tar} .",
        ctx.store("s1g").display()
    ))?;
    let size = size_of(&tar)?;
    sh(&format!("cat {tar} > /dev/null"))?;
    let floor = best_of(3, || sha_floor(tar.as_ref()))?;
    ctx.push(
        "sha256 floor (sha2 crate, 1 GB layer tar)",
        floor,
        Some(size),
        String::new(),
    );
    let script = format!("{} < {tar} > /dev/null", ctx.tool("tarsum"));
    let t = ctx.scaled("tarsum < 1 GB layer tar", 3, &script, None)?;
    ctx.push(
        "tarsum against the floor",
        t,
        Some(size),
        format!("{:.2}x the sha256 floor's speed", floor / t),
    );
    // Through a pipe (as in mkPureLayer's `tar | tee | tarsum`): the data is read once, in
    // order, by the reading thread, and handed to the hashing threads.
    let piped = format!("cat {tar} | {} > /dev/null", ctx.tool("tarsum"));
    let t_pipe = ctx.scaled("cat 1 GB layer tar | tarsum", 3, &piped, None)?;
    ctx.push(
        "tarsum from a pipe against the floor",
        t_pipe,
        Some(size),
        format!("{:.2}x the sha256 floor's speed", floor / t_pipe),
    );
    std::fs::remove_file(&tar)?;
    Ok(())
}
