//! `stream-layered CONF [-t TAG]`: streams the image of a streamLayeredImage conf to stdout.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use dockertools_common::atomic::AtomicDir;
use dockertools_common::cli::UsageError;
use dockertools_common::compress::{Compression, Compressor};
use dockertools_common::names::Names;
use stream_layered::makeconf::{ConfArgs, MakeConfError};
use stream_layered::oci::LayerCompression;
use stream_layered::registry::{self, PushOptions, Reference};
use stream_layered::{docker_archive, oci, DateTime, Error, Options};

/// Write the docker-archive image described by a streamLayeredImage conf.json to stdout.
///
/// A drop-in for nixpkgs' stream_layered_image.py: same arguments, same bytes, same progress
/// lines on stderr. Store layers are hashed in parallel first, then streamed.
///
/// With --make-conf it instead writes the conf.json itself, as streamLayeredImage's jq step does
/// (base JSON + store layers + the image settings), so no jq is needed.
///
/// With --layer-info N it prints the diff_id and size of store layer N instead, for the conf's
/// store_layer_infos; with --format registry it pushes the image to a registry.
///
/// An option that does not apply to the chosen mode or format is a usage error (exit 2).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The conf.json written by streamLayeredImage.
    #[arg(required_unless_present = "make_conf")]
    conf: Option<PathBuf>,
    /// Override the RepoTags from the configuration.
    #[arg(short = 't', long = "repo_tag", value_name = "REPO_TAG")]
    repo_tag: Option<String>,
    /// Output format: docker-archive (the original's, the default), oci-archive (on stdout),
    /// oci-dir (into --output) or registry (pushed to --output docker://HOST[:PORT]/REPO[:TAG]).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// oci-dir: the folder to create (missing, or an empty folder; its parent must exist);
    /// registry: docker://HOST[:PORT]/REPO[:TAG] (the tag defaults to latest).
    #[arg(long, value_name = "DIR|docker://…", required_if_eq_any([("format", "oci-dir"), ("format", "registry")]))]
    output: Option<PathBuf>,
    /// registry: verify the registry's TLS certificate (default true); false also lets a
    /// registry that does not speak TLS be reached over plain HTTP (for loopback tests).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    tls_verify: Option<bool>,
    /// Print the diff_id and size of store layer N (1-based) as {"diff_id": "sha256:…", "size": …},
    /// exactly as the image stream writes its tar; the conf needs only store_dir, store_layers,
    /// the owner keys and mtime (or created).
    #[arg(long, value_name = "N")]
    layer_info: Option<usize>,
    /// docker-archive, oci-archive: compress the whole stream on stdout, like piping it to pigz
    /// or zstd (default none).
    #[arg(long, value_enum)]
    compress: Option<Compression>,
    /// oci-archive, oci-dir: compression of the layer blobs (default none); registry: the same
    /// (default gz).
    #[arg(long, value_enum)]
    layer_compression: Option<Compression>,
    /// Compression level (gzip 0-9, default 6; zstd 1-19, default 3).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=19))]
    level: Option<i32>,
    /// Write the conf.json to stdout instead of an image (needs --base-json, --store-layers,
    /// --customisation-layer and --conf-repo-tag).
    #[arg(long, requires_all = ["base_json", "store_layers", "customisation_layer", "conf_repo_tag"])]
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
    /// make-conf: the repo_tag written into the conf (the image's name:tag).
    #[arg(long, value_name = "NAME:TAG")]
    conf_repo_tag: Option<String>,
    /// make-conf: the base image archive.
    #[arg(long, value_name = "PATH")]
    from_image: Option<String>,
    /// make-conf: the store folder (default /nix/store).
    #[arg(long)]
    store_dir: Option<String>,
    /// make-conf: creation time (`now` or ISO 8601; default 1970-01-01T00:00:01Z).
    #[arg(long)]
    created: Option<String>,
    /// make-conf: file mtime (`now` or ISO 8601; default 1970-01-01T00:00:01Z).
    #[arg(long)]
    mtime: Option<String>,
    /// make-conf: owner id of the files (default 0).
    #[arg(long)]
    uid: Option<u64>,
    /// make-conf: group id of the files (default 0).
    #[arg(long)]
    gid: Option<u64>,
    /// make-conf: owner name (default root).
    #[arg(long)]
    uname: Option<String>,
    /// make-conf: group name (default root).
    #[arg(long)]
    gname: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    DockerArchive,
    OciArchive,
    OciDir,
    Registry,
}

