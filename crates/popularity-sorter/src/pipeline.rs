//! flatten-references-graph's `layeringPipeline`: a list of ops applied to the references graph.
//!
//! Graphs are lists of vertices (node indices) with their own edges, as igraph holds them:
//! every op keeps the vertex order of its input graph, and graphs joined by `limit_layers`
//! are concatenated (a disjoint union: no edges between the parts).
//!
//! tidy: lookup only (hash maps and sets here are only looked up: top-level JSON keys, excluded paths, seen paths).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::graph::{package_name_key, Node};
use crate::{popularity, Error};

/// A graph: vertices (indices into the node table) and edges between vertex positions.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    verts: Vec<u32>,
    edges: Vec<(u32, u32)>,
}

/// What ops take and return.
#[derive(Clone, Debug)]
enum Data {
    Graph(Graph),
    Seq(Vec<Data>),
    Map(Vec<(&'static str, Data)>),
}

struct Ctx<'a> {
    nodes: &'a [Node<'a>],
    names: Vec<String>,
}

fn op_err(op: &str, why: impl Into<String>) -> Error {
    Error::Op {
        op: op.to_string(),
        why: why.into(),
    }
}

impl Graph {
    /// Successors of each vertex, each once (a repeated reference is a second edge).
    fn succ(&self) -> Vec<Vec<u32>> {
        let mut s = vec![Vec::new(); self.verts.len()];
        for &(a, b) in &self.edges {
            s[a as usize].push(b);
        }
        s.iter_mut().for_each(crate::graph::dedup_in_order);
        s
    }

    fn preds(&self) -> Vec<Vec<u32>> {
        let mut p = vec![Vec::new(); self.verts.len()];
        for &(a, b) in &self.edges {
            p[b as usize].push(a);
        }
        p
    }

    /// The subgraph of the positions where `keep` holds, in this graph's order.
    fn induced(&self, keep: &[bool]) -> Graph {
        let mut pos = vec![u32::MAX; self.verts.len()];
        let mut verts = Vec::new();
        for (i, &v) in self.verts.iter().enumerate() {
            if keep[i] {
                pos[i] = verts.len() as u32;
                verts.push(v);
            }
        }
        let edges = self
            .edges
            .iter()
            .filter(|&&(a, b)| keep[a as usize] && keep[b as usize])
            .map(|&(a, b)| (pos[a as usize], pos[b as usize]))
            .collect();
        Graph { verts, edges }
    }

    fn find(&self, ctx: &Ctx<'_>, name: &str) -> Option<u32> {
        // igraph finds the first vertex with that name.
        self.verts
            .iter()
            .position(|&v| ctx.names[v as usize] == name)
            .map(|p| p as u32)
    }

    fn reach(&self, start: &[u32], adj: &[Vec<u32>]) -> Vec<bool> {
        let mut seen = vec![false; self.verts.len()];
        let mut stack: Vec<u32> = Vec::new();
        for &s in start {
            if !seen[s as usize] {
                seen[s as usize] = true;
                stack.push(s);
            }
        }
        while let Some(v) = stack.pop() {
            for &c in &adj[v as usize] {
                if !seen[c as usize] {
                    seen[c as usize] = true;
                    stack.push(c);
                }
            }
        }
        seen
    }
}

/// Builds the pipeline's input graph: nodes sorted by narSize (stable, compared as Python
/// compares them), edges to each reference.
fn build_graph(nodes: &[Node<'_>]) -> Result<Graph, Error> {
    let order = crate::size::order_by_size(nodes)?;
    let mut pos: crate::graph::FastMap<&str, u32> =
        crate::graph::FastMap::with_capacity_and_hasher(nodes.len(), Default::default());
    for (p, &i) in order.iter().enumerate() {
        let path = nodes[i as usize].path.as_ref();
        if pos.insert(path, p as u32).is_some() {
            // igraph refuses a graph whose vertex names repeat.
            return Err(Error::Input(format!("path {path} is listed twice")));
        }
    }
    let mut edges = Vec::new();
    for (p, &i) in order.iter().enumerate() {
        let node = &nodes[i as usize];
        for r in &node.references {
            if *r == node.path {
                continue;
            }
            let &t = pos.get(r.as_ref()).ok_or_else(|| Error::MissingRef {
                node: node.path.to_string(),
                reference: r.to_string(),
            })?;
            edges.push((p as u32, t));
        }
    }
    Ok(Graph {
        verts: order,
        edges,
    })
}

fn as_paths(op: &str, v: &Value) -> Result<Vec<String>, Error> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| op_err(op, "paths must be strings"))
            })
            .collect(),
        _ => Err(op_err(op, "expected a path or a list of paths")),
    }
}

