//! `cargo xtask demo [--nix] [--out DIR]`: builds the release tools and an image end to end with
//! `nix/example/build-image.sh`, from the bundled example tree (default) or from a real Nix store
//! built by nix-bin (`--nix`). Progress goes to stderr; the last lines say where the image is,
//! its digest and how to load it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Result};

use crate::{cargo, root, run};

/// Runs the demo.
pub fn main(args: &[String]) -> Result<()> {
    let mut nix = false;
    let mut out = root().join("demo-out");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--nix" => nix = true,
            "--out" => match it.next() {
                Some(dir) => out = PathBuf::from(dir),
                None => bail!("--out needs a folder"),
            },
            other => bail!("unknown demo argument {other:?} (use --nix and --out DIR)"),
        }
    }
    eprintln!("demo: building the tools (cargo build --release)");
    run(cargo().args(["build", "--release", "--workspace", "--quiet"]))?;
    let bin = root().join("target/release");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("nix/example/build-image.sh"));
    if nix {
        cmd.arg("--nix");
    }
    cmd.arg(&out).env("PATH", path);
    run(&mut cmd)
}
