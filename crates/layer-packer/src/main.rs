//! `layer-packer`: mkPureLayer and customisation layers in one pass.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args as ClapArgs, Parser, Subcommand};
use dockertools_common::atomic::AtomicDir;
use dockertools_common::cli;
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
    #[arg(long, value_parser = cli::parse_mtime)]
    mtime: Option<i64>,
    /// Add an empty directory PATH with MODE (octal) after merging, like `mkdir -p PATH && chmod MODE PATH` in extraCommands.
    #[arg(long = "mkdir", value_name = "PATH:MODE", value_parser = parse_mkdir)]
    mkdirs: Vec<(Vec<u8>, u32)>,
    /// Most entries the layer may have, counting a followed directory symlink's target each time
    /// (a bound on what a symlink bomb can expand to; about 200 bytes of memory each).
    #[arg(long, value_name = "N", default_value_t = layer_packer::tree::MAX_ENTRIES)]
    max_entries: u64,
    /// Source folders, merged in order.
    #[arg(required = true)]
    sources: Vec<PathBuf>,
}

/// `--mtime`, else `$SOURCE_DATE_EPOCH`, else Nix's 315532800.
fn mtime_of(common: &Common, env_mtime: Option<i64>) -> i64 {
    common.mtime.or(env_mtime).unwrap_or(315532800)
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
    #[error(transparent)]
    Epoch(#[from] cli::BadSourceDateEpoch),
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

/// The subcommand's common flags, how it merges, who owns the entries and the base JSON path.
fn plan(cmd: Cmd, env_mtime: Option<i64>, names: &Names) -> (Common, Mode, Owner, Option<PathBuf>) {
    match cmd {
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
            let owner = Owner {
                mtime: mtime_of(&common, env_mtime),
                uid,
                gid,
                uname: names.user(uid),
                gname: names.group(gid),
            };
            (common, Mode::Pure(links), owner, base_json)
        }
        Cmd::Customisation { common } => {
            // `--numeric-owner` 0:0: no owner names.
            let owner = Owner {
                mtime: mtime_of(&common, env_mtime),
                ..Owner::default()
            };
            (common, Mode::Join, owner, None)
        }
    }
}

/// The base JSON at `path`, which must be an object.
fn read_base_json(path: &Path) -> Result<serde_json::Value, MainError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| Error::BaseJson {
            path: path.to_path_buf(),
            source,
        })?;
    if !v.is_object() {
        let path = path.to_path_buf();
        return Err(Error::BaseNotObject { path }.into());
    }
    Ok(v)
}

fn run(args: Args) -> Result<(), MainError> {
    let env_mtime = cli::source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH"))?;
    let (common, mode, owner, base_json) = plan(args.cmd, env_mtime, &Names::system());
    // Read the base JSON first: a bad one must fail before anything is written.
    let base = base_json.as_deref().map(read_base_json).transpose()?;
    // The output is checked (and its temporary folder made) before any work.
    let stdout = Path::new("stdout");
    let out = if common.out == Path::new("-") {
        Out::Stdout(cli::stdout().map_err(io_err(stdout))?)
    } else {
        Out::Dir(AtomicDir::create(&common.out).map_err(io_err(&common.out))?)
    };
    let sources = absolute_sources(&common.sources)?;
    let tree = layer_packer::build_tree(mode, &sources, &common.mkdirs, common.max_entries)?;
    match out {
        Out::Stdout(mut w) => {
            // The customisation layer is packed with `--numeric-owner`.
            let packed = layer_packer::pack(&tree, &owner, mode == Mode::Join, &mut w)
                .map_err(naming_output(stdout))?
                .1;
            w.flush().map_err(io_err(stdout))?;
            eprintln!("sha256:{}\n{}", packed.sha256, packed.tarsum);
            Ok(())
        }
        Out::Dir(dir) => write_out_dir(
            dir,
            &tree,
            &owner,
            mode,
            base.as_ref().zip(base_json.as_ref()),
        ),
    }
}

/// Where the layer goes.
enum Out {
    Stdout(io::BufWriter<io::StdoutLock<'static>>),
    Dir(AtomicDir),
}

/// A write error of the packer, named after the output it was writing.
fn naming_output(path: &Path) -> impl FnOnce(Error) -> MainError + '_ {
    move |e| match e {
        Error::Output(source) => io_err(path)(source),
        other => other.into(),
    }
}

/// Packs into OUT/layer.tar (with OUT/checksum, or OUT/json and OUT/VERSION), atomically.
fn write_out_dir(
    dir: AtomicDir,
    tree: &layer_packer::tree::Tree,
    owner: &Owner,
    mode: Mode,
    base: Option<(&serde_json::Value, &PathBuf)>,
) -> Result<(), MainError> {
    let named = |name: &str| dir.target().join(name);
    let tar_path = named("layer.tar");
    let file = dir.create_file("layer.tar").map_err(io_err(&tar_path))?;
    let (w, packed) = layer_packer::pack(
        tree,
        owner,
        mode == Mode::Join,
        io::BufWriter::with_capacity(1 << 20, file),
    )
    .map_err(naming_output(&tar_path))?;
    w.into_inner().map_err(|e| MainError::Io {
        path: tar_path.clone(),
        source: e.into_error(),
    })?;
    let write = |name: &str, bytes: &[u8]| {
        dir.create_file(name)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(io_err(&named(name)))
    };
    if mode == Mode::Join {
        write("checksum", format!("{}\n", packed.sha256).as_bytes())?;
    }
    if let Some((base, base_path)) = base {
        let json = layer_packer::jshon::layer_json(base, &packed.tarsum).ok_or_else(|| {
            Error::BaseNotObject {
                path: base_path.clone(),
            }
        })?;
        write("json", json.as_bytes())?;
        write("VERSION", b"1.0")?;
    }
    let out = dir.target().to_path_buf();
    dir.commit().map_err(io_err(&out))
}

fn main() -> ExitCode {
    cli::main("layer-packer", run)
}