const EPOCH_ONE: &str = "1970-01-01T00:00:01Z";

impl Args {
    fn format(&self) -> Format {
        self.format.unwrap_or(Format::DockerArchive)
    }

    /// The given options of `--make-conf` mode, by flag name.
    fn make_conf_options(&self) -> Vec<&'static str> {
        let given = [
            ("--base-json", self.base_json.is_some()),
            ("--store-layers", self.store_layers.is_some()),
            ("--customisation-layer", self.customisation_layer.is_some()),
            ("--conf-repo-tag", self.conf_repo_tag.is_some()),
            ("--from-image", self.from_image.is_some()),
            ("--store-dir", self.store_dir.is_some()),
            ("--created", self.created.is_some()),
            ("--mtime", self.mtime.is_some()),
            ("--uid", self.uid.is_some()),
            ("--gid", self.gid.is_some()),
            ("--uname", self.uname.is_some()),
            ("--gname", self.gname.is_some()),
        ];
        given.iter().filter(|(_, g)| *g).map(|(n, _)| *n).collect()
    }

    /// The given options of image mode, by flag name.
    fn image_options(&self) -> Vec<&'static str> {
        let given = [
            ("CONF", self.conf.is_some()),
            ("--repo_tag", self.repo_tag.is_some()),
            ("--format", self.format.is_some()),
            ("--output", self.output.is_some()),
            ("--compress", self.compress.is_some()),
            ("--layer-compression", self.layer_compression.is_some()),
            ("--level", self.level.is_some()),
            ("--tls-verify", self.tls_verify.is_some()),
            ("--layer-info", self.layer_info.is_some()),
        ];
        given.iter().filter(|(_, g)| *g).map(|(n, _)| *n).collect()
    }
}

fn list(flags: &[&str]) -> String {
    flags.join(", ")
}

fn verb<'a>(flags: &[&str], one: &'a str, many: &'a str) -> &'a str {
    if flags.len() == 1 {
        one
    } else {
        many
    }
}

/// Refuses an option that does not apply to the mode and format asked for.
fn check_usage(args: &Args) -> Result<(), UsageError> {
    let refuse = |msg: String| Err(UsageError(msg));
    if args.make_conf {
        let given = args.image_options();
        if !given.is_empty() {
            return refuse(format!(
                "{} {} not apply to --make-conf",
                list(&given),
                verb(&given, "does", "do")
            ));
        }
        return Ok(());
    }
    let given = args.make_conf_options();
    if !given.is_empty() {
        let hint = if given.contains(&"--conf-repo-tag") {
            " (to override the image's tag, use --repo_tag/-t)"
        } else {
            ""
        };
        return refuse(format!(
            "{} only {} with --make-conf{hint}",
            list(&given),
            verb(&given, "applies", "apply")
        ));
    }
    if args.layer_info.is_some() {
        let given: Vec<&str> = args
            .image_options()
            .into_iter()
            .filter(|f| !matches!(*f, "CONF" | "--layer-info"))
            .collect();
        if !given.is_empty() {
            return refuse(format!(
                "{} {} not apply to --layer-info",
                list(&given),
                verb(&given, "does", "do")
            ));
        }
        return Ok(());
    }
    let format = args.format();
    if args.output.is_some() && !matches!(format, Format::OciDir | Format::Registry) {
        return refuse("--output only applies to --format oci-dir or registry".into());
    }
    if args.tls_verify.is_some() && format != Format::Registry {
        return refuse("--tls-verify only applies to --format registry".into());
    }
    if args.layer_compression.is_some() && format == Format::DockerArchive {
        return refuse(
            "--layer-compression does not apply to --format docker-archive (it compresses the layer blobs of an OCI layout; --compress compresses the stream)".into(),
        );
    }
    if args.compress.is_some() && matches!(format, Format::OciDir | Format::Registry) {
        return refuse(
            "--compress does not apply to --format oci-dir or registry (they write no stream; --layer-compression compresses their blobs)".into(),
        );
    }
    Ok(())
}

