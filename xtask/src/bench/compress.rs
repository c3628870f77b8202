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
    let gz = ours(ctx, (label, "gzip -6"), image, Compression::Gzip)?;
    let n = size_of(&gz.path)?;
    ctx.push(
        &format!("our gzip against pigz -p2 ({label})"),
        gz.all,
        Some(size),
        format!(
            "{:.2}x pigz's speed; {n} bytes ({:+.1}% vs pigz)",
            t_pigz / gz.all,
            100.0 * (n as f64 / pigz_size as f64 - 1.0)
        ),
    );
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
    let z = ours(ctx, (label, "zstd -3"), image, Compression::Zstd)?;
    ctx.push(
        &format!("our zstd against zstd -T2 ({label})"),
        z.all,
        Some(size),
        format!(
            "{:.2}x zstd's speed; {} bytes",
            t_zstd / z.all,
            size_of(&z.path)?
        ),
    );
    Ok(())
}

/// Our compressor's best times with one thread and with all, and its output.
struct Ours {
    all: f64,
    path: String,
}

/// Times our compressor on `image` with one thread and with every core (rows with the
/// speed-up), checking that the bytes do not change.
fn ours(
    ctx: &mut Ctx,
    (label, what): (&str, &str),
    image: &str,
    kind: Compression,
) -> Result<Ours> {
    let size = size_of(image)?;
    let path = ctx.w(&format!("ours.{}", kind.name()));
    let one = best_of(3, || compress_file(image, &path, kind, Some(1)).map(drop))?;
    let digest_one = super::file_sha256(&path)?;
    let all = best_of(3, || compress_file(image, &path, kind, None).map(drop))?;
    if super::file_sha256(&path)? != digest_one {
        anyhow::bail!("our {what} output depends on the thread count");
    }
    ctx.push(
        &format!("our {what} ({label}) [1 thread]"),
        one,
        Some(size),
        String::new(),
    );
    ctx.push(
        &format!("our {what} ({label}) [{} threads]", ctx.cores),
        all,
        Some(size),
        format!("{:.2}x speed-up over 1 thread, same bytes", one / all),
    );
    Ok(Ours { all, path })
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
