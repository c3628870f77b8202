//! The references graph Nix writes with `exportReferencesGraph`: nodes with `path`,
//! `references` and `narSize`, read into index-based adjacency lists.

use std::collections::HashMap;

use serde_json::Value;

use crate::Error;

/// One node as read from JSON.
#[derive(Clone, Debug)]
pub struct Node {
    /// Store path.
    pub path: String,
    /// Referenced paths as written (self-references included).
    pub references: Vec<String>,
    /// `narSize` (0 when absent and not needed).
    pub nar_size: u64,
    /// `closureSize`, if present (carried along, never needed for the output).
    pub closure_size: Option<u64>,
}

fn bad(what: impl Into<String>) -> Error {
    Error::Input(what.into())
}

fn number(v: &Value, path: &str, key: &str) -> Result<u64, Error> {
    match v {
        Value::Number(n) => {
            let text = n.to_string();
            text.parse::<u64>()
                .or_else(|_| text.parse::<f64>().map(|f| f as u64))
                .map_err(|_| bad(format!("node {path}: {key} {text} is not a size")))
        }
        other => Err(bad(format!("node {path}: {key} is {other}, not a number"))),
    }
}

/// Reads a JSON list of nodes. `need_size` makes `narSize` required.
pub fn nodes_from(list: &Value, need_size: bool) -> Result<Vec<Node>, Error> {
    let Value::Array(items) = list else {
        return Err(bad("the graph is not a JSON list of nodes"));
    };
    let mut nodes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err(bad(format!("node {i} is not an object")));
        };
        let path = match m.get("path") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(bad(format!("node {i} has no \"path\" string"))),
        };
        let references = match m.get("references") {
            Some(Value::Array(refs)) => refs
                .iter()
                .map(|r| {
                    r.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(format!("node {path}: references must be strings")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(bad(format!("node {path} has no \"references\" list"))),
        };
        let nar_size = match m.get("narSize") {
            Some(v) => number(v, &path, "narSize")?,
            None if need_size => return Err(bad(format!("node {path} has no \"narSize\""))),
            None => 0,
        };
        let closure_size = m
            .get("closureSize")
            .map(|v| number(v, &path, "closureSize"))
            .transpose()?;
        nodes.push(Node {
            path,
            references,
            nar_size,
            closure_size,
        });
    }
    Ok(nodes)
}

/// A graph over node indices: deduplicated successor lists without self-references.
#[derive(Clone, Debug, Default)]
pub struct Adjacency {
    /// Successors of each node, in first-reference order.
    pub succ: Vec<Vec<u32>>,
}

/// Index of each path (the last node of a path wins, as a Python dict keeps it).
pub fn index(nodes: &[Node]) -> HashMap<&str, u32> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.path.as_str(), i as u32))
        .collect()
}

/// Builds successor lists; a reference to a path that is not a node is an error naming both.
pub fn adjacency(nodes: &[Node], idx: &HashMap<&str, u32>) -> Result<Adjacency, Error> {
    let mut succ = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let mut out: Vec<u32> = Vec::with_capacity(n.references.len());
        for r in &n.references {
            let Some(&j) = idx.get(r.as_str()) else {
                return Err(Error::MissingRef {
                    node: n.path.clone(),
                    reference: r.clone(),
                });
            };
            if j as usize != i && !out.contains(&j) {
                out.push(j);
            }
        }
        succ.push(out);
    }
    Ok(Adjacency { succ })
}

/// The sort key of `closure-graph.py`'s ties: the path split on `-`, its first piece moved last.
pub fn package_name_key(path: &str) -> String {
    match path.split_once('-') {
        Some((first, rest)) => format!("{rest}-{first}"),
        None => path.to_string(),
    }
}
