//! `merge-images OUT IMAGE...`: merges docker-archive images into one archive.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use dockertools_common::compress::Compression;

/// Merge docker-archive images (plain, gzip or zstd) into OUT, as nixpkgs' mergeImages does.
///
/// OUT is compressed like the last IMAGE unless --compress says otherwise, and is written
/// atomically. Unlike mergeImages, inputs may share a file name, and when no input has a
/// `repositories` file the output has none (mergeImages writes one containing `null`).
/// Entries are stamped with $SOURCE_DATE_EPOCH (315532800 when unset).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The merged archive to write.
    out: PathBuf,
    /// The images to merge, in order (manifests are concatenated in this order).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Output compression (default: that of the last image).
    #[arg(long, value_enum)]
    compress: Option<Compress>,
    /// Compression level (gzip 0-9, zstd 1-19).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=19))]
    level: Option<i32>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Compress {
    None,
    Gz,
    Zstd,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mtime = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(315532800);
    let compress = args.compress.map(|c| match c {
        Compress::None => Compression::None,
        Compress::Gz => Compression::Gzip,
        Compress::Zstd => Compression::Zstd,
    });
    let opts = merge_images::Options {
        mtime,
        compress,
        level: args.level,
        pid: std::process::id(),
    };
    dockertools_common::cli::exit(
        "merge-images",
        merge_images::merge(&args.out, &args.images, &opts),
    )
}
