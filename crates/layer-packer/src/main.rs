//! `layer-packer`: mkPureLayer and customisation layers in one pass.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args as ClapArgs, Parser, Subcommand};
use dockertools_common::names::Names;
use layer_packer::tree::Dirlinks;
use layer_packer::{Error, Mode, Owner};

/// Pack dockerTools layers byte-identical to GNU tar, with their sha256 and tarsum, in one pass.
///
/// `pure` replaces mkPureLayer (rsync of each SOURCE into the layer, tar | tee | tarsum, jshon):
/// it writes OUT/layer.tar, and with --base-json also OUT/json and OUT/VERSION.
/// `customisation` replaces streamLayeredImage's customisation layer (symlinkJoin of the
/// SOURCEs, tar --numeric-owner, sha256sum): it writes OUT/layer.tar and OUT/checksum.
/// With OUT `-` only the tar goes to stdout. Outputs are written atomically.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// mkPureLayer: merge the sources as `rsync -a --chown=U:G` would, pack with --owner/--group.
    Pure {
        #[command(flatten)]
        common: Common,
        /// The base JSON: write OUT/json (with the layer's tarsum as "checksum") and OUT/VERSION.
        #[arg(long, value_name = "FILE")]
        base_json: Option<PathBuf>,
        /// Owner id of every entry (mkPureLayer's uid); its name is looked up as GNU tar does.
        #[arg(long, default_value_t = 0)]
        uid: u64,
        /// Group id of every entry (mkPureLayer's gid).
        #[arg(long, default_value_t = 0)]
        gid: u64,
        /// Keep symlinks to directories (rsync -K, keepContentsDirlinks) instead of copying the directories (rsync -k).
        #[arg(long)]
        keep_dirlinks: bool,
    },
    /// streamLayeredImage's customisation layer: symlinkJoin of the sources, numeric owner 0:0.
    Customisation {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(ClapArgs)]
struct Common {
    /// Output folder (created; must not exist or be empty), or `-` for the tar on stdout.
    #[arg(long, short)]
    out: PathBuf,
    /// mtime of every entry (`--mtime=@N`); default $SOURCE_DATE_EPOCH, else 315532800.
    #[arg(long)]
    mtime: Option<String>,
    /// Add an empty directory PATH with MODE (octal) after merging, like `mkdir -p PATH && chmod MODE PATH` in extraCommands.
    #[arg(long = "mkdir", value_name = "PATH:MODE", value_parser = parse_mkdir)]
    mkdirs: Vec<(Vec<u8>, u32)>,
    /// Source folders, merged in order.
    #[arg(required = true)]
    sources: Vec<PathBuf>,
}

/// `--mtime`, else `$SOURCE_DATE_EPOCH`, else Nix's 315532800.
fn mtime_of(common: &Common, env_mtime: Option<i64>) -> Result<i64, Error> {
    Ok(common
        .mtime
        .as_deref()
        .map(parse_mtime)
        .transpose()?
        .or(env_mtime)
        .unwrap_or(315532800))
}

fn parse_mtime(s: &str) -> Result<i64, Error> {
    s.strip_prefix('@')
        .unwrap_or(s)
        .parse::<i64>()
        .map_err(|_| Error::Option(format!("--mtime {s:?} is not a number of seconds")))
}

