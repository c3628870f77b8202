//! flatten-references-graph's `layeringPipeline`: a list of ops applied to the references graph.
//!
//! Graphs are lists of vertices (node indices) with their own edges, as igraph holds them:
//! every op keeps the vertex order of its input graph, and graphs joined by `limit_layers`
//! are concatenated (a disjoint union: no edges between the parts).
//! Each op is one function, and each runs in time linear in its graph and its arguments
//! (paths named in arguments are looked up once per call, not once per vertex).
//!
//! tidy: lookup only (hash maps and sets here are only looked up: excluded paths, vertex names).

use serde_json::Value;

use crate::graph::{Csr, FastMap, FastSet, Node};
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

/// The node table: each node's path, and the node of each path.
struct Ctx<'a> {
    names: Vec<&'a str>,
    node_of: FastMap<&'a str, u32>,
}

fn op_err(op: &str, why: impl Into<String>) -> Error {
    Error::Op {
        op: op.to_string(),
        why: why.into(),
    }
}

impl Graph {
    /// Successors of each vertex, each once.
    fn succ(&self) -> Csr {
        let mut succ = Csr::from_edges(self.verts.len(), self.edges.iter().copied());
        succ.dedup_rows();
        succ
    }

    /// Predecessors of each vertex (repeated edges repeat).
    fn preds(&self) -> Csr {
        Csr::from_edges(self.verts.len(), self.edges.iter().map(|&(a, b)| (b, a)))
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

    /// The position of the first vertex named by each of `paths` (igraph's `vs.find`), in one
    /// pass over the graph.
    fn find_all(&self, ctx: &Ctx<'_>, paths: &[&str]) -> Vec<Option<u32>> {
        let nodes: Vec<Option<u32>> = paths.iter().map(|p| ctx.node_of.get(p).copied()).collect();
        let mut first: FastMap<u32, u32> = nodes.iter().flatten().map(|&v| (v, u32::MAX)).collect();
        for (i, v) in self.verts.iter().enumerate() {
            if let Some(p) = first.get_mut(v) {
                *p = (*p).min(i as u32);
            }
        }
        nodes
            .iter()
            .map(|v| {
                v.and_then(|v| first.get(&v).copied())
                    .filter(|&p| p != u32::MAX)
            })
            .collect()
    }

    /// The positions reached from `start` through `adj`, `start` included.
    fn reach(&self, start: &[u32], adj: &Csr) -> Vec<bool> {
        let mut seen = vec![false; self.verts.len()];
        let mut stack: Vec<u32> = Vec::new();
        for &s in start {
            if !seen[s as usize] {
                seen[s as usize] = true;
                stack.push(s);
            }
        }
        while let Some(v) = stack.pop() {
            for &c in adj.row(v) {
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
/// compares them), edges to each reference. The references are looked up on all cores (one
/// hash lookup each, bound by memory); a missing one is reported for the first node in that
/// order, as the serial loop would.
fn build_graph(nodes: &[Node<'_>], ctx: &Ctx<'_>) -> Result<Graph, Error> {
    let order = crate::size::order_by_size(nodes)?;
    let mut pos = vec![0u32; nodes.len()];
    for (p, &i) in order.iter().enumerate() {
        pos[i as usize] = p as u32;
    }
    let rows = Csr::from_rows_par::<Error>(order.len(), |p, out| {
        let node = &nodes[order[p] as usize];
        for r in &node.references {
            if *r == node.path {
                continue;
            }
            let &t = ctx
                .node_of
                .get(r.as_ref())
                .ok_or_else(|| Error::MissingRef {
                    node: node.path.to_string(),
                    reference: r.to_string(),
                })?;
            out.push(pos[t as usize]);
        }
        Ok(())
    })?;
    let edges = (0..rows.len() as u32)
        .flat_map(|p| rows.row(p).iter().map(move |&t| (p, t)))
        .collect();
    Ok(Graph {
        verts: order,
        edges,
    })
}

/// A path or a list of paths.
fn as_paths<'v>(op: &str, v: &'v Value) -> Result<Vec<&'v str>, Error> {
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
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

/// An op: its name, its number of arguments, and what it does.
type Op = fn(&Ctx<'_>, &[Value], Data) -> Result<Data, Error>;

const OPS: &[(&str, usize, Op)] = &[
    ("popularity_contest", 0, popularity_contest),
    ("limit_layers", 1, limit_layers),
    ("split_paths", 1, split_paths),
    ("subcomponent_in", 1, subcomponent_in),
    ("subcomponent_out", 1, subcomponent_out),
    ("over", 2, over),
    ("pipe", 1, pipe),
    ("map", 1, map),
    ("flatten", 0, flatten_op),
    ("split_every", 1, split_every),
    ("remove_paths", 1, remove_paths),
    ("reverse", 0, reverse),
];

fn apply(ctx: &Ctx<'_>, call: &Value, data: Data) -> Result<Data, Error> {
    let Value::Array(parts) = call else {
        return Err(op_err(&call.to_string(), "an op is a list [name, args...]"));
    };
    let Some((Value::String(name), args)) = parts.split_first() else {
        return Err(op_err(&call.to_string(), "an op starts with its name"));
    };
    let Some(&(_, n, op)) = OPS.iter().find(|(op, _, _)| op == name) else {
        return Err(op_err(name, "unknown op"));
    };
    if args.len() != n {
        return Err(op_err(
            name,
            format!("takes {n} argument(s), got {}", args.len()),
        ));
    }
    op(ctx, args, data)
}

/// `popularity_contest`: one single-path graph per path, most popular first.
fn popularity_contest(ctx: &Ctx<'_>, _: &[Value], data: Data) -> Result<Data, Error> {
    let g = expect_graph("popularity_contest", data)?;
    let succ = g.succ();
    let path = |v: u32| ctx.names[g.verts[v as usize] as usize];
    let mut order = popularity::order(&succ, &path)?;
    let missing = crate::pyset::unranked_in_set_order(succ.len(), &order, path);
    order.extend(missing);
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

/// `limit_layers N`: the first N-1 items, then one graph joining the rest.
fn limit_layers(_: &Ctx<'_>, args: &[Value], data: Data) -> Result<Data, Error> {
    let op = "limit_layers";
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

/// `subcomponent_in [paths]`: `{main: the paths and what reaches them, rest}`.
fn subcomponent_in(ctx: &Ctx<'_>, args: &[Value], data: Data) -> Result<Data, Error> {
    let g = expect_graph("subcomponent_in", data)?;
    let adj = g.preds();
    subcomponent(ctx, "subcomponent_in", &args[0], g, &adj)
}

/// `subcomponent_out [paths]`: `{main: the paths and what they reach, rest}`.
fn subcomponent_out(ctx: &Ctx<'_>, args: &[Value], data: Data) -> Result<Data, Error> {
    let g = expect_graph("subcomponent_out", data)?;
    let adj = g.succ();
    subcomponent(ctx, "subcomponent_out", &args[0], g, &adj)
}

fn subcomponent(ctx: &Ctx<'_>, op: &str, arg: &Value, g: Graph, adj: &Csr) -> Result<Data, Error> {
    // A bare string is iterated character by character by the original: it matches nothing.
    let paths = match arg {
        Value::String(_) => Vec::new(),
        other => as_paths(op, other)?,
    };
    let start: Vec<u32> = g.find_all(ctx, &paths).into_iter().flatten().collect();
    let main = g.reach(&start, adj);
    let rest: Vec<bool> = main.iter().map(|m| !m).collect();
    Ok(Data::Map(vec![
        ("main", Data::Graph(g.induced(&main))),
        ("rest", Data::Graph(g.induced(&rest))),
    ]))
}

/// `over KEY OP`: OP applied to the map's entry KEY.
fn over(ctx: &Ctx<'_>, args: &[Value], data: Data) -> Result<Data, Error> {
    let op = "over";
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

/// `pipe [OP...]`: a nested pipeline.
fn pipe(ctx: &Ctx<'_>, args: &[Value], data: Data) -> Result<Data, Error> {
    let Value::Array(ops) = &args[0] else {
        return Err(op_err("pipe", "expects a list of ops"));
    };
    ops.iter().try_fold(data, |d, o| apply(ctx, o, d))
}

/// `map OP`: OP applied to each item.
fn map(ctx: &Ctx<'_>, args: &[Value], data: Data) -> Result<Data, Error> {
    let items = expect_seq("map", data)?;
    Ok(Data::Seq(
        items
            .into_iter()
            .map(|i| apply(ctx, &args[0], i))
            .collect::<Result<_, _>>()?,
    ))
}

/// `flatten`: nested maps and sequences as one sequence.
fn flatten_op(_: &Ctx<'_>, _: &[Value], data: Data) -> Result<Data, Error> {
    let mut out = Vec::new();
    flatten(data, &mut out);
    Ok(Data::Seq(out))
}

/// `split_every N`: graphs of N consecutive vertices, in one pass over the edges.
fn split_every(_: &Ctx<'_>, args: &[Value], data: Data) -> Result<Data, Error> {
    let op = "split_every";
    let count = int_arg(op, &args[0])?;
    if count == 0 {
        return Err(op_err(op, "count must not be 0"));
    }
    let g = expect_graph(op, data)?;
    if count < 0 {
        return Ok(Data::Seq(Vec::new()));
    }
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let mut parts: Vec<Graph> = g
        .verts
        .chunks(count)
        .map(|c| Graph {
            verts: c.to_vec(),
            edges: Vec::new(),
        })
        .collect();
    for &(a, b) in &g.edges {
        let (pa, pb) = (a as usize / count, b as usize / count);
        if pa == pb {
            let base = (pa * count) as u32;
            parts[pa].edges.push((a - base, b - base));
        }
    }
    Ok(Data::Seq(parts.into_iter().map(Data::Graph).collect()))
}

/// `remove_paths P | [P...]`: the graph without those paths.
fn remove_paths(ctx: &Ctx<'_>, args: &[Value], data: Data) -> Result<Data, Error> {
    let paths = as_paths("remove_paths", &args[0])?;
    let g = expect_graph("remove_paths", data)?;
    let mut keep = vec![true; g.verts.len()];
    for i in g.find_all(ctx, &paths).into_iter().flatten() {
        keep[i as usize] = false;
    }
    Ok(Data::Graph(g.induced(&keep)))
}

/// `reverse`: the sequence reversed.
fn reverse(_: &Ctx<'_>, _: &[Value], data: Data) -> Result<Data, Error> {
    let mut items = expect_seq("reverse", data)?;
    items.reverse();
    Ok(Data::Seq(items))
}

/// `split_paths [spec...]`: `{main, common, rest}` around the named paths (see the
/// conformance README for the exact rules).
fn split_paths(ctx: &Ctx<'_>, args: &[Value], data: Data) -> Result<Data, Error> {
    let op = "split_paths";
    let Value::Array(specs) = &args[0] else {
        return Err(op_err(op, "expects a list of path specs"));
    };
    let g = expect_graph(op, data)?;
    let succ = g.succ();
    let split = split_positions(ctx, specs, &g, &succ)?;
    if split.is_empty() {
        return Ok(Data::Map(vec![("rest", Data::Graph(g))]));
    }
    let n = g.verts.len();
    let mut is_split = vec![false; n];
    split.iter().for_each(|&s| is_split[s as usize] = true);
    let mut has_pred = vec![false; n];
    g.edges
        .iter()
        .for_each(|&(_, b)| has_pred[b as usize] = true);
    let roots: Vec<u32> = (0..n as u32).filter(|&v| !has_pred[v as usize]).collect();
    if let [root] = roots[..] {
        if is_split[root as usize] {
            return Ok(Data::Map(vec![("main", Data::Graph(g))]));
        }
    }
    let split_off = g.reach(&split, &succ);
    // Edges into the split paths are deleted; the results keep that modified graph's edges.
    let mut cut = g;
    cut.edges.retain(|&(_, b)| !is_split[b as usize]);
    // The original links a fake root to every root when there are several; edges into split
    // paths are gone, so only roots that are not split paths lead anywhere.
    let start: Vec<u32> = roots
        .into_iter()
        .filter(|&r| !is_split[r as usize])
        .collect();
    let rest_with_common = cut.reach(&start, &cut.succ());
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

/// The positions `split_paths`' specs name: a path, or `{"children_of": path or paths}` (their
/// successors, in successor order).
fn split_positions(
    ctx: &Ctx<'_>,
    specs: &[Value],
    g: &Graph,
    succ: &Csr,
) -> Result<Vec<u32>, Error> {
    let op = "split_paths";
    // Each spec's paths, looked up together.
    let mut names: Vec<(bool, &str)> = Vec::new();
    for spec in specs {
        match spec {
            Value::Object(m) => {
                let Some(children_of) = m.get("children_of") else {
                    return Err(op_err(op, "a dict spec needs the key \"children_of\""));
                };
                names.extend(as_paths(op, children_of)?.into_iter().map(|p| (true, p)));
            }
            Value::String(p) => names.push((false, p)),
            _ => return Err(op_err(op, "a spec is a path or {\"children_of\": ...}")),
        }
    }
    let paths: Vec<&str> = names.iter().map(|&(_, p)| p).collect();
    let mut split = Vec::new();
    for ((children, _), found) in names.iter().zip(g.find_all(ctx, &paths)) {
        match (children, found) {
            (true, Some(i)) => split.extend(succ.row(i)),
            (false, Some(i)) => split.push(i),
            (_, None) => {}
        }
    }
    Ok(split)
}

fn flatten(d: Data, out: &mut Vec<Data>) {
    match d {
        Data::Graph(_) => out.push(d),
        Data::Seq(items) => items.into_iter().for_each(|i| flatten(i, out)),
        Data::Map(entries) => entries.into_iter().for_each(|(_, v)| flatten(v, out)),
    }
}

/// The nodes without the paths of `exclude_paths` (a path or a list of paths), and without
/// references to them.
fn exclude(nodes: &mut Vec<Node<'_>>, raw: &str) -> Result<(), Error> {
    let ex: Value = serde_json::from_str(raw)?;
    let excluded: FastSet<&str> = as_paths("exclude_paths", &ex)?.into_iter().collect();
    nodes.retain(|n| !excluded.contains(n.path.as_ref()));
    for n in nodes {
        n.references.retain(|r| !excluded.contains(r.as_ref()));
    }
    Ok(())
}

/// Runs the pipeline of an `.attrs.json`-style input and hands the layers, borrowed, to `f`.
pub fn run<R>(input: &[u8], f: impl FnOnce(&[Vec<&str>]) -> R) -> Result<R, Error> {
    let mut object = crate::graph::parse_object(input, "graph", true)?;
    let pipeline_raw = object
        .field("pipeline")
        .ok_or_else(|| Error::Input("missing key \"pipeline\"".into()))?;
    let pipeline: Value = serde_json::from_str(pipeline_raw)?;
    let Value::Array(ops) = &pipeline else {
        return Err(Error::Input("\"pipeline\" is not a list of ops".into()));
    };
    if let Some(raw) = object.field("exclude_paths") {
        exclude(&mut object.nodes, raw)?;
    }
    let nodes = &object.nodes;
    let mut node_of = FastMap::with_capacity_and_hasher(nodes.len(), Default::default());
    for (i, n) in nodes.iter().enumerate() {
        if node_of.insert(n.path.as_ref(), i as u32).is_some() {
            // igraph refuses a graph whose vertex names repeat.
            return Err(Error::Input(format!("path {} is listed twice", n.path)));
        }
    }
    let ctx = Ctx {
        names: nodes.iter().map(|n| n.path.as_ref()).collect(),
        node_of,
    };
    let g = build_graph(nodes, &ctx)?;
    let result = ops
        .iter()
        .try_fold(Data::Graph(g), |d, o| apply(&ctx, o, d))?;
    if let Data::Graph(_) = result {
        return Err(Error::Input("the pipeline ends on a single graph; end it with an op that yields layers (for example split_every or popularity_contest)".into()));
    }
    let mut flat = Vec::new();
    flatten(result, &mut flat);
    let layers: Vec<Vec<&str>> = flat
        .into_iter()
        .filter_map(|d| match d {
            Data::Graph(g) if !g.verts.is_empty() => {
                Some(g.verts.iter().map(|&v| ctx.names[v as usize]).collect())
            }
            _ => None,
        })
        .collect();
    Ok(f(&layers))
}