fn int_arg(op: &str, v: &Value) -> Result<i64, Error> {
    v.as_i64()
        .ok_or_else(|| op_err(op, format!("{v} is not an integer")))
}

fn expect_graph(op: &str, d: Data) -> Result<Graph, Error> {
    match d {
        Data::Graph(g) => Ok(g),
        _ => Err(op_err(op, "expects a graph")),
    }
}

fn expect_seq(op: &str, d: Data) -> Result<Vec<Data>, Error> {
    match d {
        Data::Seq(items) => Ok(items),
        _ => Err(op_err(op, "expects a sequence of graphs")),
    }
}

fn nargs(op: &str, args: &[Value], n: usize) -> Result<(), Error> {
    if args.len() != n {
        return Err(op_err(
            op,
            format!("takes {n} argument(s), got {}", args.len()),
        ));
    }
    Ok(())
}

fn apply(ctx: &Ctx<'_>, call: &Value, data: Data) -> Result<Data, Error> {
    let Value::Array(parts) = call else {
        return Err(op_err(&call.to_string(), "an op is a list [name, args...]"));
    };
    let Some(Value::String(name)) = parts.first() else {
        return Err(op_err(&call.to_string(), "an op starts with its name"));
    };
    let op = name.as_str();
    let args = &parts[1..];
    match op {
        "popularity_contest" => {
            nargs(op, args, 0)?;
            let g = expect_graph(op, data)?;
            let key = |v: u32| package_name_key(&ctx.names[g.verts[v as usize] as usize]);
            let name = |v: u32| ctx.names[g.verts[v as usize] as usize].clone();
            let order = popularity::order(&g.succ(), &key, &name)?;
            Ok(Data::Seq(
                order
                    .into_iter()
                    .map(|v| {
                        Data::Graph(Graph {
                            verts: vec![g.verts[v as usize]],
                            edges: vec![],
                        })
                    })
                    .collect(),
            ))
        }
        "limit_layers" => {
            nargs(op, args, 1)?;
            let max = int_arg(op, &args[0])?;
            if max <= 0 {
                return Err(op_err(op, "max count needs to be > 0"));
            }
            let mut items = expect_seq(op, data)?;
            let keep = (max - 1).min(items.len() as i64) as usize;
            let rest = items.split_off(keep);
            let mut merged = Graph::default();
            for item in rest {
                let g = expect_graph(op, item)?;
                let off = merged.verts.len() as u32;
                merged.verts.extend(g.verts);
                merged
                    .edges
                    .extend(g.edges.into_iter().map(|(a, b)| (a + off, b + off)));
            }
            items.push(Data::Graph(merged));
            Ok(Data::Seq(items))
        }
        "split_paths" => {
            nargs(op, args, 1)?;
            let Value::Array(specs) = &args[0] else {
                return Err(op_err(op, "expects a list of path specs"));
            };
            let g = expect_graph(op, data)?;
            split_paths(ctx, op, specs, g)
        }
        "subcomponent_in" | "subcomponent_out" => {
            nargs(op, args, 1)?;
            let g = expect_graph(op, data)?;
            // A bare string is iterated character by character by the original: it matches nothing.
            let paths = match &args[0] {
                Value::String(_) => Vec::new(),
                other => as_paths(op, other)?,
            };
            let start: Vec<u32> = paths.iter().filter_map(|p| g.find(ctx, p)).collect();
            let adj = if op == "subcomponent_out" {
                g.succ()
            } else {
                g.preds()
            };
            let main = g.reach(&start, &adj);
            let rest: Vec<bool> = main.iter().map(|m| !m).collect();
            Ok(Data::Map(vec![
                ("main", Data::Graph(g.induced(&main))),
                ("rest", Data::Graph(g.induced(&rest))),
            ]))
        }
        "over" => {
            nargs(op, args, 2)?;
            let Some(key) = args[0].as_str() else {
                return Err(op_err(op, "the key must be a string"));
            };
            let Data::Map(mut entries) = data else {
                return Err(op_err(op, "expects a map (main/common/rest)"));
            };
            let slot = entries
                .iter_mut()
                .find(|(k, _)| *k == key)
                .ok_or_else(|| op_err(op, format!("key {key:?} not present")))?;
            let value = std::mem::replace(&mut slot.1, Data::Seq(Vec::new()));
            slot.1 = apply(ctx, &args[1], value)?;
            Ok(Data::Map(entries))
        }
        "pipe" => {
            nargs(op, args, 1)?;
            let Value::Array(ops) = &args[0] else {
                return Err(op_err(op, "expects a list of ops"));
            };
            ops.iter().try_fold(data, |d, o| apply(ctx, o, d))
        }
        "map" => {
            nargs(op, args, 1)?;
            let items = expect_seq(op, data)?;
            Ok(Data::Seq(
                items
                    .into_iter()
                    .map(|i| apply(ctx, &args[0], i))
                    .collect::<Result<_, _>>()?,
            ))
        }
        "flatten" => {
            nargs(op, args, 0)?;
            let mut out = Vec::new();
            flatten(data, &mut out);
            Ok(Data::Seq(out))
        }
        "split_every" => {
            nargs(op, args, 1)?;
            let count = int_arg(op, &args[0])?;
            if count == 0 {
                return Err(op_err(op, "count must not be 0"));
            }
            let g = expect_graph(op, data)?;
            if count < 0 {
                return Ok(Data::Seq(Vec::new()));
            }
            let n = g.verts.len();
            let mut out = Vec::new();
            let mut start = 0usize;
            while start < n {
                let end = start.saturating_add(count as usize).min(n);
                let keep: Vec<bool> = (0..n).map(|i| i >= start && i < end).collect();
                out.push(Data::Graph(g.induced(&keep)));
                start = end;
            }
            Ok(Data::Seq(out))
        }
        "remove_paths" => {
            nargs(op, args, 1)?;
            let paths = as_paths(op, &args[0])?;
            let g = expect_graph(op, data)?;
            let mut keep = vec![true; g.verts.len()];
            for p in &paths {
                if let Some(i) = g.find(ctx, p) {
                    keep[i as usize] = false;
                }
            }
            Ok(Data::Graph(g.induced(&keep)))
        }
        "reverse" => {
            nargs(op, args, 0)?;
            let mut items = expect_seq(op, data)?;
            items.reverse();
            Ok(Data::Seq(items))
        }
        _ => Err(op_err(op, "unknown op")),
    }
}

