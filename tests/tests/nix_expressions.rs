//! The nix/ expressions: every file parses, and the overlay evaluates against nixpkgs' real
//! dockerTools expression (`../shared/reference/nixpkgs`, with the package set of
//! `tests/nixpkgs-harness`), every builder reaching each swapped step.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use pipeline_tests::{ok, require, root};

fn nix_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("ls") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            nix_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "nix") {
            out.push(p);
        }
    }
}

#[test]
fn nix_files_parse_and_overlay_evaluates() {
    if !require("nix-instantiate") {
        return;
    }
    let mut files = Vec::new();
    nix_files(&root().join("nix"), &mut files);
    assert!(
        files.len() >= 9,
        "expected the package, overlay and test expressions"
    );
    let config = "build-users-group =\nexperimental-features = nix-command";
    for f in &files {
        let out = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(f)
            .env("NIX_CONFIG", config)
            .output()
            .expect("nix-instantiate");
        ok(&out, &format!("nix-instantiate --parse {}", f.display()));
    }
    let reference = root().join("../shared/reference/nixpkgs");
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict"])
        .arg(root().join("nix/tests/check-overlay.nix"))
        .arg("--argstr")
        .arg("nixpkgs")
        .arg(reference.canonicalize().expect("the nixpkgs reference"))
        .env("NIX_CONFIG", config)
        .output()
        .expect("nix-instantiate");
    ok(&out, "overlay evaluation");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true");
}
