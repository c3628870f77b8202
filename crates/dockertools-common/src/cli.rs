//! CLI plumbing every tool's `main` shares (the role ripgrep's grep-cli plays): the `main`
//! wrapper, standard input and output, usage errors, `SOURCE_DATE_EPOCH` and `--mtime`.
//!
//! The wrapper [`main`]:
//! - knows which of stdin and stdout the process was started with closed (Rust's runtime then
//!   points them at `/dev/null`): [`stdin`] and [`stdout`] fail with "stdin is closed" or
//!   "stdout is closed" instead of reading nothing or writing into the void;
//! - removes the live temporaries of [`crate::atomic`] on SIGINT, SIGTERM and SIGHUP, then dies
//!   of the signal as it would have;
//! - sizes rayon's global pool, which every parallel stage uses, to `$NIX_BUILD_CORES` when a
//!   Nix builder sets it (and `$RAYON_NUM_THREADS` does not override it);
//! - parses the arguments, printing clap's usage errors as `<tool>: <message>` (exit 2);
//! - prints a failure once as `<tool>: <message>` (exit 1, or 2 for a [`UsageError`]) and treats a
//!   closed downstream pipe as success, as ripgrep does.

use std::error::Error;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

static STDIN_CLOSED: AtomicBool = AtomicBool::new(false);
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// A usage error found after argument parsing (an option that does not fit the mode): the
/// wrapper prints it like clap's own and exits 2. A tool's error enum carries it as a
/// `#[source]` (not `transparent`, which would hide it from the source chain).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// True when `err` or any error in its source chain is a broken pipe.
pub fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    chain(err).any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn chain<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&e: &&'a (dyn Error + 'static)| e.source())
}

/// Runs a tool: guards stdio, installs the signal cleanup, sizes the thread pool, parses `A`,
/// runs `run`, and turns its result into the exit code.
pub fn main<A, E>(tool: &str, run: impl FnOnce(A) -> Result<(), E>) -> ExitCode
where
    A: clap::Parser,
    E: Error + 'static,
{
    if let Err(code) = start(tool, None) {
        return code;
    }
    let args = match A::try_parse() {
        Ok(a) => a,
        Err(e) => return clap_exit(tool, &e),
    };
    exit(tool, run(args))
}

/// [`main`] for a tool that has parsed its own arguments; `threads` (from a flag) takes the
/// place of `$NIX_BUILD_CORES`.
pub fn main_raw<E: Error + 'static>(
    tool: &str,
    threads: Option<usize>,
    run: impl FnOnce() -> Result<(), E>,
) -> ExitCode {
    if let Err(code) = start(tool, threads) {
        return code;
    }
    exit(tool, run())
}

/// What every tool does first: stdio, signals, threads.
fn start(tool: &str, threads: Option<usize>) -> Result<(), ExitCode> {
    guard_stdio();
    let threads = threads.or_else(cores_from_env);
    let started = install_signal_cleanup().and_then(|()| size_thread_pool(threads));
    started.map_err(|e| {
        let _ = writeln!(io::stderr().lock(), "{tool}: cannot start: {e}");
        ExitCode::from(1)
    })
}

/// The threads a Nix builder grants (`$NIX_BUILD_CORES`, where 0 means every core), unless
/// `$RAYON_NUM_THREADS` says otherwise (rayon reads that itself).
fn cores_from_env() -> Option<usize> {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return None;
    }
    let cores = std::env::var("NIX_BUILD_CORES").ok()?;
    cores.trim().parse::<usize>().ok().filter(|&n| n > 0)
}

/// Makes rayon's global pool (which every parallel stage uses, compression included) `threads`
/// wide; `None` keeps rayon's default.
fn size_thread_pool(threads: Option<usize>) -> io::Result<()> {
    let Some(n) = threads else { return Ok(()) };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(io::Error::other)
}

/// Prints help and version as clap does, and usage errors as `<tool>: <message>` (exit 2).
fn clap_exit(tool: &str, e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(2);
    }
    let text = e.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let _ = write!(io::stderr().lock(), "{tool}: {text}");
    ExitCode::from(2)
}

