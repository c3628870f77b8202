//! popularity-sorter: closure ordering and image layering, drop-in for three nixpkgs programs.
//!
//! - [`closure_graph`]: `closure-graph.py FILE KEY` (`referencesByPopularity`): store paths, most popular first.
//! - [`auto_layer`]: `auto-layer.py GRAPH_LIST IGNORE_FILE LAYER_LIMIT` (streamLayeredImage's default layering).
//! - [`pipeline()`]: `python -m flatten_references_graph FILE` (streamLayeredImage's `layeringPipeline`).
//!
//! Input: the JSON Nix writes with `exportReferencesGraph`. Output: the originals' exact bytes.
//! Deterministic; no recursion (any depth works); time near-linear in the graph for closure-graph
//! and the pipeline ops, O(steps x graph) for auto-layer. Memory linear in the graph.
//! Exit codes (through `main`): 0 ok, 1 bad input (malformed JSON, missing key or reference,
//! cycle, bad op or argument), 2 usage.
//!
//! tidy: lookup only (hash maps and sets here are only looked up: top-level JSON keys, seen and ignored paths).

pub mod autolayer;
mod fastjson;
pub mod graph;
mod intern;
pub mod listed;
pub mod pipeline;
pub mod popularity;
pub mod pyset;
pub mod size;

use dockertools_common::{jq, pyjson};

/// Errors of popularity-sorter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed JSON.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Structurally wrong input.
    #[error("{0}")]
    Input(String),
    /// A reference to a path that is not a node of the graph.
    #[error("node {node} references {reference}, which is not in the graph")]
    MissingRef {
        /// The referring node.
        node: String,
        /// The missing path.
        reference: String,
    },
    /// A reference cycle where the originals assume a DAG.
    #[error("reference cycle through {0}")]
    Cycle(String),
    /// Printing the result failed (it is printed into memory, so this does not happen).
    #[error("printing the result: {0}")]
    Print(std::io::Error),
    /// A pipeline op that is unknown or has wrong arguments.
    #[error("pipeline op {op:?}: {why}")]
    Op {
        /// The op name.
        op: String,
        /// What is wrong.
        why: String,
    },
}

/// `closure-graph.py FILE KEY`: the store paths, most popular first.
pub fn closure_graph(input: &[u8], key: &str) -> Result<Vec<String>, Error> {
    closure_graph_with(input, key, |paths| {
        paths.iter().map(|p| p.to_string()).collect()
    })
}

/// `closure-graph.py FILE KEY` as it prints: one path per line; or with `max_layers`, the
/// `store_layers` JSON of [`store_layers_json`].
pub fn closure_graph_text(
    input: &[u8],
    key: &str,
    max_layers: Option<u64>,
) -> Result<Vec<u8>, Error> {
    closure_graph_with(input, key, |paths| match max_layers {
        Some(n) => store_layers_json(paths, n),
        None => {
            let mut out = Vec::with_capacity(paths.iter().map(|p| p.len() + 1).sum::<usize>() + 1);
            for p in paths {
                out.extend_from_slice(p.as_bytes());
                out.push(b'\n');
            }
            if paths.is_empty() {
                out.push(b'\n');
            }
            Ok(out)
        }
    })?
}

/// [`closure_graph`], handing the paths, borrowed, to `f`.
fn closure_graph_with<R>(
    input: &[u8],
    key: &str,
    f: impl FnOnce(&[&str]) -> R,
) -> Result<R, Error> {
    let object = graph::parse_object(input, key, false)?;
    let nodes = &object.nodes;
    let arena = graph::PathArena::new(nodes);
    let index = arena.index();
    let succ = graph::adjacency(nodes, &index)?;
    let path = |v: u32| nodes[index.live[v as usize] as usize].path.as_ref();
    let mut order = popularity::order(&succ, &path)?;
    let missing = pyset::unranked_in_set_order(succ.len(), &order, path);
    order.extend(missing);
    let paths: Vec<&str> = order.iter().map(|&v| path(v)).collect();
    Ok(f(&paths))
}

/// The `store_layers` older streamLayeredImage built from the sorted paths with jq:
/// the first `max_layers - 1` paths one per layer, the rest in one last layer, empty layers dropped.
pub fn store_layers<S>(paths: &[S], max_layers: u64) -> Vec<&[S]> {
    let first = (max_layers.saturating_sub(1) as usize).min(paths.len());
    let (single, rest) = paths.split_at(first);
    let mut layers: Vec<&[S]> = single.chunks(1).collect();
    if !rest.is_empty() {
        layers.push(rest);
    }
    layers
}

/// [`store_layers`] as jq 1.6 prints it (2-space indent, a newline at the end).
pub fn store_layers_json<S: AsRef<str> + serde::Serialize>(
    paths: &[S],
    max_layers: u64,
) -> Result<Vec<u8>, Error> {
    let mut out =
        Vec::with_capacity(paths.iter().map(|p| p.as_ref().len() + 12).sum::<usize>() + 16);
    jq::write_with(&mut out, &store_layers(paths, max_layers), &jq::JQ).map_err(Error::Print)?;
    Ok(out)
}

/// `json.dumps(layers, ...)` and the newline `print` adds.
fn dumps_layers<S: AsRef<str> + serde::Serialize>(
    layers: &[Vec<S>],
    style: pyjson::Style,
) -> Result<Vec<u8>, Error> {
    let chars: usize = layers.iter().flatten().map(|p| p.as_ref().len() + 8).sum();
    let mut out = Vec::with_capacity(chars + 16 * layers.len() + 16);
    pyjson::write(&mut out, layers, style).map_err(Error::Print)?;
    out.push(b'\n');
    Ok(out)
}

