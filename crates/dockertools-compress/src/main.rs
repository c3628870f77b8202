//! `dockertools-compress gz|zstd [-d]`, or run as `pigz`/`zstd`: stdin compressed (or
//! decompressed and verified) to stdout.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use dockertools_common::cli;
use dockertools_compress::{own_args, pigz_args, run, zstd_args, Error, Usage};

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("{0}")]
    Usage(#[source] cli::UsageError),
    #[error(transparent)]
    Run(#[from] Error),
}

impl From<Usage> for MainError {
    fn from(u: Usage) -> Self {
        MainError::Usage(cli::UsageError(u.0))
    }
}

fn main() -> ExitCode {
    let mut argv = std::env::args();
    let called = argv
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let args: Vec<String> = argv.collect();
    let tool = match called.as_str() {
        "pigz" | "zstd" => called.clone(),
        _ => "dockertools-compress".to_string(),
    };
    let job = match called.as_str() {
        "pigz" => pigz_args(&args),
        "zstd" => zstd_args(&args),
        _ => own_args(&args),
    };
    let job = match job {
        Ok(job) => job,
        Err(usage) => return cli::exit(&tool, Err(MainError::from(usage))),
    };
    // `-p N`/`-T N` (0: every core) size the thread pool; the count changes the speed, never
    // the bytes.
    cli::main_raw(
        &tool,
        job.threads.filter(|&n| n > 0),
        || -> Result<(), MainError> {
            let stdin = cli::stdin().map_err(Error::Input)?;
            let stdout = cli::stdout().map_err(Error::Output)?;
            let mut out = run(&job, stdin, stdout)?;
            out.flush().map_err(Error::Output)?;
            Ok(())
        },
    )
}
