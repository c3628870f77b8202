//! `cargo xtask bench [--reference DIR] [--quick]`: speed of every tool against the program it
//! replaces or a physical floor, measured in the same run on this machine (best of 3 runs each).
//!
//! Inputs are the conformance fixtures (s10, s300, s1g) and graphs from `mkstore.py --graph-only`.
//! `--reference DIR` adds the originals where they can run here: `DIR/stream_layered_image.py`,
//! `DIR/closure-graph.py`, `DIR/auto-layer.py` (not part of the repo).
//! Results are printed as a Markdown table; nothing is asserted.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::{cargo, conformance_dir, root, run};

struct Row {
    what: String,
    secs: f64,
    bytes: Option<u64>,
    note: String,
}

fn best_of(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn sh(script: &str) -> Result<()> {
    let status = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail\n{script}")])
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

fn in_store(store: &Path, script: &str) -> Result<()> {
    sh(&format!(
        "unshare -m --propagation private bash -c 'set -euo pipefail; mount --bind {} /nix/store; {}'",
        store.display(),
        script.replace('\'', "'\\''")
    ))
}

fn sha_floor(path: &Path) -> Result<()> {
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    std::hint::black_box(h.finalize());
    Ok(())
}

/// Runs the benchmarks.
pub fn main(args: &[String]) -> Result<()> {
    let mut reference: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reference" => reference = it.next().map(PathBuf::from),
            other => bail!("unknown bench argument {other:?}"),
        }
    }
    run(cargo().args(["build", "--release", "--workspace", "--quiet"]))?;
    let bin = root().join("target/release");
    let conf_dir = conformance_dir()?;
    let fix = PathBuf::from("/tmp/dockertools-conformance");
    run(Command::new("bash")
        .arg(conf_dir.join("make-fixtures.sh"))
        .arg(&fix)
        .arg("--big"))?;
    let work = std::env::temp_dir().join(format!("dockertools-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let b = |tool: &str| bin.join(tool).display().to_string();
    let w = |p: &str| work.join(p).display().to_string();
    let stores = fix.join("stores");
    let mut rows: Vec<Row> = Vec::new();
    let mut push = |what: &str, secs: f64, bytes: Option<u64>, note: String| {
        eprintln!("bench: {what}: {secs:.3} s");
        rows.push(Row {
            what: what.into(),
            secs,
            bytes,
            note,
        });
    };

    // tarsum on a 1 GB layer tar, against SHA-256 (sha2, SHA-NI) over the same bytes.
    let big_tar = work.join("s1g-layer.tar");
    sh(&format!(
        "tar -C {} --sort=name -cf {} .",
        stores.join("s1g").display(),
        big_tar.display()
    ))?;
    let size = fs::metadata(&big_tar)?.len();
    sh(&format!("cat {} > /dev/null", big_tar.display()))?;
    let floor = best_of(3, || sha_floor(&big_tar))?;
    push(
        "sha256 floor (sha2 crate, 1 GB layer tar)",
        floor,
        Some(size),
        String::new(),
    );
    let t = best_of(3, || {
        sh(&format!("{} < {}", b("tarsum"), big_tar.display()))
    })?;
    push(
        "tarsum < 1 GB layer tar",
        t,
        Some(size),
        format!("{:.2}x the sha256 floor's time", t / floor),
    );
    fs::remove_file(&big_tar)?;

    // layer-packer on s300 vs the mkPureLayer pipeline and plain tar.
    let s300 = stores.join("s300");
    let tar_flags = "--sort=name --hard-dereference --mtime=@315532800 --owner=0 --group=0";
    let t_plain = best_of(3, || {
        sh(&format!(
            "tar -C {} {tar_flags} -cf - . > /dev/null",
            s300.display()
        ))
    })?;
    push(
        "tar -cf - . > /dev/null (s300; GNU tar skips reading data for /dev/null)",
        t_plain,
        None,
        String::new(),
    );
    let t_cat = best_of(3, || {
        sh(&format!(
            "tar -C {} {tar_flags} -cf - . | cat > /dev/null",
            s300.display()
        ))
    })?;
    push(
        "tar -cf - . | cat > /dev/null (s300, data read)",
        t_cat,
        None,
        String::new(),
    );
    let t_pipe = best_of(3, || {
        sh(&format!(
            "tar -C {} {tar_flags} -cf - . | tee {} | {} > /dev/null",
            s300.display(),
            w("pipe-layer.tar"),
            b("tarsum")
        ))
    })?;
    push(
        "tar | tee layer.tar | tarsum (s300; our tarsum stands in for Go's)",
        t_pipe,
        None,
        String::new(),
    );
    let t_lp = best_of(3, || {
        let _ = fs::remove_dir_all(work.join("lp"));
        sh(&format!(
            "{} pure --out {} {}",
            b("layer-packer"),
            w("lp"),
            s300.display()
        ))
    })?;
    // The hashing layer-packer cannot avoid: SHA-256 of the whole tar plus SHA-256 of every
    // file (the tarsum), about twice the tar's bytes; on 2 cores at best half that time.
    let lp_tar = work.join("pipe-layer.tar");
    let t_sha2 = best_of(3, || {
        sha_floor(&lp_tar)?;
        sha_floor(&lp_tar)
    })?;
    push(
        "two SHA-256 passes over the s300 layer.tar (sha2; layer-packer's hashing work)",
        t_sha2,
        Some(2 * fs::metadata(&lp_tar)?.len()),
        format!("{:.3} s when spread over 2 cores", t_sha2 / 2.0),
    );
    push(
        "layer-packer pure (s300: layer.tar + sha256 + tarsum, one pass)",
        t_lp,
        None,
        format!(
            "{:.1}x faster than the pipeline; {:.2}x tar|cat, {:.2}x tar>/dev/null, {:.2}x the hashing floor on 2 cores",
            t_pipe / t_lp,
            t_lp / t_cat,
            t_lp / t_plain,
            t_lp / (t_sha2 / 2.0)
        ),
    );

    // stream-layered on s1g to /dev/null.
    let s1g = stores.join("s1g");
    let conf = fix.join("confs/s1g.json");
    let t_sl = best_of(3, || {
        in_store(
            &s1g,
            &format!(
                "{} {} > /dev/null 2>&1",
                b("stream-layered"),
                conf.display()
            ),
        )
    })?;
    let t_tar = best_of(3, || {
        in_store(&s1g, "tar -C /nix/store -cf - . | cat > /dev/null")
    })?;
    push(
        "GNU tar of the s1g store | cat (floor)",
        t_tar,
        None,
        String::new(),
    );
    let mut note = format!("{:.2}x GNU tar's time", t_sl / t_tar);
    if let Some(dir) = &reference {
        let py = dir.join("stream_layered_image.py");
        if py.exists() {
            let t_py = best_of(1, || {
                in_store(
                    &s1g,
                    &format!(
                        "python3 {} {} > /dev/null 2>&1",
                        py.display(),
                        conf.display()
                    ),
                )
            })?;
            push(
                "stream_layered_image.py (s1g, reference)",
                t_py,
                None,
                String::new(),
            );
            note.push_str(&format!("; {:.1}x faster than the original", t_py / t_sl));
        }
    }
    push("stream-layered s1g > /dev/null", t_sl, None, note);

    // merge-images on the s300 and s10 gzip images, against the original's shell steps.
    for (store, name) in [("s300", "a"), ("s10", "b")] {
        in_store(
            &stores.join(store),
            &format!(
                "{} {} > {}",
                b("stream-layered"),
                fix.join(format!("confs/{store}.json")).display(),
                w(&format!("{name}.tar"))
            ),
        )?;
        sh(&format!("pigz -p2 -n < {0}.tar > {0}.tar.gz", w(name)))?;
    }
    let original = format!(
        "cd {0}; rm -rf orig && mkdir -p orig/image orig/in/a orig/in/b && cd orig
         gzip -dc ../a.tar.gz | tar -xC in/a; gzip -dc ../b.tar.gz | tar -xC in/b
         cp -R -n in/*/* image/
         jq -s add in/a/manifest.json in/b/manifest.json > image/manifest.json
         tar -C image --hard-dereference --sort=name --mtime=@315532800 --owner=0 --group=0 --xform s:'^./':: -c . | pigz -p2 -nT > out.tar.gz",
        work.display()
    );
    let t_orig = best_of(3, || sh(&original))?;
    push(
        "mergeImages shell steps (untar, cp, jq, tar, pigz -p2)",
        t_orig,
        None,
        String::new(),
    );
    let t_mi = best_of(3, || {
        sh(&format!(
            "{} {} {} {}",
            b("merge-images"),
            w("merged.tar.gz"),
            w("a.tar.gz"),
            w("b.tar.gz")
        ))
    })?;
    push(
        "merge-images s300+s10 gzip",
        t_mi,
        None,
        format!("{:.1}x faster than the original", t_orig / t_mi),
    );

    // Compression: ours (through merge-images of one plain image) against pigz and zstd.
    let a_size = fs::metadata(work.join("a.tar"))?.len();
    let t_pigz = best_of(3, || {
        sh(&format!(
            "pigz -p2 -nTR < {} > {}",
            w("a.tar"),
            w("pigz.gz")
        ))
    })?;
    let pigz_size = fs::metadata(work.join("pigz.gz"))?.len();
    push(
        "pigz -p2 -nTR (s300 image)",
        t_pigz,
        Some(a_size),
        format!("{pigz_size} bytes"),
    );
    let t_gz = best_of(3, || {
        sh(&format!(
            "{} --compress gz {} {}",
            b("merge-images"),
            w("ours.gz"),
            w("a.tar")
        ))
    })?;
    let gz_size = fs::metadata(work.join("ours.gz"))?.len();
    push(
        "merge-images --compress gz (s300 image, includes merging)",
        t_gz,
        Some(a_size),
        format!(
            "{gz_size} bytes ({:+.1}% vs pigz)",
            100.0 * (gz_size as f64 / pigz_size as f64 - 1.0)
        ),
    );
    let t_zstd = best_of(3, || {
        sh(&format!(
            "zstd -q -f -T2 -3 < {} > {}",
            w("a.tar"),
            w("z.zst")
        ))
    })?;
    push(
        "zstd -T2 -3 (s300 image)",
        t_zstd,
        Some(a_size),
        format!("{} bytes", fs::metadata(work.join("z.zst"))?.len()),
    );
    let t_oz = best_of(3, || {
        sh(&format!(
            "{} --compress zstd {} {}",
            b("merge-images"),
            w("ours.zst"),
            w("a.tar")
        ))
    })?;
    push(
        "merge-images --compress zstd (s300 image)",
        t_oz,
        Some(a_size),
        format!("{} bytes", fs::metadata(work.join("ours.zst"))?.len()),
    );

    // popularity-sorter on generated graphs.
    let mkstore = conf_dir.join("mkstore.py");
    let mkgraph = conf_dir.join("cases/popularity-sorter/_gen/mkgraph.py");
    for (n, seed) in [(5000, 3), (20000, 4), (100000, 6)] {
        let g = w(&format!("g{n}.json"));
        sh(&format!(
            "python3 {} --graph-only --paths {n} --seed {seed} --graph-out {g}",
            mkstore.display()
        ))?;
        sh(&format!(
            "python3 {} list {g} > {g}.list",
            mkgraph.display()
        ))?;
        sh(&format!("python3 {} pipeline {g} '[[\"popularity_contest\"], [\"limit_layers\", 100]]' > {g}.pipe", mkgraph.display()))?;
        let ps = b("popularity-sorter");
        push(
            &format!("closure-graph {n} nodes"),
            best_of(5, || exec(&ps, &["closure-graph", &g, "graph"]))?,
            None,
            String::new(),
        );
        push(
            &format!("pipeline popularity {n} nodes"),
            best_of(5, || exec(&ps, &["pipeline", &format!("{g}.pipe")]))?,
            None,
            String::new(),
        );
        push(
            &format!("auto-layer {n} nodes, limit 99"),
            best_of(5, || {
                exec(
                    &ps,
                    &["auto-layer", &format!("{g}.list"), "/dev/null", "99"],
                )
            })?,
            None,
            String::new(),
        );
        if let Some(dir) = &reference {
            for (script, args) in [
                ("closure-graph.py", format!("{g} graph")),
                ("auto-layer.py", format!("{g}.list /dev/null 99")),
            ] {
                let p = dir.join(script);
                if p.exists() && n <= 20000 {
                    let t = best_of(1, || {
                        sh(&format!("python3 -c 'import sys; sys.setrecursionlimit(1000000); sys.argv = sys.argv[1:]; exec(open(sys.argv[0]).read())' {} {args} > /dev/null", p.display()))
                    })?;
                    push(
                        &format!("{script} {n} nodes (reference)"),
                        t,
                        None,
                        String::new(),
                    );
                }
            }
        }
    }
    let _ = fs::remove_dir_all(&work);

    println!("| benchmark | time (s) | throughput | notes |");
    println!("|---|---|---|---|");
    for r in &rows {
        let tp = r
            .bytes
            .map(|b| format!("{:.0} MB/s", b as f64 / r.secs / 1e6))
            .unwrap_or_default();
        println!("| {} | {:.3} | {} | {} |", r.what, r.secs, tp, r.note);
    }
    Ok(())
}
