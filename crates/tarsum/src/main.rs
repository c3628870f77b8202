//! `tarsum`: prints the Docker tarsum v1 of the tar stream on stdin.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

/// Print the Docker tarsum v1 (`tarsum.v1+sha256:<hex>`) of the tar stream on standard input.
///
/// A drop-in for nixpkgs' Go tarsum. Errors go to stderr with exit code 1; stdout stays empty.
#[derive(Parser)]
#[command(version)]
struct Args {}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Sum(#[from] tarsum::Error),
    #[error("writing stdout: {0}")]
    Out(#[from] io::Error),
}

fn run() -> Result<(), MainError> {
    let stdin = io::stdin().lock();
    let sum = tarsum::tarsum_of(io::BufReader::with_capacity(64 * 1024, stdin))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{sum}")?;
    out.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    Args::parse();
    dockertools_common::cli::exit("tarsum", run())
}
