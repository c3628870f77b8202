//! `cargo xtask tidy`: the invariants of ARCHITECTURE.md that a text scan can enforce, as
//! rust-analyzer's tidy test does. It fails (listing every finding) when:
//! - a library reads the clock, the environment, the working directory or the pid
//!   (**Invariant:** no library reads the clock, the environment or process-global state);
//! - a library names `HashMap`/`HashSet` in a file that does not say `tidy: lookup only` (that
//!   its hash maps are only looked up, never iterated into output)
//!   (**Invariant:** every iteration over names is in sorted order);
//! - a crate declares a dependency that none of its sources use;
//! - a `.rs` file does not start with a `//!` line;
//! - a test is skipped or expects a panic (`#[ignore]`, `#[should_panic]`), or a stub stands in
//!   for behaviour (`todo!`, `unimplemented!`);
//! - `unsafe` appears outside the one constructor in `cli.rs` that the crate doc explains.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::root;

/// What a library may not call: the clock, the environment, the process' own state.
const LIBRARY_FORBIDDEN: &[&str] = &[
    "SystemTime::now",
    "Instant::now",
    "env::var",
    "env::args",
    "env::current_dir",
    "process::id",
    "process::exit",
];

/// Files exempt from the library rules, with the reason.
const LIBRARY_EXEMPT: &[(&str, &str)] = &[(
    "crates/dockertools-common/src/cli.rs",
    "the main wrapper: it is main's own plumbing",
)];

/// The keyword, spelled so that this file does not find itself.
const UNSAFE: &str = concat!("un", "safe");

/// The project's one `unsafe_code` allowance.
const UNSAFE_ALLOWED: &str = "crates/dockertools-common/src/cli.rs";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            if !matches!(name, "target" | "corpus" | "artifacts" | "seeds") {
                rust_files(&p, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
    Ok(())
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// A line with its comment (`//` onwards) removed, so that prose can name what code may not.
fn code_part(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

fn is_library(rel: &str) -> bool {
    rel.starts_with("crates/")
        && rel.contains("/src/")
        && !rel.ends_with("/main.rs")
        && !rel.contains("/fuzz/")
        && !LIBRARY_EXEMPT.iter().any(|(f, _)| *f == rel)
}

fn check_file(path: &Path, findings: &mut Vec<String>) -> Result<()> {
    let text = fs::read_to_string(path)?;
    let rel = rel(path);
    if !text.starts_with("//!") {
        findings.push(format!("{rel}: does not start with a `//!` line"));
    }
    let library = is_library(&rel);
    // A file that uses hash maps says, once, that it only looks things up in them.
    let lookup_only = text.contains("tidy: lookup only");
    let mut in_tests = false;
    for (n, line) in text.lines().enumerate() {
        let at = format!("{rel}:{}", n + 1);
        let code = code_part(line);
        // Unit tests at the end of a library file may time and name things as they like.
        if line.trim_start().starts_with("#[cfg(test)]") {
            in_tests = true;
        }
        // Spelled in pieces so that this file does not find itself.
        let stubs = [
            concat!("#[", "ignore"),
            concat!("#[", "should_panic"),
            concat!("todo", "!("),
            concat!("unimplemented", "!("),
        ];
        for stub in stubs {
            if code.contains(stub) {
                findings.push(format!("{at}: `{stub}` (tests assert, stubs do not ship)"));
            }
        }
        let unsafe_word = code
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == UNSAFE);
        if unsafe_word && rel != UNSAFE_ALLOWED {
            findings.push(format!("{at}: `{UNSAFE}` outside {UNSAFE_ALLOWED}"));
        }
        if !library || in_tests {
            continue;
        }
        for f in LIBRARY_FORBIDDEN {
            if code.contains(f) {
                findings.push(format!("{at}: a library calls `{f}`; main passes it in"));
            }
        }
        let hashed = code.contains("HashMap") || code.contains("HashSet");
        if hashed && !lookup_only {
            findings.push(format!(
                "{at}: HashMap/HashSet in a library whose file does not say `tidy: lookup only`"
            ));
        }
    }
    Ok(())
}

/// Dependency names declared in a Cargo.toml's `[dependencies]`-like sections.
fn declared_deps(manifest: &str) -> Vec<String> {
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line.ends_with("dependencies]");
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line
            .split(['=', '.', ' '])
            .next()
            .unwrap_or("")
            .trim_matches('"');
        if !name.is_empty() && !deps.iter().any(|d| d == name) {
            deps.push(name.to_string());
        }
    }
    deps
}

fn check_deps(crate_dir: &Path, findings: &mut Vec<String>) -> Result<()> {
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.exists() {
        return Ok(());
    }
    let mut sources = Vec::new();
    rust_files(crate_dir, &mut sources)?;
    let mut text = String::new();
    for s in &sources {
        text.push_str(&fs::read_to_string(s)?);
    }
    for dep in declared_deps(&fs::read_to_string(&manifest)?) {
        let ident = dep.replace('-', "_");
        let used = [
            format!("{ident}::"),
            format!("use {ident}"),
            format!("{ident}!"),
        ]
        .iter()
        .any(|p| text.contains(p.as_str()));
        if !used {
            findings.push(format!(
                "{}: dependency `{dep}` is not used by its sources",
                rel(&manifest)
            ));
        }
    }
    Ok(())
}

/// Runs every check; fails listing the findings.
pub fn main() -> Result<()> {
    let root = root();
    let mut findings = Vec::new();
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        rust_files(&root.join(dir), &mut files)?;
    }
    for f in &files {
        check_file(f, &mut findings)?;
    }
    let mut crate_dirs = vec![root.join("xtask"), root.join("tests")];
    for e in fs::read_dir(root.join("crates"))? {
        let p = e?.path();
        crate_dirs.push(p.clone());
        crate_dirs.push(p.join("fuzz"));
    }
    for c in &crate_dirs {
        check_deps(c, &mut findings)?;
    }
    if !findings.is_empty() {
        for f in &findings {
            eprintln!("tidy: {f}");
        }
        bail!("tidy: {} findings", findings.len());
    }
    eprintln!(
        "tidy: {} files and {} crates clean",
        files.len(),
        crate_dirs.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_deps_reads_every_spelling() {
        let toml = "[package]\nname = \"x\"\n[dependencies]\nclap.workspace = true\nserde = { version = \"1\" }\n\"a-b\" = \"1\"\n[dev-dependencies]\nsha2.workspace = true\n[lints]\nworkspace = true\n";
        assert_eq!(declared_deps(toml), ["clap", "serde", "a-b", "sha2"]);
    }

    #[test]
    fn prose_in_comments_is_not_code() {
        assert_eq!(code_part("let x = 1; // SystemTime::now"), "let x = 1; ");
    }
}
