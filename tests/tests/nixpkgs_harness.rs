//! nixpkgs' real dockerTools expression (`../shared/reference/nixpkgs`), built by nix-bin with
//! the package set of `tests/nixpkgs-harness`: every image twice, (a) as nixpkgs has it and (b)
//! with `nix/overlay.nix`, and each pair compared as its case's kind says (bytes, decompressed
//! bytes plus a `--check` rebuild of the compressed output, all but the creation time, or a
//! merge without nixpkgs' `null` repositories member).
//!
//! (a) uses nixpkgs' Go tarsum when `DOCKERTOOLS_HARNESS_GO` (a go binary) and
//! `DOCKERTOOLS_HARNESS_MOBY_SRC` (a folder holding moby's
//! `daemon/builder/remotecontext/internal/tarsum`) are set, and our tarsum otherwise.
//! `DOCKERTOOLS_HARNESS_SALT=<anything new>` rebuilds every derivation, to time a fresh run.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use pipeline_tests::{bin_dir, ok, require, require_root, root, tool, TempDir};

/// Nix settings for an offline build without a daemon; builders reach host programs, so no
/// sandbox (and never host folders as sandbox paths: Nix 2.8 mounts them writable).
const NIX_CONFIG: &str = "build-users-group =\nsubstituters =\nexperimental-features = nix-command\nsandbox = false\nmax-jobs = 2\ncores = 2";

fn harness() -> PathBuf {
    root().join("tests/nixpkgs-harness")
}

fn reference() -> PathBuf {
    root()
        .join("../shared/reference/nixpkgs")
        .canonicalize()
        .expect("the nixpkgs reference at ../shared/reference/nixpkgs")
}

/// The host Python's real executable, if it can import igraph and toolz (the pipeline needs them).
fn python() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys, igraph, toolz; print(sys.executable)"])
        .output()
        .ok()?;
    if !out.status.success() {
        assert!(
            !pipeline_tests::in_ci(),
            "python3 with igraph and toolz is required under CI (pip install igraph toolz)"
        );
        eprintln!("SKIPPED: python3 cannot import igraph and toolz");
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn ready() -> Option<String> {
    let programs = [
        "nix-build",
        "fakeroot",
        "getopt",
        "jshon",
        "sponge",
        "rsync",
        "pigz",
        "zstd",
        "jq",
        "file",
        "lndir",
        "proot",
        "sqlite3",
    ];
    if !require_root() || !programs.iter().all(|p| require(p)) {
        return None;
    }
    for t in [
        "tarsum",
        "stream-layered",
        "popularity-sorter",
        "merge-images",
        "fake-nss",
    ] {
        tool(t);
    }
    python()
}

/// The harness's arguments: reference, tools, Python, and the Go tarsum's when given.
fn harness_args(python: &str) -> Vec<String> {
    let mut args = vec![
        "--argstr".into(),
        "nixpkgs".into(),
        reference().display().to_string(),
        "--argstr".into(),
        "tools".into(),
        bin_dir()
            .canonicalize()
            .expect("tools folder")
            .display()
            .to_string(),
        "--argstr".into(),
        "python3".into(),
        python.into(),
    ];
    for (var, arg) in [
        ("DOCKERTOOLS_HARNESS_GO", "go"),
        ("DOCKERTOOLS_HARNESS_MOBY_SRC", "mobySrc"),
        ("DOCKERTOOLS_HARNESS_SALT", "salt"),
    ] {
        if let Some(v) = std::env::var_os(var) {
            args.extend(["--argstr".into(), arg.into(), v.to_string_lossy().into()]);
        }
    }
    args
}

fn nix(program: &str, args: &[String]) -> Output {
    Command::new(program)
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .expect("nix runs")
}

/// Runs a nix command, once more on failure: a second attempt only rebuilds what failed, and
/// host programs outside the harness's builders can still hit Nix 2.8's signal 9 race.
fn nix_retried(program: &str, args: &[String], what: &str) -> Output {
    let first = nix(program, args);
    if first.status.success() {
        return first;
    }
    eprintln!(
        "{what} failed once, retrying: {}",
        tail(&String::from_utf8_lossy(&first.stderr), 20)
    );
    let second = nix(program, args);
    ok(&second, what);
    second
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One case of `cases.json`: its kind and the derivations of (a) and (b).
struct Case {
    name: String,
    kind: String,
    drv_a: String,
    drv_b: String,
}

fn cases(all: &Path) -> Vec<Case> {
    let text = std::fs::read(all.join("cases.json")).expect("cases.json");
    let index: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&text).expect("cases.json is JSON");
    index
        .into_iter()
        .map(|(name, v)| Case {
            name,
            kind: v["kind"].as_str().expect("kind").to_string(),
            drv_a: v["a"].as_str().expect("a").to_string(),
            drv_b: v["b"].as_str().expect("b").to_string(),
        })
        .collect()
}

/// Where two byte strings first differ, for the failure message.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    format!(
        "{} vs {} bytes, first difference at offset {at}",
        a.len(),
        b.len()
    )
}

