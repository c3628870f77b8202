//! `fake-nss`: writes nixpkgs' fakeNss files into OUTDIR, or as a layer tar on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dockertools_common::cli;
use dockertools_common::names::Names;
use fake_nss::{Error, Lines, TarOptions};

/// Write /etc/passwd, /etc/group, /etc/nsswitch.conf and /var/empty exactly as nixpkgs' fakeNss.
///
/// Without --tar the files go into OUTDIR (which must not exist or be empty).
/// With --tar a GNU-format tar of the same tree goes to stdout, equal to GNU tar's
/// `--sort=name` tar of the fakeNss store path (folders 0555, files 0444).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Output folder (not with --tar).
    #[arg(required_unless_present = "tar", conflicts_with = "tar")]
    outdir: Option<PathBuf>,
    /// Extra /etc/passwd line, between root and nobody; repeatable, kept in order.
    #[arg(long = "extra-passwd-line", value_name = "LINE")]
    extra_passwd_line: Vec<String>,
    /// Extra /etc/group line, between root and nobody; repeatable, kept in order.
    #[arg(long = "extra-group-line", value_name = "LINE")]
    extra_group_line: Vec<String>,
    /// Write a layer tar to stdout instead of a folder.
    #[arg(long)]
    tar: bool,
    /// Modification time of every tar entry: seconds since the epoch, optionally written `@N`
    /// [default: 1].
    #[arg(long, value_parser = cli::parse_mtime, conflicts_with = "outdir")]
    mtime: Option<i64>,
    /// Owner of the tar entries: NAME, ID or NAME:ID, as GNU tar's --owner [default: 0].
    #[arg(long, conflicts_with = "outdir")]
    owner: Option<String>,
    /// Group of the tar entries: NAME, ID or NAME:ID, as GNU tar's --group [default: 0].
    #[arg(long, conflicts_with = "outdir")]
    group: Option<String>,
    /// Leave owner names empty in the tar, as GNU tar's --numeric-owner.
    #[arg(long, conflicts_with = "outdir")]
    numeric_owner: bool,
}

/// An `--owner` or `--group` that names no one.
#[derive(Debug, thiserror::Error)]
enum OwnerError {
    /// `NAME:ID` whose ID is not a number.
    #[error("{0:?}: invalid owner id")]
    BadId(String),
    /// A name that is not in `/etc/passwd` (or `/etc/group`).
    #[error("{0:?}: unknown user or group")]
    Unknown(String),
}

/// Resolves GNU tar's NAME, ID or NAME:ID owner spelling to (id, name).
fn owner(
    spec: &str,
    lookup_name: impl Fn(u64) -> Vec<u8>,
    lookup_id: impl Fn(&[u8]) -> Option<u64>,
) -> Result<(u64, Vec<u8>), OwnerError> {
    if let Some((name, id)) = spec.split_once(':') {
        let id = id
            .parse::<u64>()
            .map_err(|_| OwnerError::BadId(spec.to_string()))?;
        return Ok((id, name.as_bytes().to_vec()));
    }
    if let Ok(id) = spec.parse::<u64>() {
        return Ok((id, lookup_name(id)));
    }
    let id = lookup_id(spec.as_bytes()).ok_or_else(|| OwnerError::Unknown(spec.to_string()))?;
    Ok((id, spec.as_bytes().to_vec()))
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Nss(#[from] Error),
    #[error(transparent)]
    Owner(#[from] OwnerError),
    #[error("writing stdout: {0}")]
    Out(#[from] std::io::Error),
}

fn run(args: Args) -> Result<(), MainError> {
    let lines = Lines {
        passwd: args.extra_passwd_line,
        group: args.extra_group_line,
    };
    match args.outdir {
        Some(dir) => Ok(fake_nss::write_tree(&dir, &lines)?),
        None => {
            let names = Names::system();
            let owner_spec = args.owner.as_deref().unwrap_or("0");
            let (uid, uname) = owner(owner_spec, |id| names.user(id), |n| names.uid_of(n))?;
            let group_spec = args.group.as_deref().unwrap_or("0");
            let (gid, gname) = owner(group_spec, |id| names.group(id), |n| names.gid_of(n))?;
            let (uname, gname) = if args.numeric_owner {
                (Vec::new(), Vec::new())
            } else {
                (uname, gname)
            };
            let opts = TarOptions {
                mtime: args.mtime.unwrap_or(1),
                uid,
                uname,
                gid,
                gname,
                numeric_owner: args.numeric_owner,
            };
            // Build in memory first (a few KiB) so a failure never leaves a partial tar on stdout.
            let bytes = fake_nss::write_tar(Vec::new(), &lines, &opts)?;
            let mut out = cli::stdout()?;
            out.write_all(&bytes)?;
            out.flush()?;
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    cli::main("fake-nss", run)
}
