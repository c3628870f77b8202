//! Project chores, run as `cargo xtask <command>`: `ci` (every check CI runs), `conformance`, `bench`, `demo`, `tidy`.

mod bench;
mod demo;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Tools with a conformance folder and a CLI, run by `cargo xtask ci`.
pub const CONFORMANCE_TOOLS: &[&str] = &[
    "fake-nss",
    "tarsum",
    "stream-layered",
    "merge-images",
    "popularity-sorter",
];

/// The project root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs a command in the project root, failing when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The cargo that runs xtask.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// The conformance suite folder: `../shared/conformance` beside the checkout.
pub fn conformance_dir() -> Result<PathBuf> {
    let dir = root().join("../shared/conformance");
    if !dir.join("run.sh").exists() {
        bail!("conformance suite not found at {}", dir.display());
    }
    Ok(dir)
}

fn conformance(extra: &[String]) -> Result<()> {
    run(cargo().args(["build", "--release", "--workspace", "--locked"]))?;
    let dir = conformance_dir()?;
    let mut cmd = Command::new("bash");
    cmd.arg(dir.join("run.sh"))
        .arg("--bin")
        .arg(root().join("target/release"));
    // Every tool is implemented, so the whole suite runs (the big cases only with --big);
    // layer-packer's data cases have no cmd and are run by tests/tests/layer_packer_cases.rs.
    cmd.args(extra);
    run(&mut cmd)
}

fn ci() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    tidy::main()?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args(["build", "--release", "--workspace", "--locked"]))?;
    run(cargo()
        .args(["test", "--workspace", "--locked"])
        .env("DOCKERTOOLS_BIN", root().join("target/release")))?;
    run(cargo()
        .args(["doc", "--no-deps", "--workspace", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    conformance(&[])
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("conformance") => conformance(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("demo") => demo::main(&args[1..]),
        Some("tidy") => tidy::main(),
        _ => bail!("usage: cargo xtask ci | conformance [run.sh args] | bench [--reference DIR] | demo [--nix] | tidy"),
    }
}