fn same_bytes(a: &[u8], b: &[u8]) -> Result<(), String> {
    if a == b {
        return Ok(());
    }
    let mut msg = first_difference(a, b);
    if let (Some(ma), Some(mb)) = (tar_members(a), tar_members(b)) {
        let names_a: Vec<&str> = ma.iter().map(|m| m.name.as_str()).collect();
        let names_b: Vec<&str> = mb.iter().map(|m| m.name.as_str()).collect();
        if names_a != names_b {
            let at = names_a.iter().zip(&names_b).position(|(x, y)| x != y);
            let at = at.unwrap_or(names_a.len().min(names_b.len()));
            msg.push_str(&format!(
                "; member {at} is {:?} vs {:?} ({} vs {} members)",
                names_a.get(at),
                names_b.get(at),
                names_a.len(),
                names_b.len()
            ));
        } else if let Some((x, _)) = ma
            .iter()
            .zip(&mb)
            .find(|(x, y)| x.header != y.header || x.data != y.data)
        {
            msg.push_str(&format!("; first differing member {:?}", x.name));
        }
    }
    Err(msg)
}

fn decompressed(program: &str, file: &Path) -> Vec<u8> {
    // zstd ignores a symbolic link given as input, and every case is one (a/NAME).
    let file = file.canonicalize().expect("case output");
    let out = Command::new(program)
        .arg("-dc")
        .arg(&file)
        .output()
        .expect("decompressor runs");
    ok(&out, &format!("{program} -dc {}", file.display()));
    out.stdout
}

/// A tar member: its name (pax `path` applied), its header block and its data.
#[derive(PartialEq)]
struct Member {
    name: String,
    header: Vec<u8>,
    data: Vec<u8>,
}

fn octal(field: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    usize::from_str_radix(text, 8).ok()
}

fn c_string(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// The members of a ustar/pax/GNU archive, or None when the bytes are not one.
fn tar_members(bytes: &[u8]) -> Option<Vec<Member>> {
    let mut members = Vec::new();
    let mut off = 0;
    let mut long_name: Option<String> = None;
    while off + 512 <= bytes.len() {
        let header = &bytes[off..off + 512];
        if header.iter().all(|b| *b == 0) {
            return Some(members);
        }
        let size = octal(&header[124..136])?;
        let data = bytes.get(off + 512..off + 512 + size)?.to_vec();
        off += 512 + size.div_ceil(512) * 512;
        match header[156] {
            b'x' => {
                let text = String::from_utf8_lossy(&data);
                long_name = text
                    .lines()
                    .find_map(|l| l.split_once(" path=").map(|(_, p)| p.to_string()));
            }
            b'L' => long_name = Some(c_string(&data)),
            b'g' => {}
            _ => {
                let prefix = c_string(&header[345..500]);
                let short = c_string(&header[..100]);
                let name = long_name.take().unwrap_or(if prefix.is_empty() {
                    short
                } else {
                    format!("{prefix}/{short}")
                });
                members.push(Member {
                    name,
                    header: header.to_vec(),
                    data,
                });
            }
        }
    }
    None
}

/// A docker-archive with its creation time blanked: the config's `created` and history times,
/// and the config's name (its digest) in manifest.json.
fn without_time(bytes: &[u8]) -> Result<Vec<Member>, String> {
    let members = tar_members(bytes).ok_or("not a tar archive")?;
    let manifest = members
        .iter()
        .find(|m| m.name == "manifest.json")
        .ok_or("no manifest.json")?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest.data).map_err(|e| format!("manifest.json: {e}"))?;
    let config_name = manifest[0]["Config"]
        .as_str()
        .ok_or("no Config")?
        .to_string();
    let mut out = Vec::new();
    for m in members {
        if m.name == "manifest.json" {
            let mut v = manifest.clone();
            v[0]["Config"] = "CONFIG".into();
            out.push(Member {
                name: m.name,
                header: Vec::new(),
                data: v.to_string().into_bytes(),
            });
        } else if m.name == config_name {
            let mut v: serde_json::Value =
                serde_json::from_slice(&m.data).map_err(|e| format!("{config_name}: {e}"))?;
            v["created"] = "TIME".into();
            if let Some(history) = v["history"].as_array_mut() {
                for h in history {
                    h["created"] = "TIME".into();
                }
            }
            out.push(Member {
                name: "CONFIG".into(),
                header: Vec::new(),
                data: v.to_string().into_bytes(),
            });
        } else {
            out.push(m);
        }
    }
    Ok(out)
}

