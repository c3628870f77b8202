//! `tarsum`: prints the Docker tarsum v1 of the tar stream on stdin.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use clap::Parser;
use dockertools_common::cli;

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
    #[error("reading stdin: {0}")]
    In(#[source] io::Error),
    #[error("writing stdout: {0}")]
    Out(#[source] io::Error),
}

fn run(_: Args) -> Result<(), MainError> {
    let stdin = cli::stdin().map_err(MainError::In)?;
    let mut out = cli::stdout().map_err(MainError::Out)?;
    // A regular file on stdin (`tarsum < layer.tar`) is read at offsets by the hashing
    // threads; a pipe is read once, in order.
    let file = File::from(stdin.as_fd().try_clone_to_owned().map_err(MainError::In)?);
    let sum = if file.metadata().is_ok_and(|m| m.is_file()) {
        tarsum::tarsum_of_file(&file)?
    } else {
        tarsum::tarsum_of(io::BufReader::with_capacity(64 * 1024, stdin))?
    };
    writeln!(out, "{sum}").map_err(MainError::Out)?;
    out.flush().map_err(MainError::Out)
}

fn main() -> ExitCode {
    cli::main("tarsum", run)
}