fn split_paths(ctx: &Ctx<'_>, op: &str, specs: &[Value], g: Graph) -> Result<Data, Error> {
    let succ = g.succ();
    let mut split: Vec<u32> = Vec::new();
    for spec in specs {
        match spec {
            Value::Object(m) => {
                let Some(children_of) = m.get("children_of") else {
                    return Err(op_err(op, "a dict spec needs the key \"children_of\""));
                };
                for p in as_paths(op, children_of)? {
                    if let Some(i) = g.find(ctx, &p) {
                        split.extend(&succ[i as usize]);
                    }
                }
            }
            Value::String(p) => split.extend(g.find(ctx, p)),
            _ => return Err(op_err(op, "a spec is a path or {\"children_of\": ...}")),
        }
    }
    if split.is_empty() {
        return Ok(Data::Map(vec![("rest", Data::Graph(g))]));
    }
    let n = g.verts.len();
    let preds = g.preds();
    let roots: Vec<u32> = (0..n as u32)
        .filter(|&v| preds[v as usize].is_empty())
        .collect();
    let is_split: HashSet<u32> = split.iter().copied().collect();
    if roots.len() == 1 && is_split.contains(&roots[0]) {
        return Ok(Data::Map(vec![("main", Data::Graph(g))]));
    }
    let split_off = g.reach(&split, &succ);
    // Edges into the split paths are deleted; the results keep that modified graph's edges.
    let mut cut = g.clone();
    cut.edges.retain(|(_, b)| !is_split.contains(b));
    let cut_succ = cut.succ();
    // The original links a fake root to every root when there are several; edges into split
    // paths are gone, so only roots that are not split paths lead anywhere.
    let start: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|r| !is_split.contains(r))
        .collect();
    let rest_with_common = cut.reach(&start, &cut_succ);
    let common: Vec<bool> = (0..n)
        .map(|i| split_off[i] && rest_with_common[i])
        .collect();
    let rest: Vec<bool> = (0..n).map(|i| rest_with_common[i] && !common[i]).collect();
    let main: Vec<bool> = (0..n).map(|i| split_off[i] && !common[i]).collect();
    let mut out = Vec::new();
    for (key, keep) in [("main", main), ("common", common), ("rest", rest)] {
        let sub = cut.induced(&keep);
        if !sub.verts.is_empty() {
            out.push((key, Data::Graph(sub)));
        }
    }
    Ok(Data::Map(out))
}

