//! popularity-sorter (closure-graph, pipeline, auto-layer) on generated graphs: mkstore.py's
//! realistic graphs of 5k, 20k and 100k nodes, a 100k-node chain, and a wide fan-out (one root,
//! 100k leaves, each referencing 10 of 100 shared dependencies), with peak memory.
//! Each row runs with `RAYON_NUM_THREADS=1` and with every core (best of 5 each), its output
//! into a file as nixpkgs writes it (`> $out`), and checks that both print the same bytes.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{exec, sh, Ctx};

/// Writes the chain or fan-out graph `{"graph": [...]}` of `n` nodes (Python, no closure sizes:
/// the tools do not read them).
const SHAPES: &str = r#"
import json, sys
shape, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
p = lambda i: "/nix/store/%032d-node-%d" % (i, i)
nodes = []
if shape == "chain":
    for i in range(n):
        nodes.append({"path": p(i), "narSize": 1000 + i % 977, "closureSize": 0,
                      "references": [p(i + 1)] if i + 1 < n else []})
else:
    shared = [p(n + 1 + k) for k in range(100)]
    leaves = [p(1 + i) for i in range(n)]
    nodes.append({"path": p(0), "narSize": 5000, "closureSize": 0, "references": leaves})
    for i, l in enumerate(leaves):
        nodes.append({"path": l, "narSize": 1000 + i % 977, "closureSize": 0,
                      "references": sorted(shared[(i * 7 + k * 13) % 100] for k in range(10))})
    for k, s in enumerate(shared):
        nodes.append({"path": s, "narSize": 20000 + k, "closureSize": 0, "references": []})
nodes.sort(key=lambda x: x["path"])
json.dump({"graph": nodes}, open(out, "w"))
"#;

/// Peak resident memory of a command in MB (Python's getrusage of its children).
fn peak_mb(program: &str, args: &[&str]) -> Result<f64> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import resource, subprocess, sys\nsubprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)\nprint(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
            program,
        ])
        .args(args)
        .output()
        .context("python3")?;
    let kb: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    Ok(kb / 1024.0)
}

/// Runs the tool with `threads` worker threads, its output into the file `out` (as nixpkgs
/// runs these tools, `> $out`: a pipe to this process would add its copies and wake-ups);
/// returns the best wall time of `runs` runs and the output (the same on every run).
fn timed(
    tool: &str,
    args: &[&str],
    threads: usize,
    runs: usize,
    out: &str,
) -> Result<(f64, Vec<u8>)> {
    let mut best = f64::MAX;
    for _ in 0..runs {
        let file = std::fs::File::create(out).with_context(|| out.to_string())?;
        let t = Instant::now();
        let status = Command::new(tool)
            .args(args)
            .env("RAYON_NUM_THREADS", threads.to_string())
            .stdout(file)
            .stderr(Stdio::null())
            .status()
            .with_context(|| tool.to_string())?;
        best = best.min(t.elapsed().as_secs_f64());
        if !status.success() {
            bail!("benchmark command failed: {tool} {args:?}");
        }
    }
    Ok((best, std::fs::read(out).with_context(|| out.to_string())?))
}

/// Times the three modes on the graph `g`, with one thread and with every core, and records them.
fn modes(ctx: &mut Ctx, label: &str, g: &str) -> Result<()> {
    let gen = ctx.conf_dir.join("cases/popularity-sorter/_gen/mkgraph.py");
    let gen = gen.display();
    sh(&format!("python3 {gen} list {g} > {g}.list"))?;
    sh(&format!(
        "python3 {gen} pipeline {g} '[[\"popularity_contest\"], [\"limit_layers\", 100]]' > {g}.pipe"
    ))?;
    let ps = ctx.tool("popularity-sorter");
    let list = format!("{g}.list");
    let pipe = format!("{g}.pipe");
    let runs: [(&str, Vec<&str>); 3] = [
        ("closure-graph", vec!["closure-graph", g, "graph"]),
        ("pipeline popularity", vec!["pipeline", &pipe]),
        (
            "auto-layer, limit 99",
            vec!["auto-layer", &list, "/dev/null", "99"],
        ),
    ];
    let cores = ctx.cores;
    for (what, args) in runs {
        // Once untimed, so that the input is in the page cache for both thread counts.
        exec(&ps, &args)?;
        let out = ctx.w("popularity.out");
        let (one, out_one) = timed(&ps, &args, 1, 5, &out)?;
        let (all, out_all) = timed(&ps, &args, cores, 5, &out)?;
        if out_one != out_all {
            bail!("{what}, {label}: the output bytes depend on the thread count");
        }
        let mb = peak_mb(&ps, &args)?;
        ctx.push(
            &format!("{what}, {label} [1 thread]"),
            one,
            None,
            String::new(),
        );
        ctx.push(
            &format!("{what}, {label} [{cores} threads]"),
            all,
            None,
            format!(
                "{:.2}x speed-up over 1 thread, same bytes; peak {mb:.0} MB",
                one / all
            ),
        );
    }
    Ok(())
}

/// Adds the popularity-sorter rows.
pub fn bench(ctx: &mut Ctx) -> Result<()> {
    let mkstore = ctx.conf_dir.join("mkstore.py");
    for (n, seed) in [(5000, 3), (20000, 4), (100000, 6)] {
        let g = ctx.w(&format!("g{n}.json"));
        sh(&format!(
            "python3 {} --graph-only --paths {n} --seed {seed} --graph-out {g}",
            mkstore.display()
        ))?;
        modes(ctx, &format!("{n} nodes"), &g)?;
        reference_rows(ctx, n, &g)?;
    }
    for shape in ["chain", "fanout"] {
        let g = ctx.w(&format!("{shape}.json"));
        let status = Command::new("python3")
            .args(["-c", SHAPES, shape, "100000", &g])
            .status()?;
        anyhow::ensure!(status.success(), "generating the {shape} graph failed");
        let label = if shape == "chain" {
            "100k-node chain"
        } else {
            "fan-out of 100k leaves"
        };
        modes(ctx, label, &g)?;
    }
    Ok(())
}

/// With `--reference`, the original scripts on graphs small enough for them.
fn reference_rows(ctx: &mut Ctx, n: usize, g: &str) -> Result<()> {
    let Some(dir) = ctx.reference.clone() else {
        return Ok(());
    };
    for (script, args) in [
        ("closure-graph.py", format!("{g} graph")),
        ("auto-layer.py", format!("{g}.list /dev/null 99")),
    ] {
        let p = dir.join(script);
        if p.exists() && n <= 20000 {
            let t = Instant::now();
            sh(&format!("PYTHONHASHSEED=0 python3 -c 'import sys; sys.setrecursionlimit(1000000); sys.argv = sys.argv[1:]; exec(open(sys.argv[0]).read())' {} {args} > /dev/null", p.display()))?;
            let t = t.elapsed().as_secs_f64();
            ctx.push(
                &format!("{script} {n} nodes (reference)"),
                t,
                None,
                String::new(),
            );
        }
    }
    Ok(())
}
