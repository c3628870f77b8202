//! `merge-images OUT IMAGE...`: merges docker-archive images into one archive.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dockertools_common::cli;
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
    compress: Option<Compression>,
    /// Compression level (gzip 0-9, zstd 1-19).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=19))]
    level: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Merge(Box<merge_images::Error>),
    #[error(transparent)]
    Epoch(#[from] cli::BadSourceDateEpoch),
    #[error("{0}")]
    Usage(#[source] cli::UsageError),
}

fn run(args: Args) -> Result<(), MainError> {
    let mtime = cli::source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH"))?.unwrap_or(315532800);
    let opts = merge_images::Options {
        mtime,
        compress: args.compress,
        level: args.level,
    };
    // A level must fit the compression; with --compress it is checked before any work.
    if let (Some(kind), Some(level)) = (args.compress, args.level) {
        kind.check_level(level)
            .map_err(|e| MainError::Usage(cli::UsageError(e)))?;
    }
    merge_images::merge(&args.out, &args.images, &opts).map_err(|e| match e {
        merge_images::Error::Level(why) => MainError::Usage(cli::UsageError(why)),
        e => MainError::Merge(Box::new(e)),
    })
}

fn main() -> ExitCode {
    cli::main("merge-images", run)
}
