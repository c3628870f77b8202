//! `cargo xtask bench [--reference DIR] [--baseline DIR] [--only TOOL]...`: the speed of every
//! tool against the program it replaces or a physical floor, measured in the same run on this
//! machine.
//!
//! Each tool has a module that adds its rows; this one holds the harness: the fixtures, the
//! timing (best of N runs), the thread scaling (a row run with `RAYON_NUM_THREADS=1` and with
//! every core, checking that the output bytes do not change), and the Markdown table.
//! Inputs are the conformance fixtures (s10, s300, s1g) and graphs from `mkstore.py --graph-only`.
//! `--reference DIR` adds the originals where they can run here: `DIR/stream_layered_image.py`,
//! `DIR/closure-graph.py`, `DIR/auto-layer.py` (not part of the repository).
//! `--baseline DIR` names another build's binaries (a copy of `target/release` from before a
//! change): the benches that support it time them in turn with the current ones, in the same run.
//! Nothing is asserted: the figures are for reading.

mod compress;
mod layer_packer;
mod merge_images;
mod popularity;
mod registry;
mod stream_layered;
mod tarsum;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::{cargo, conformance_dir, root, run};

/// One line of the table.
struct Row {
    what: String,
    secs: f64,
    bytes: Option<u64>,
    note: String,
}

/// What every bench module works with.
pub struct Ctx {
    bin: PathBuf,
    fix: PathBuf,
    work: PathBuf,
    conf_dir: PathBuf,
    reference: Option<PathBuf>,
    /// Another build's binaries, timed in turn with the current ones.
    baseline: Option<PathBuf>,
    /// Cores used by the "all threads" runs.
    cores: usize,
    rows: Vec<Row>,
}

impl Ctx {
    /// Path of a built tool.
    fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    /// Path of a scratch file.
    fn w(&self, name: &str) -> String {
        self.work.join(name).display().to_string()
    }

    /// A fixture store.
    fn store(&self, name: &str) -> PathBuf {
        self.fix.join("stores").join(name)
    }

    /// A fixture conf.
    fn conf(&self, name: &str) -> PathBuf {
        self.fix.join(format!("confs/{name}.json"))
    }

    /// Records a row and says so on stderr.
    fn push(&mut self, what: &str, secs: f64, bytes: Option<u64>, note: String) {
        eprintln!("bench: {what}: {secs:.3} s");
        self.rows.push(Row {
            what: what.into(),
            secs,
            bytes,
            note,
        });
    }

    /// Times `script` (bash) with 1 thread and with every core, pushes both rows and returns
    /// the time with every core. `out`, when given, is a file the script writes: its bytes must
    /// be the same for both thread counts.
    fn scaled(&mut self, what: &str, runs: usize, script: &str, out: Option<&str>) -> Result<f64> {
        let one = best_of(runs, || sh_env(script, &[("RAYON_NUM_THREADS", "1")]))?;
        let digest_one = out.map(file_sha256).transpose()?;
        let cores = self.cores.to_string();
        let all = best_of(runs, || sh_env(script, &[("RAYON_NUM_THREADS", &cores)]))?;
        let digest_all = out.map(file_sha256).transpose()?;
        if digest_one != digest_all {
            bail!("{what}: the output bytes depend on the thread count");
        }
        self.push(&format!("{what} [1 thread]"), one, None, String::new());
        let same = if out.is_some() { ", same bytes" } else { "" };
        self.push(
            &format!("{what} [{cores} threads]"),
            all,
            None,
            format!("{:.2}x speed-up over 1 thread{same}", one / all),
        );
        Ok(all)
    }
}

/// Best wall time of `runs` runs of `f`.
fn best_of(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Runs a bash script (with `set -euo pipefail`), output discarded.
fn sh(script: &str) -> Result<()> {
    sh_env(script, &[])
}

fn sh_env(script: &str, env: &[(&str, &str)]) -> Result<()> {
    let status = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail\n{script}")])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("bash")?;
    if !status.success() {
        bail!("benchmark command failed: {script}");
    }
    Ok(())
}

/// Runs a program directly (no shell, whose start-up would count in short timings),
/// output discarded.
fn exec(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| program.to_string())?;
    if !status.success() {
        bail!("benchmark command failed: {program} {args:?}");
    }
    Ok(())
}

/// A script that runs with `store` bind-mounted on /nix/store, in a private mount namespace.
fn in_store(store: &Path, script: &str) -> String {
    format!(
        "unshare -m --propagation private bash -c 'set -euo pipefail; mount --bind {} /nix/store; {}'",
        store.display(),
        script.replace('\'', "'\\''")
    )
}

/// SHA-256 over a file with the sha2 crate: the floor of anything that must hash those bytes.
fn sha_floor(path: &Path) -> Result<()> {
    std::hint::black_box(file_sha256(&path.display().to_string())?);
    Ok(())
}

fn file_sha256(path: &str) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| path.to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn size_of(path: &str) -> Result<u64> {
    Ok(fs::metadata(path).with_context(|| path.to_string())?.len())
}

/// The benches, by tool name (for `--only`).
type Bench = fn(&mut Ctx) -> Result<()>;
const BENCHES: &[(&str, Bench)] = &[
    ("tarsum", tarsum::bench),
    ("layer-packer", layer_packer::bench),
    ("stream-layered", stream_layered::bench),
    ("registry", registry::bench),
    ("merge-images", merge_images::bench),
    ("compress", compress::bench),
    ("popularity-sorter", popularity::bench),
];

/// Runs the benchmarks.
pub fn main(args: &[String]) -> Result<()> {
    let mut reference: Option<PathBuf> = None;
    let mut baseline: Option<PathBuf> = None;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reference" => reference = it.next().map(PathBuf::from),
            "--baseline" => baseline = it.next().map(PathBuf::from),
            "--only" => only.extend(it.next().cloned()),
            other => bail!("unknown bench argument {other:?}"),
        }
    }
    if let Some(bad) = only.iter().find(|o| !BENCHES.iter().any(|(n, _)| n == o)) {
        bail!("--only {bad:?}: not one of the benches");
    }
    run(cargo().args(["build", "--release", "--workspace", "--quiet"]))?;
    let conf_dir = conformance_dir()?;
    let fix = PathBuf::from("/tmp/dockertools-conformance");
    run(Command::new("bash")
        .arg(conf_dir.join("make-fixtures.sh"))
        .arg(&fix)
        .arg("--big"))?;
    let work = std::env::temp_dir().join(format!("dockertools-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let mut ctx = Ctx {
        bin: root().join("target/release"),
        fix,
        work,
        conf_dir,
        reference,
        baseline,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        rows: Vec::new(),
    };
    for (name, bench) in BENCHES {
        if only.is_empty() || only.iter().any(|o| o == name) {
            bench(&mut ctx)?;
        }
    }
    let _ = fs::remove_dir_all(&ctx.work);
    print_table(&ctx.rows);
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!("| benchmark | time (s) | throughput | notes |");
    println!("|---|---|---|---|");
    for r in rows {
        let tp = r
            .bytes
            .map(|b| format!("{:.0} MB/s", b as f64 / r.secs / 1e6))
            .unwrap_or_default();
        println!("| {} | {:.3} | {} | {} |", r.what, r.secs, tp, r.note);
    }
}