fn flatten(d: Data, out: &mut Vec<Data>) {
    match d {
        Data::Graph(_) => out.push(d),
        Data::Seq(items) => items.into_iter().for_each(|i| flatten(i, out)),
        Data::Map(entries) => entries.into_iter().for_each(|(_, v)| flatten(v, out)),
    }
}

/// Runs the pipeline of an `.attrs.json`-style input and returns the layers.
pub fn run(input: &[u8]) -> Result<Vec<Vec<String>>, Error> {
    let m: HashMap<String, &serde_json::value::RawValue> = serde_json::from_slice(input)?;
    let graph = m
        .get("graph")
        .ok_or_else(|| Error::Input("missing key \"graph\"".into()))?;
    let pipeline_raw = m
        .get("pipeline")
        .ok_or_else(|| Error::Input("missing key \"pipeline\"".into()))?;
    let pipeline: Value = serde_json::from_str(pipeline_raw.get())?;
    let Value::Array(ops) = &pipeline else {
        return Err(Error::Input("\"pipeline\" is not a list of ops".into()));
    };
    let mut nodes = crate::graph::parse_nodes(graph.get(), true)?;
    if let Some(ex) = m.get("exclude_paths") {
        let ex: Value = serde_json::from_str(ex.get())?;
        let excluded: HashSet<String> = as_paths("exclude_paths", &ex)?.into_iter().collect();
        nodes.retain(|n| !excluded.contains(n.path.as_ref()));
        for n in &mut nodes {
            n.references.retain(|r| !excluded.contains(r.as_ref()));
            let mut seen = HashSet::new();
            n.references.retain(|r| seen.insert(r.clone()));
        }
    }
    let ctx = Ctx {
        names: nodes.iter().map(|n| n.path.to_string()).collect(),
        nodes: &nodes,
    };
    let g = build_graph(ctx.nodes)?;
    let result = ops
        .iter()
        .try_fold(Data::Graph(g), |d, o| apply(&ctx, o, d))?;
    let Data::Graph(_) = result else {
        let mut flat = Vec::new();
        flatten(result, &mut flat);
        return Ok(flat
            .into_iter()
            .filter_map(|d| match d {
                Data::Graph(g) if !g.verts.is_empty() => Some(
                    g.verts
                        .iter()
                        .map(|&v| ctx.names[v as usize].clone())
                        .collect(),
                ),
                _ => None,
            })
            .collect());
    };
    Err(Error::Input("the pipeline ends on a single graph; end it with an op that yields layers (for example split_every or popularity_contest)".into()))
}