/// A docker-archive with its tag blanked: in manifest.json's RepoTags and in `repositories`.
fn without_tag(bytes: &[u8]) -> Result<Vec<Member>, String> {
    let untag = |repo_tag: &str| match repo_tag.rsplit_once(':') {
        Some((name, _)) => format!("{name}:TAG"),
        None => repo_tag.to_string(),
    };
    let mut out = Vec::new();
    for m in tar_members(bytes).ok_or("not a tar archive")? {
        let json = |m: &Member| -> Result<serde_json::Value, String> {
            serde_json::from_slice(&m.data).map_err(|e| format!("{}: {e}", m.name))
        };
        let data = match m.name.as_str() {
            "manifest.json" => {
                let mut v = json(&m)?;
                for image in v.as_array_mut().ok_or("manifest.json is no list")? {
                    if let Some(tags) = image["RepoTags"].as_array_mut() {
                        for t in tags.iter_mut() {
                            *t = untag(t.as_str().unwrap_or_default()).into();
                        }
                    }
                }
                v
            }
            "repositories" => {
                let mut v = json(&m)?;
                for tags in v
                    .as_object_mut()
                    .ok_or("repositories is no object")?
                    .values_mut()
                {
                    let ids: Vec<serde_json::Value> = tags
                        .as_object()
                        .map(|o| o.values().cloned().collect())
                        .unwrap_or_default();
                    *tags = serde_json::json!({ "TAG": ids });
                }
                v
            }
            _ => {
                out.push(m);
                continue;
            }
        };
        out.push(Member {
            name: m.name,
            header: Vec::new(),
            data: data.to_string().into_bytes(),
        });
    }
    Ok(out)
}

/// mergeImages writes `repositories` = `null` when no input has one; merge-images writes none
/// (README "Decisions"). Without that member, (a) must equal (b).
fn merge_without_null_repositories(a: &Path, b: &Path, tmp: &Path) -> Result<(), String> {
    let repos = Command::new("tar")
        .args(["-xOf"])
        .arg(a)
        .arg("repositories")
        .output()
        .expect("tar");
    if !repos.status.success() || repos.stdout != b"null\n" {
        return Err(format!(
            "(a) has no `repositories` holding null: {:?}",
            String::from_utf8_lossy(&repos.stdout)
        ));
    }
    let copy = tmp.join("merge-a.tar");
    std::fs::copy(a, &copy).expect("copy (a)");
    let out = Command::new("tar")
        .args(["--delete", "-f"])
        .arg(&copy)
        .arg("repositories")
        .output()
        .expect("tar --delete");
    ok(&out, "tar --delete repositories");
    same_bytes(
        &std::fs::read(&copy).expect("read"),
        &std::fs::read(b).expect("read"),
    )
}

/// Two folders of plain files: the same names, each with the same bytes.
fn same_files(a: &Path, b: &Path) -> Result<String, String> {
    let list = |dir: &Path| -> Result<Vec<String>, String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        names.sort();
        Ok(names)
    };
    let (names_a, names_b) = (list(a)?, list(b)?);
    if names_a != names_b {
        return Err(format!("files {names_a:?} vs {names_b:?}"));
    }
    for name in &names_a {
        let read = |dir: &Path| std::fs::read(dir.join(name)).map_err(|e| format!("{name}: {e}"));
        same_bytes(&read(a)?, &read(b)?).map_err(|why| format!("{name}: {why}"))?;
    }
    Ok(format!("{} files equal", names_a.len()))
}