fn parse_mkdir(s: &str) -> Result<(Vec<u8>, u32), String> {
    let (path, mode) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected PATH:MODE"))?;
    let mode = u32::from_str_radix(mode, 8)
        .map_err(|_| format!("{s:?}: {mode:?} is not an octal mode"))?;
    if mode > 0o7777 {
        return Err(format!("{s:?}: mode out of range"));
    }
    Ok((path.as_bytes().to_vec(), mode))
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Pack(#[from] Error),
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: exists and is not an empty directory", .0.display())]
    NotEmpty(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MainError + '_ {
    move |source| MainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The sources made absolute lexically, as Nix passes them: symlinkJoin's links to files are
/// the source's path, and a relative one would dangle in the image.
fn absolute_sources(sources: &[PathBuf]) -> Result<Vec<PathBuf>, MainError> {
    sources
        .iter()
        .map(|s| std::path::absolute(s).map_err(io_err(s)))
        .collect()
}

fn run(args: Args) -> Result<(), MainError> {
    let env_mtime = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    let names = Names::system();
    let (common, mode, owner, base_json) = match args.cmd {
        Cmd::Pure {
            common,
            base_json,
            uid,
            gid,
            keep_dirlinks,
        } => {
            let links = if keep_dirlinks {
                Dirlinks::Keep
            } else {
                Dirlinks::Copy
            };
            let mtime = mtime_of(&common, env_mtime)?;
            let owner = Owner {
                mtime,
                uid,
                gid,
                uname: names.user(uid),
                gname: names.group(gid),
            };
            (common, Mode::Pure(links), owner, base_json)
        }
        Cmd::Customisation { common } => {
            let mtime = mtime_of(&common, env_mtime)?;
            let owner = Owner {
                mtime,
                uid: 0,
                gid: 0,
                uname: Vec::new(),
                gname: Vec::new(),
            };
            (common, Mode::Join, owner, None)
        }
    };
    // Read the base JSON first: a bad one must fail before anything is written.
    let base = match &base_json {
        Some(p) => {
            let bytes = fs::read(p).map_err(io_err(p))?;
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::BaseJson {
                    path: p.clone(),
                    why: e.to_string(),
                })?;
            if !v.is_object() {
                return Err(Error::BaseJson {
                    path: p.clone(),
                    why: "not a JSON object".into(),
                }
                .into());
            }
            Some(v)
        }
        None => None,
    };
    let sources = absolute_sources(&common.sources)?;
    let tree = layer_packer::build_tree(mode, &sources, &common.mkdirs)?;
    // The customisation layer is packed with `--numeric-owner`.
    let numeric_owner = mode == Mode::Join;
    if common.out == Path::new("-") {
        let mut out = dockertools_common::cli::stdout();
        let (w, packed) = layer_packer::pack(&tree, &owner, numeric_owner, &mut out)?;
        w.flush().map_err(io_err(Path::new("stdout")))?;
        eprintln!("sha256:{}\n{}", packed.sha256, packed.tarsum);
        return Ok(());
    }
    let out = &common.out;
    if let Ok(mut entries) = fs::read_dir(out) {
        if entries.next().is_some() {
            return Err(MainError::NotEmpty(out.clone()));
        }
    } else if out.symlink_metadata().is_ok() {
        return Err(MainError::NotEmpty(out.clone()));
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<(), MainError> {
        fs::create_dir(&temp).map_err(io_err(&temp))?;
        let tar_path = temp.join("layer.tar");
        let file = fs::File::create(&tar_path).map_err(io_err(&tar_path))?;
        let (w, packed) = layer_packer::pack(
            &tree,
            &owner,
            numeric_owner,
            io::BufWriter::with_capacity(1 << 20, file),
        )?;
        w.into_inner().map_err(|e| MainError::Io {
            path: tar_path.clone(),
            source: e.into_error(),
        })?;
        if mode == Mode::Join {
            let p = temp.join("checksum");
            fs::write(&p, format!("{}\n", packed.sha256)).map_err(io_err(&p))?;
        }
        if let (Some(base), Some(base_path)) = (&base, &base_json) {
            let json = layer_packer::jshon::layer_json(base, &packed.tarsum).ok_or_else(|| {
                Error::BaseJson {
                    path: base_path.clone(),
                    why: "not a JSON object".into(),
                }
            })?;
            let p = temp.join("json");
            fs::write(&p, json).map_err(io_err(&p))?;
            let p = temp.join("VERSION");
            fs::write(&p, "1.0").map_err(io_err(&p))?;
        }
        if out.exists() {
            fs::remove_dir(out).map_err(io_err(out))?;
        }
        fs::rename(&temp, out).map_err(io_err(out))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&temp);
    }
    result
}

fn main() -> ExitCode {
    dockertools_common::cli::exit("layer-packer", run(Args::parse()))
}
