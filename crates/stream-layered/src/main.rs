//! `stream-layered CONF [-t TAG]`: streams the image of a streamLayeredImage conf to stdout.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{CommandFactory, Parser};
use dockertools_common::compress::{Compression, Compressor};
use dockertools_common::names::Names;
use stream_layered::{DateTime, Error, Options};

/// Write the docker-archive image described by a streamLayeredImage conf.json to stdout.
///
/// A drop-in for nixpkgs' stream_layered_image.py: same arguments, same bytes, same progress
/// lines on stderr. Store layers are hashed in parallel first, then streamed.
///
/// With --make-conf it instead writes the conf.json itself, as streamLayeredImage's jq step does
/// (base JSON + store layers + the image settings), so no jq is needed.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The conf.json written by streamLayeredImage.
    #[arg(required_unless_present = "make_conf")]
    conf: Option<PathBuf>,
    /// Override the RepoTags from the configuration.
    #[arg(short = 't', long = "repo_tag", value_name = "REPO_TAG")]
    repo_tag: Option<String>,
    /// Output format: docker-archive (the original's), oci-archive (on stdout) or oci-dir (into --output).
    #[arg(long, value_enum, default_value = "docker-archive")]
    format: Format,
    /// oci-dir: the folder to create.
    #[arg(long, value_name = "DIR", required_if_eq("format", "oci-dir"))]
    output: Option<PathBuf>,
    /// Compress the whole stream on stdout (docker-archive, oci-archive), like piping it to pigz or zstd.
    #[arg(long, value_enum, default_value = "none")]
    compress: Comp,
    /// OCI layer blob compression.
    #[arg(long, value_enum, default_value = "none")]
    layer_compression: Comp,
    /// Compression level (gzip 0-9, default 6; zstd 1-19, default 3).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=19))]
    level: Option<i32>,
    /// Write the conf.json to stdout instead of an image (needs --base-json, --store-layers,
    /// --customisation-layer and --repo-tag).
    #[arg(long, requires_all = ["base_json", "store_layers", "customisation_layer", "repo_tag_conf"])]
    make_conf: bool,
    /// make-conf: the image's base JSON (architecture, config, os).
    #[arg(long, value_name = "FILE")]
    base_json: Option<PathBuf>,
    /// make-conf: store_layers JSON (a list of lists of store paths; `-` for stdin), as
    /// `popularity-sorter auto-layer` or `pipeline` print it.
    #[arg(long, value_name = "FILE")]
    store_layers: Option<PathBuf>,
    /// make-conf: the customisation layer's path.
    #[arg(long, value_name = "PATH")]
    customisation_layer: Option<String>,
    /// make-conf: the image's name:tag.
    #[arg(long = "repo-tag", value_name = "NAME:TAG")]
    repo_tag_conf: Option<String>,
    /// make-conf: the base image archive.
    #[arg(long, value_name = "PATH")]
    from_image: Option<String>,
    /// make-conf: the store folder.
    #[arg(long, default_value = "/nix/store")]
    store_dir: String,
    /// make-conf: creation time (`now` or ISO 8601).
    #[arg(long, default_value = "1970-01-01T00:00:01Z")]
    created: String,
    /// make-conf: file mtime (`now` or ISO 8601).
    #[arg(long, default_value = "1970-01-01T00:00:01Z")]
    mtime: String,
    /// make-conf: owner id of the files.
    #[arg(long, default_value_t = 0)]
    uid: u64,
    /// make-conf: group id of the files.
    #[arg(long, default_value_t = 0)]
    gid: u64,
    /// make-conf: owner name.
    #[arg(long, default_value = "root")]
    uname: String,
    /// make-conf: group name.
    #[arg(long, default_value = "root")]
    gname: String,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    DockerArchive,
    OciArchive,
    OciDir,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Comp {
    None,
    Gz,
    Zstd,
}

impl Comp {
    fn kind(self) -> Compression {
        match self {
            Comp::None => Compression::None,
            Comp::Gz => Compression::Gzip,
            Comp::Zstd => Compression::Zstd,
        }
    }
}