/// Compares one pair; Ok carries a note for the summary.
fn compare(case: &Case, a: &Path, b: &Path, tmp: &Path) -> Result<String, String> {
    if case.kind == "dir" {
        return same_files(a, b);
    }
    let raw_a = std::fs::read(a).map_err(|e| format!("{}: {e}", a.display()))?;
    let raw_b = std::fs::read(b).map_err(|e| format!("{}: {e}", b.display()))?;
    match case.kind.as_str() {
        "bytes" => same_bytes(&raw_a, &raw_b).map(|()| format!("{} bytes", raw_a.len())),
        "gz" | "zst" => {
            let program = if case.kind == "gz" { "pigz" } else { "zstd" };
            let (da, db) = (decompressed(program, a), decompressed(program, b));
            same_bytes(&da, &db)?;
            let compressed = if raw_a == raw_b { "equal" } else { "different" };
            Ok(format!(
                "{} bytes decompressed, compressed bytes {compressed}",
                da.len()
            ))
        }
        "time" => {
            let (na, nb) = (without_time(&raw_a)?, without_time(&raw_b)?);
            if na == nb {
                Ok(format!("{} members equal but the time", na.len()))
            } else {
                let names: Vec<&str> = na
                    .iter()
                    .zip(&nb)
                    .filter(|(x, y)| x != y)
                    .map(|(x, _)| x.name.as_str())
                    .collect();
                let counts = (na.len(), nb.len());
                Err(format!(
                    "differ beyond the time in {names:?} (members {counts:?})"
                ))
            }
        }
        "tag" => {
            let (na, nb) = (without_tag(&raw_a)?, without_tag(&raw_b)?);
            if na != nb {
                return Err("differ beyond the tag".into());
            }
            let tags = if raw_a == raw_b {
                "the same tag"
            } else {
                "different tags"
            };
            Ok(format!("{} members equal but the tag ({tags})", na.len()))
        }
        "merge" => merge_without_null_repositories(a, b, tmp)
            .map(|()| "equal but (a)'s `repositories: null`".to_string()),
        other => Err(format!("unknown kind {other}")),
    }
}

#[test]
fn overlay_builds_nixpkgs_dockertools_images_byte_identical() {
    let Some(python) = ready() else { return };
    let tmp = TempDir::new("nixpkgs-harness");
    let started = Instant::now();
    let mut args = vec![
        harness().display().to_string(),
        "-A".into(),
        "all".into(),
        "--no-out-link".into(),
        "--keep-going".into(),
    ];
    args.extend(harness_args(&python));
    let built = nix_retried("nix-build", &args, "nix-build tests/nixpkgs-harness -A all");
    let all = PathBuf::from(
        String::from_utf8_lossy(&built.stdout)
            .trim()
            .lines()
            .last()
            .expect("an output path"),
    );
    eprintln!("built (a) and (b) in {:.0?}", started.elapsed());

    let cases = cases(&all);
    assert!(
        cases.len() >= 20,
        "expected every builder's cases, got {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let result = compare(
            case,
            &all.join("a").join(&case.name),
            &all.join("b").join(&case.name),
            &tmp.0,
        );
        match result {
            Ok(note) => eprintln!("same   {:<28} {:<6} {note}", case.name, case.kind),
            Err(why) => {
                eprintln!("DIFFER {:<28} {:<6} {why}", case.name, case.kind);
                failures.push(format!("{}: {why}", case.name));
            }
        }
    }

    // Rebuilding a compressed image must give the same compressed bytes.
    let checked = Instant::now();
    let mut check = vec![
        "--realise".to_string(),
        "--check".to_string(),
        "--keep-going".to_string(),
    ];
    for case in cases.iter().filter(|c| c.kind == "gz" || c.kind == "zst") {
        check.push(case.drv_a.clone());
        check.push(case.drv_b.clone());
    }
    let out = nix("nix-store", &check);
    if !out.status.success() {
        failures.push(format!(
            "a compressed image is not reproducible: {}",
            tail(&String::from_utf8_lossy(&out.stderr), 20)
        ));
    }
    eprintln!(
        "rebuilt {} compressed images in {:.0?}; harness total {:.0?}",
        check.len() - 3,
        checked.elapsed(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "pairs that differ:\n{}",
        failures.join("\n")
    );
}

#[test]
fn max_layers_one_is_refused_alike() {
    let Some(python) = ready() else { return };
    for variant in ["a", "b"] {
        let mut args = vec![
            "--eval".to_string(),
            harness().display().to_string(),
            "-A".into(),
            format!("failing.{variant}.max-layers-one.drvPath"),
        ];
        args.extend(harness_args(&python));
        let out = nix("nix-instantiate", &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "({variant}) evaluated maxLayers = 1");
        assert!(
            stderr.contains("must be greather than 1 (current value: 1)"),
            "({variant}) failed otherwise: {stderr}"
        );
    }
}
