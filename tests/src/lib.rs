//! Helpers for the pipeline tests: where the built binaries are, and running them.

use std::path::PathBuf;

/// Folder of the built tool binaries: `$DOCKERTOOLS_BIN`, else `target/release`, else `target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKERTOOLS_BIN") {
        return PathBuf::from(dir);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let release = root.join("target/release");
    if release.join("stream-layered").exists() {
        return release;
    }
    root.join("target/debug")
}

/// Path of one tool binary.
pub fn tool(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// True when running under CI, where a missing outside program is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}