/// The stream's and the layer blobs' compression with their levels; `--level` must fit every
/// compressor it applies to.
fn compression(args: &Args) -> Result<(LayerCompression, LayerCompression), UsageError> {
    let stream = args.compress.unwrap_or(Compression::None);
    // A registry gets gzip blobs unless told otherwise, as skopeo and podman push them.
    let default_layers = match args.format() {
        Format::Registry => Compression::Gzip,
        _ => Compression::None,
    };
    let layers = args.layer_compression.unwrap_or(default_layers);
    let used: Vec<Compression> = [stream, layers]
        .into_iter()
        .filter(|k| *k != Compression::None)
        .collect();
    if args.level.is_some() && used.is_empty() {
        return Err(UsageError(
            "--level only applies with --compress or --layer-compression gz or zstd".into(),
        ));
    }
    if let Some(level) = args.level {
        for kind in used {
            kind.check_level(level).map_err(UsageError)?;
        }
    }
    let with_level = |kind: Compression| LayerCompression {
        kind,
        level: args.level.unwrap_or_else(|| kind.default_level()),
    };
    Ok((with_level(stream), with_level(layers)))
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("{0}")]
    Usage(#[source] UsageError),
    #[error("{}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {source}", .path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Build(#[from] Error),
    #[error("{0}")]
    MakeConf(#[from] MakeConfError),
    #[error("output {}: {source}", .path.display())]
    Output { path: PathBuf, source: io::Error },
    #[error("writing output: {0}")]
    Out(#[from] io::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, MainError> {
    dockertools_common::cli::read_input(path).map_err(|source| MainError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value, MainError> {
    serde_json::from_slice(&read(path)?).map_err(|source| MainError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn make_conf(args: &Args) -> Result<(), MainError> {
    let base = read_json(args.base_json.as_deref().unwrap_or(Path::new("")))?;
    let layers = read_json(args.store_layers.as_deref().unwrap_or(Path::new("")))?;
    let or = |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.into());
    let conf_args = ConfArgs {
        store_dir: or(&args.store_dir, "/nix/store"),
        from_image: args.from_image.clone(),
        customisation_layer: or(&args.customisation_layer, ""),
        repo_tag: or(&args.conf_repo_tag, ""),
        created: or(&args.created, EPOCH_ONE),
        mtime: or(&args.mtime, EPOCH_ONE),
        uid: args.uid.unwrap_or(0),
        gid: args.gid.unwrap_or(0),
        uname: or(&args.uname, "root"),
        gname: or(&args.gname, "root"),
    };
    let text = stream_layered::makeconf::make_conf(&base, &layers, &conf_args)?;
    let mut out = dockertools_common::cli::stdout()?;
    out.write_all(text.as_bytes())?;
    Ok(out.flush()?)
}

/// Where the image goes: stdout (docker-archive, oci-archive), a folder (oci-dir) or a registry.
enum Target {
    Stdout(io::BufWriter<io::StdoutLock<'static>>),
    Dir(AtomicDir),
    Registry(Reference),
}

/// Opens the output before any work: a closed stdout, or an output folder that cannot work
/// (not empty, not a folder, no parent), is refused at once.
fn target(args: &Args) -> Result<Target, MainError> {
    if args.format() == Format::Registry {
        let dest = args
            .output
            .as_deref()
            .unwrap_or(Path::new(""))
            .to_string_lossy();
        let dest =
            Reference::parse(&dest).map_err(|e| MainError::Usage(UsageError(e.to_string())))?;
        return Ok(Target::Registry(dest));
    }
    if args.format() != Format::OciDir {
        return Ok(Target::Stdout(dockertools_common::cli::stdout()?));
    }
    let Some(path) = &args.output else {
        return Err(MainError::Usage(UsageError(
            "--format oci-dir needs --output DIR".into(),
        )));
    };
    let dir = AtomicDir::create(path).map_err(|source| MainError::Output {
        path: path.clone(),
        source,
    })?;
    Ok(Target::Dir(dir))
}

fn options(args: &Args) -> Options {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Options {
        repo_tag: args.repo_tag.clone(),
        now: DateTime::from_unix(now.as_secs() as i64, now.subsec_micros()),
        names: Names::system(),
        check_files: !matches!(args.format, Some(Format::Registry)),
    }
}

/// `--layer-info N`: one line of JSON on stdout.
fn layer_info(args: &Args, n: usize) -> Result<(), MainError> {
    let conf_path = args.conf.clone().unwrap_or_default();
    let conf = read(&conf_path)?;
    let info = stream_layered::info::layer_info(&conf_path, &conf, n, options(args).now)?;
    let mut out = dockertools_common::cli::stdout()?;
    writeln!(out, "{}", info.to_json())?;
    Ok(out.flush()?)
}

/// The auth files skopeo and podman read, in their order, and the blob cache's folder.
fn registry_env() -> (Vec<PathBuf>, Option<PathBuf>) {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = var("HOME");
    let mut files = Vec::new();
    files.extend(var("REGISTRY_AUTH_FILE"));
    files.extend(var("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    files.extend(home.as_ref().map(|h| h.join(".docker/config.json")));
    let cache = var("XDG_CACHE_HOME").or_else(|| home.map(|h| h.join(".cache")));
    (files, cache.map(|c| c.join("dockertools-rs")))
}

fn push(
    args: &Args,
    prep: &stream_layered::Prepared,
    dest: Reference,
    comp: LayerCompression,
) -> Result<(), MainError> {
    let (auth_files, cache_dir) = registry_env();
    let opts = PushOptions {
        dest,
        comp,
        tls_verify: args.tls_verify.unwrap_or(true),
        auth_files,
        cache_dir,
    };
    let mut out = dockertools_common::cli::stdout()?;
    let pushed = registry::push(prep, &opts, &mut io::stderr())?;
    writeln!(out, "{}", pushed.digest)?;
    Ok(out.flush()?)
}

fn run(args: Args) -> Result<(), MainError> {
    // Usage errors come before any input is read.
    check_usage(&args).map_err(MainError::Usage)?;
    if args.make_conf {
        return make_conf(&args);
    }
    if let Some(n) = args.layer_info {
        return layer_info(&args, n);
    }
    let (stream, layers) = compression(&args).map_err(MainError::Usage)?;
    let target = target(&args)?;
    let conf_path = args.conf.clone().unwrap_or_default();
    let conf = read(&conf_path)?;
    let prep = stream_layered::prepare(&conf_path, &conf, &options(&args))?;
    if let Target::Registry(dest) = target {
        return push(&args, &prep, dest, layers);
    }
    // Locked for the whole image (the registry push writes from several threads, unlocked).
    let mut stderr = io::stderr().lock();
    match target {
        Target::Registry(_) => {}
        Target::Dir(dir) => oci::write_dir(&prep, layers, dir, &mut stderr)?,
        Target::Stdout(out) => {
            let out = Compressor::new(out, stream.kind, stream.level)?;
            if args.format() == Format::OciArchive {
                oci::write_archive(&prep, layers, out, &mut stderr)?;
            } else {
                docker_archive::write(&prep, out, &mut stderr)?;
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    dockertools_common::cli::main("stream-layered", run)
}
