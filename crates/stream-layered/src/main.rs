//! `stream-layered CONF [-t TAG]`: streams the image of a streamLayeredImage conf to stdout.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use dockertools_common::names::Names;
use stream_layered::{DateTime, Error, Options};

/// Write the docker-archive image described by a streamLayeredImage conf.json to stdout.
///
/// A drop-in for nixpkgs' stream_layered_image.py: same arguments, same bytes, same progress
/// lines on stderr. Store layers are hashed in parallel first, then streamed.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The conf.json written by streamLayeredImage.
    conf: PathBuf,
    /// Override the RepoTags from the configuration.
    #[arg(short = 't', long = "repo_tag", value_name = "REPO_TAG")]
    repo_tag: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("{}: {source}", .path.display())]
    ReadConf { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Build(#[from] Error),
    #[error("writing output: {0}")]
    Out(#[from] io::Error),
}

fn run(args: Args) -> Result<(), MainError> {
    let conf = std::fs::read(&args.conf).map_err(|source| MainError::ReadConf {
        path: args.conf.clone(),
        source,
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let opts = Options {
        repo_tag: args.repo_tag,
        now: DateTime::from_unix(now.as_secs() as i64, now.subsec_micros()),
        names: Names::system(),
    };
    let out = dockertools_common::cli::stdout();
    let mut stderr = io::stderr().lock();
    match stream_layered::build(&args.conf, &conf, &opts, out, &mut stderr) {
        Ok(mut out) => Ok(out.flush()?),
        Err(e) if e.is_broken_pipe() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn main() -> ExitCode {
    dockertools_common::cli::exit("stream-layered", run(Args::parse()))
}
