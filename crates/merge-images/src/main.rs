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
/// Decompressed inputs are kept in memory up to $MERGE_IMAGES_MEMORY MiB (1024 when unset),
/// the rest in unnamed files beside OUT.
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

/// `$MERGE_IMAGES_MEMORY`, in MiB, as bytes.
fn memory(var: Option<std::ffi::OsString>) -> Result<u64, MainError> {
    let Some(var) = var else {
        return Ok(merge_images::DEFAULT_MEMORY);
    };
    var.to_str()
        .and_then(|s| s.parse::<u64>().ok())
        .and_then(|mib| mib.checked_mul(1 << 20))
        .ok_or_else(|| {
            let why = format!("MERGE_IMAGES_MEMORY={var:?}: not a number of MiB");
            MainError::Usage(cli::UsageError(why))
        })
}

fn run(args: Args) -> Result<(), MainError> {
    let mtime = cli::source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH"))?.unwrap_or(315532800);
    let opts = merge_images::Options {
        mtime,
        compress: args.compress,
        level: args.level,
        memory: memory(std::env::var_os("MERGE_IMAGES_MEMORY"))?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_is_given_in_mib_and_anything_else_is_a_usage_error() {
        let mib = |s: &str| memory(Some(s.into())).map_err(|e| e.to_string());
        assert_eq!(mib("0"), Ok(0));
        assert_eq!(mib("3"), Ok(3 << 20));
        assert_eq!(memory(None).ok(), Some(merge_images::DEFAULT_MEMORY));
        assert_eq!(
            mib("1G"),
            Err("MERGE_IMAGES_MEMORY=\"1G\": not a number of MiB".to_string())
        );
        assert!(mib(&u64::MAX.to_string()).is_err());
    }
}