fn level_for(kind: Compression, level: Option<i32>) -> i32 {
    let level = level.unwrap_or_else(|| kind.default_level());
    let ok = match kind {
        Compression::Gzip => (0..=9).contains(&level),
        Compression::Zstd => (1..=19).contains(&level),
        Compression::None => true,
    };
    if !ok {
        Args::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                format!("--level {level} is out of range for {}", kind.name()),
            )
            .exit();
    }
    level
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("{}: {source}", .path.display())]
    ReadConf { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Build(#[from] Error),
    #[error("{0}")]
    Conf(String),
    #[error("writing output: {0}")]
    Out(#[from] io::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, MainError> {
    dockertools_common::cli::read_input(path).map_err(|source| MainError::ReadConf {
        path: path.to_path_buf(),
        source,
    })
}

fn make_conf(args: &Args) -> Result<(), MainError> {
    let json = |p: &Option<PathBuf>| -> Result<serde_json::Value, MainError> {
        let p = p.clone().unwrap_or_default();
        let bytes = read(&p)?;
        serde_json::from_slice(&bytes).map_err(|e| MainError::Conf(format!("{}: {e}", p.display())))
    };
    let base = json(&args.base_json)?;
    let layers = json(&args.store_layers)?;
    let conf_args = stream_layered::makeconf::ConfArgs {
        store_dir: args.store_dir.clone(),
        from_image: args.from_image.clone(),
        customisation_layer: args.customisation_layer.clone().unwrap_or_default(),
        repo_tag: args.repo_tag_conf.clone().unwrap_or_default(),
        created: args.created.clone(),
        mtime: args.mtime.clone(),
        uid: args.uid,
        gid: args.gid,
        uname: args.uname.clone(),
        gname: args.gname.clone(),
    };
    let text =
        stream_layered::makeconf::make_conf(&base, &layers, &conf_args).map_err(MainError::Conf)?;
    let mut out = dockertools_common::cli::stdout()?;
    out.write_all(text.as_bytes())?;
    Ok(out.flush()?)
}

fn run(args: Args) -> Result<(), MainError> {
    if args.make_conf {
        return make_conf(&args);
    }
    // Usage errors (a level out of range) come before any input is read.
    let stream = args.compress.kind();
    let stream_level = level_for(stream, args.level);
    let layer_kind = args.layer_compression.kind();
    let layer_level = level_for(layer_kind, args.level);
    let conf_path = args.conf.clone().unwrap_or_default();
    let conf = read(&conf_path)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let opts = Options {
        repo_tag: args.repo_tag,
        now: DateTime::from_unix(now.as_secs() as i64, now.subsec_micros()),
        names: Names::system(),
    };
    let mut stderr = io::stderr().lock();
    let broken = |e: &Error| e.is_broken_pipe();
    let result = match args.format {
        Format::DockerArchive => {
            let out = Compressor::new(dockertools_common::cli::stdout()?, stream, stream_level)?;
            stream_layered::build(&conf_path, &conf, &opts, out, &mut stderr).map(Some)
        }
        Format::OciArchive | Format::OciDir => {
            let prep = stream_layered::prepare(&conf_path, &conf, &opts)?;
            let comp = stream_layered::oci::LayerCompression {
                kind: layer_kind,
                level: layer_level,
            };
            let target = match (args.format, args.output) {
                (Format::OciDir, Some(dir)) => stream_layered::oci::Target::Dir(dir),
                _ => stream_layered::oci::Target::Archive(Compressor::new(
                    dockertools_common::cli::stdout()?,
                    stream,
                    stream_level,
                )?),
            };
            stream_layered::oci::build(prep, comp, target, &mut stderr)
        }
    };
    match result {
        Ok(Some(out)) => {
            let mut inner = out.finish()?;
            Ok(inner.flush()?)
        }
        Ok(None) => Ok(()),
        Err(e) if broken(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn main() -> ExitCode {
    dockertools_common::cli::main("stream-layered", run)
}
