//! In-process gzip and zstd (the compressors every tool uses) against `pigz -p2 -nTR` and the
//! zstd command, on the s300 image and on a 1 GB image (s1g), with output sizes.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};

use anyhow::{Context, Result};
use dockertools_common::compress::{Compression, Compressor};

use super::{best_of, in_store, sh, size_of, Ctx};

/// Compresses `input` into `output` with our gzip at level 6, on `threads` threads (all when
/// `None`); returns the output size.
pub fn gzip_file(input: &str, output: &str, threads: Option<usize>) -> Result<u64> {
    compress_file(input, output, Compression::Gzip, threads)
}

fn compress_file(
    input: &str,
    output: &str,
    kind: Compression,
    threads: Option<usize>,
) -> Result<u64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()?;
    pool.install(|| -> Result<()> {
        let mut src = BufReader::with_capacity(1 << 20, File::open(input).context("input")?);
        let out = BufWriter::with_capacity(1 << 20, File::create(output).context("output")?);
        let mut c = Compressor::new(out, kind, kind.default_level())?;
        io::copy(&mut src, &mut c)?;
        c.finish()?.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    })?;
    size_of(output)
}

/// Times our compressor against the command on one image.
fn pair(ctx: &mut Ctx, label: &str, image: &str) -> Result<()> {
    let size = size_of(image)?;
    let pigz_out = ctx.w("pigz.gz");
    let t_pigz = best_of(3, || sh(&format!("pigz -p2 -nTR < {image} > {pigz_out}")))?;
    let pigz_size = size_of(&pigz_out)?;
    ctx.push(
        &format!("pigz -p2 -nTR ({label})"),
        t_pigz,
        Some(size),
        format!("{pigz_size} bytes"),
    );
    let ours = ctx.w("ours.gz");
    let mut sizes = Vec::new();
    for (threads, tag) in [(Some(1), "1 thread"), (None, "all threads")] {
        let t = best_of(3, || gzip_file(image, &ours, threads).map(drop))?;
        let n = size_of(&ours)?;
        sizes.push(super::file_sha256(&ours)?);
        ctx.push(
            &format!("our gzip -6 ({label}) [{tag}]"),
            t,
            Some(size),
            format!(
                "{n} bytes ({:+.1}% vs pigz); {:.2}x pigz's speed",
                100.0 * (n as f64 / pigz_size as f64 - 1.0),
                t_pigz / t
            ),
        );
    }
    if sizes.windows(2).any(|w| w[0] != w[1]) {
        anyhow::bail!("our gzip output depends on the thread count");
    }
    let zstd_out = ctx.w("z.zst");
    let t_zstd = best_of(3, || {
        sh(&format!("zstd -q -f -T2 -3 < {image} > {zstd_out}"))
    })?;
    ctx.push(
        &format!("zstd -T2 -3 ({label})"),
        t_zstd,
        Some(size),
        format!("{} bytes", size_of(&zstd_out)?),
    );
    let ours_z = ctx.w("ours.zst");
    let t_oz = best_of(3, || {
        compress_file(image, &ours_z, Compression::Zstd, None).map(drop)
    })?;
    ctx.push(
        &format!("our zstd -3 ({label})"),
        t_oz,
        Some(size),
        format!(
            "{} bytes; {:.2}x zstd's speed",
            size_of(&ours_z)?,
            t_zstd / t_oz
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
        pair(ctx, label, &image)?;
        std::fs::remove_file(&image)?;
    }
    Ok(())
}
