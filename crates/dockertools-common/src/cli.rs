//! The `main` wrapper every tool uses: prints an error once as `<tool>: <message>`,
//! maps results to exit codes (0 ok, 1 failure; clap itself exits 2 on usage errors),
//! and treats a closed downstream pipe as success, as ripgrep does.

use std::error::Error;
use std::io::{self, Write};
use std::process::ExitCode;

/// True when `err` or any error in its source chain is a broken pipe.
pub fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    let mut cur: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// Turns a tool's result into its exit code, printing the error on stderr.
pub fn exit<E: Error + 'static>(tool: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr().lock(), "{tool}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Standard output, locked and buffered for large sequential writes.
pub fn stdout() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::with_capacity(1 << 20, io::stdout().lock())
}

/// Reads a whole input file, `-` meaning standard input.
pub fn read_input(path: &std::path::Path) -> io::Result<Vec<u8>> {
    if path == std::path::Path::new("-") {
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut io::stdin().lock(), &mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path)
}