/// `auto-layer.py GRAPH_LIST IGNORE_FILE LAYER_LIMIT`: the layers as one line of JSON.
pub fn auto_layer(graph_list: &[u8], ignore: &[u8], limit: i64) -> Result<Vec<u8>, Error> {
    // Bytes in memory cannot fail to be read.
    match listed::read(graph_list, graph_list.len() as u64)
        .ok()
        .flatten()
    {
        Some(listed) => {
            let mut out = Vec::new();
            auto_layer_listed(&listed, ignore, limit)?
                .write_to(&mut out)
                .map_err(Error::Print)?;
            Ok(out)
        }
        None => auto_layer_general(graph_list, ignore, limit),
    }
}

/// [`auto_layer`] of a list already read by [`listed::read`]: the layers, to be printed.
pub fn auto_layer_listed<'l>(
    listed: &'l listed::Listed,
    ignore: &[u8],
    limit: i64,
) -> Result<Layers<'l>, Error> {
    let text = String::from_utf8_lossy(ignore);
    let ignore = ignore_set(&text);
    autolayer::auto_layer_listed(listed, &ignore, limit).map(Layers)
}

/// auto-layer's layers: each one's paths.
pub struct Layers<'l>(Vec<Vec<&'l str>>);

impl Layers<'_> {
    /// Prints them as auto-layer.py does (`dumps_compact`), straight into `out`.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        write_compact(&self.0, out)
    }
}

/// [`auto_layer`] of any JSON, with the errors of malformed input.
fn auto_layer_general(graph_list: &[u8], ignore: &[u8], limit: i64) -> Result<Vec<u8>, Error> {
    let text =
        std::str::from_utf8(graph_list).map_err(|e| Error::Input(format!("not UTF-8: {e}")))?;
    let nodes = graph::parse_nodes(text, true)?;
    let text = String::from_utf8_lossy(ignore);
    let ignore = ignore_set(&text);
    let layers = autolayer::auto_layer(&nodes, &ignore, limit)?;
    dumps_compact(&layers)
}

/// [`dumps_layers`] in [`pyjson::COMPACT`] style, written straight into one buffer: a path of
/// printable ASCII without `"` or `\\` (every store path Nix makes) is its own JSON text, so
/// only other strings go through the escaping serializer.
fn dumps_compact(layers: &[Vec<&str>]) -> Result<Vec<u8>, Error> {
    let chars: usize = layers.iter().flatten().map(|p| p.len() + 4).sum();
    let mut out = Vec::with_capacity(chars + 4 * layers.len() + 4);
    write_compact(layers, &mut out).map_err(Error::Print)?;
    Ok(out)
}

/// Paths rendered per task by [`write_compact`].
const PIECE: usize = 4096;

/// [`dumps_compact`] into `out`: rendered in pieces on all cores (each path is a cache miss
/// away), written in order.
fn write_compact(layers: &[Vec<&str>], out: &mut impl std::io::Write) -> std::io::Result<()> {
    use rayon::prelude::*;
    let render = |(piece, paths): (usize, &[&str])| -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(paths.iter().map(|p| p.len() + 4).sum());
        for (j, path) in paths.iter().enumerate() {
            if piece > 0 || j > 0 {
                buf.extend_from_slice(b", ");
            }
            if is_plain(path) {
                buf.push(b'"');
                buf.extend_from_slice(path.as_bytes());
                buf.push(b'"');
            } else {
                pyjson::write(&mut buf, path, pyjson::COMPACT)?;
            }
        }
        Ok(buf)
    };
    let pieces: Vec<std::io::Result<Vec<Vec<u8>>>> = layers
        .par_iter()
        .map(|layer| layer.par_chunks(PIECE).enumerate().map(render).collect())
        .collect();
    out.write_all(b"[")?;
    for (i, layer) in pieces.into_iter().enumerate() {
        if i > 0 {
            out.write_all(b", ")?;
        }
        out.write_all(b"[")?;
        for piece in layer? {
            out.write_all(&piece)?;
        }
        out.write_all(b"]")?;
    }
    out.write_all(b"]\n")
}

/// Whether `s` is printable ASCII without `"` or `\`: JSON text as it is. Folded without an
/// early exit, so that the compiler checks many bytes at a time.
fn is_plain(s: &str) -> bool {
    !s.bytes().fold(false, |odd, b| {
        odd | !(b' '..=b'~').contains(&b) | (b == b'"') | (b == b'\\')
    })
}

/// auto-layer.py's `{line.strip() for line in f}`: lines end at `\n`, `\r` or `\r\n` (Python's
/// universal newlines), stripped of what `str.isspace` calls whitespace (Rust's
/// `char::is_whitespace` and the separators U+001C to U+001F). Empty lines are left out: no
/// store path is empty.
fn ignore_set(text: &str) -> graph::FastSet<&str> {
    text.split(['\n', '\r'])
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)))
        .filter(|l| !l.is_empty())
        .collect()
}

/// `python -m flatten_references_graph FILE`: the layers as indented JSON.
pub fn pipeline(input: &[u8]) -> Result<Vec<u8>, Error> {
    pipeline::run(input, |layers| {
        dumps_layers(
            layers,
            pyjson::Style {
                indent: Some(2),
                ensure_ascii: true,
            },
        )
    })?
}

#[cfg(test)]
mod tests;
