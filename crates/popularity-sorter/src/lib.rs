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
pub mod pipeline;
pub mod popularity;
pub mod size;

use std::collections::HashSet;

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

/// `closure-graph.py FILE KEY`: one path per line, most popular first.
pub fn closure_graph(input: &[u8], key: &str) -> Result<Vec<String>, Error> {
    let data: std::collections::HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(input)?;
    let list = data
        .get(key)
        .ok_or_else(|| Error::Input(format!("missing key {key:?}")))?;
    let nodes = graph::parse_nodes(list.get(), false)?;
    // A repeated path keeps its last node, as the original's dict does.
    let live: Vec<u32> = {
        let mut seen = HashSet::new();
        let mut v: Vec<u32> = (0..nodes.len() as u32)
            .rev()
            .filter(|&i| seen.insert(nodes[i as usize].path.as_ref()))
            .collect();
        v.reverse();
        v
    };
    let unique: Vec<graph::Node<'_>> = live.iter().map(|&i| nodes[i as usize].clone()).collect();
    let arena = graph::PathArena::new(&unique);
    let idx_unique = arena.index();
    let adj = graph::adjacency(&unique, &idx_unique)?;
    let key_of = |v: u32| graph::package_name_key(&unique[v as usize].path);
    let name_of = |v: u32| unique[v as usize].path.to_string();
    let order = popularity::order(&adj.succ, &key_of, &name_of)?;
    Ok(order
        .into_iter()
        .map(|v| unique[v as usize].path.to_string())
        .collect())
}

/// The `store_layers` older streamLayeredImage built from the sorted paths with jq:
/// the first `max_layers - 1` paths one per layer, the rest in one last layer, empty layers dropped.
pub fn store_layers(paths: &[String], max_layers: u64) -> Vec<&[String]> {
    let first = (max_layers.saturating_sub(1) as usize).min(paths.len());
    let (single, rest) = paths.split_at(first);
    let mut layers: Vec<&[String]> = single.chunks(1).collect();
    if !rest.is_empty() {
        layers.push(rest);
    }
    layers
}

/// [`store_layers`] as jq 1.6 prints it (2-space indent, a newline at the end).
pub fn store_layers_json(paths: &[String], max_layers: u64) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(paths.iter().map(|p| p.len() + 12).sum::<usize>() + 16);
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
    let text =
        std::str::from_utf8(graph_list).map_err(|e| Error::Input(format!("not UTF-8: {e}")))?;
    let nodes = graph::parse_nodes(text, true)?;
    let text = String::from_utf8_lossy(ignore);
    let ignore: HashSet<String> = text
        .split('\n')
        .map(|l| l.trim_matches(|c: char| c.is_whitespace()).to_string())
        .collect();
    let layers = autolayer::auto_layer(&nodes, &ignore, limit)?;
    dumps_layers(&layers, pyjson::COMPACT)
}

/// `python -m flatten_references_graph FILE`: the layers as indented JSON.
pub fn pipeline(input: &[u8]) -> Result<Vec<u8>, Error> {
    let layers = pipeline::run(input)?;
    dumps_layers(
        &layers,
        pyjson::Style {
            indent: Some(2),
            ensure_ascii: true,
        },
    )
}

#[cfg(test)]
mod tests;