/// Turns a tool's result into its exit code, printing the error on stderr.
pub fn exit<E: Error + 'static>(tool: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr().lock(), "{tool}: {e}");
            let usage = chain(&e).any(|e| e.is::<UsageError>());
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// Records which of descriptors 0 and 1 are closed. It runs as an ELF constructor, before
/// Rust's runtime start-up quietly opens `/dev/null` on every closed standard descriptor (which
/// keeps later files from taking their numbers, but would turn a closed stdout into a sink).
extern "C" fn probe_stdio() {
    let closed = |fd: io::Result<std::os::fd::OwnedFd>| fd.is_err();
    STDIN_CLOSED.store(
        closed(io::stdin().as_fd().try_clone_to_owned()),
        Ordering::Relaxed,
    );
    STDOUT_CLOSED.store(
        closed(io::stdout().as_fd().try_clone_to_owned()),
        Ordering::Relaxed,
    );
}

/// The project's one `unsafe_code` allowance: placing [`probe_stdio`] in `.init_array` is the
/// only way to see the descriptors before the runtime replaces closed ones.
#[used]
#[allow(unsafe_code)]
#[link_section = ".init_array"]
static PROBE_STDIO: extern "C" fn() = probe_stdio;

/// Keeps the constructor's object file linked into every tool that uses the wrapper.
fn guard_stdio() {
    std::hint::black_box(&PROBE_STDIO);
}

/// On SIGINT, SIGTERM and SIGHUP: remove the live temporaries, then die of the signal.
fn install_signal_cleanup() -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                crate::atomic::remove_all_temporaries();
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

fn closed(what: &str) -> io::Error {
    io::Error::other(format!("{what} is closed"))
}

/// Standard output, locked and buffered for large sequential writes; an error when the process
/// started with it closed.
pub fn stdout() -> io::Result<io::BufWriter<io::StdoutLock<'static>>> {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Err(closed("stdout"));
    }
    Ok(io::BufWriter::with_capacity(1 << 20, io::stdout().lock()))
}

/// Standard input; an error when the process started with it closed.
pub fn stdin() -> io::Result<io::Stdin> {
    if STDIN_CLOSED.load(Ordering::Relaxed) {
        return Err(closed("stdin"));
    }
    Ok(io::stdin())
}

/// Reads a whole input file, `-` meaning standard input.
pub fn read_input(path: &Path) -> io::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut stdin()?, &mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path)
}

/// An `--mtime` that is not a number of seconds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a number of seconds")]
pub struct BadMtime(pub String);

/// Parses a time in seconds since the epoch, optionally written `@N` as GNU tar's `--mtime`
/// (a clap value parser).
pub fn parse_mtime(s: &str) -> Result<i64, BadMtime> {
    s.strip_prefix('@')
        .unwrap_or(s)
        .parse::<i64>()
        .map_err(|_| BadMtime(s.to_string()))
}

/// A `SOURCE_DATE_EPOCH` that is not a number of seconds.
#[derive(Debug, thiserror::Error)]
#[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds")]
pub struct BadSourceDateEpoch(pub std::ffi::OsString);

/// `$SOURCE_DATE_EPOCH` as given by the environment value `value`: `None` when unset, an error
/// when it is not a number of seconds that fits (GNU tar's `--mtime=@$SOURCE_DATE_EPOCH` fails).
pub fn source_date_epoch(
    value: Option<std::ffi::OsString>,
) -> Result<Option<i64>, BadSourceDateEpoch> {
    let Some(v) = value else { return Ok(None) };
    match v.to_str().map(|s| s.trim().parse::<i64>()) {
        Some(Ok(n)) => Ok(Some(n)),
        _ => Err(BadSourceDateEpoch(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_source_date_epoch_is_an_error() {
        assert!(source_date_epoch(None).is_ok_and(|v| v.is_none()));
        assert!(source_date_epoch(Some("315532800".into())).is_ok_and(|v| v == Some(315532800)));
        for bad in ["abc", "", "99999999999999999999", "1.5"] {
            assert!(source_date_epoch(Some(bad.into())).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mtimes_are_seconds_with_an_optional_at() {
        assert_eq!(parse_mtime("@5"), Ok(5));
        assert_eq!(parse_mtime("-5"), Ok(-5));
        assert!(parse_mtime("five").is_err());
    }

    #[test]
    fn usage_errors_exit_2_and_other_errors_exit_1() {
        let usage = exit::<UsageError>("t", Err(UsageError("bad flag".into())));
        let other = exit::<io::Error>("t", Err(io::Error::other("bad input")));
        let pipe = exit::<io::Error>("t", Err(io::ErrorKind::BrokenPipe.into()));
        assert_eq!(format!("{usage:?}"), format!("{:?}", ExitCode::from(2)));
        assert_eq!(format!("{other:?}"), format!("{:?}", ExitCode::from(1)));
        assert_eq!(format!("{pipe:?}"), format!("{:?}", ExitCode::SUCCESS));
    }
}
