//! `auto-layer.py`: streamLayeredImage's default split of a closure into at most N layers.
//!
//! Candidates are taken biggest `narSize` first (ties: the later node in the input first),
//! sizes compared as Python compares them (negative ones, floats and integers of any size).
//! Each candidate `P` becomes a layer of its own; every path `P` depends on drops the primary
//! paths that depend on `P`, and joins `P`'s layer set unless one of its primaries is itself a
//! dependency of `P`. The split stops at the last one within the limit. Layer identities (sets
//! of primary paths) are interned, so a step costs O(nodes + edges).
//!
//! tidy: lookup only (the ignore set is only looked up).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;

use crate::graph::Node;
use crate::size::{order_by_size, Size, Total};
use crate::Error;

fn closure(start: &[u32], adj: &[Vec<u32>], seen: &mut [u32], mark: u32, out: &mut Vec<u32>) {
    out.clear();
    let mut stack: Vec<u32> = Vec::new();
    for &s in start {
        if seen[s as usize] != mark {
            seen[s as usize] = mark;
            stack.push(s);
        }
    }
    while let Some(v) = stack.pop() {
        out.push(v);
        for &c in &adj[v as usize] {
            if seen[c as usize] != mark {
                seen[c as usize] = mark;
                stack.push(c);
            }
        }
    }
}

struct Interner {
    ids: crate::graph::FastMap<Vec<u32>, u32>,
    sets: Vec<Vec<u32>>,
}

impl Interner {
    fn intern(&mut self, set: Vec<u32>) -> u32 {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(set.clone());
        self.ids.insert(set, id);
        id
    }
}

/// A string size, which auto-layer.py cannot add up (`TypeError`), refused before the work.
fn only_numbers(nodes: &[Node<'_>]) -> Result<(), Error> {
    match nodes.iter().find(|n| !n.nar_size.is_number()) {
        Some(n) => Err(Error::Input(format!(
            "node {}: narSize is a string, which auto-layer.py cannot add up",
            n.path
        ))),
        None => Ok(()),
    }
}

/// The sum of the sizes of `paths`, as auto-layer.py adds them.
fn sum_of(nodes: &[Node<'_>], paths: &[u32]) -> Result<Size<'static>, Error> {
    let mut total = Total::default();
    for &v in paths {
        let node = &nodes[v as usize];
        if !total.add(&node.nar_size) {
            return Err(Error::Input(format!(
                "node {}: narSize cannot be added to the others (an integer too large for a float)",
                node.path
            )));
        }
    }
    Ok(total.value().clone())
}

/// auto-layer.py's last check: the layers' sizes add up to the sum over the input list. With
/// integers they do unless a repeated path's earlier nodes, which its dict by path drops, do
/// not add up to 0; with floats rounding can break it, which is why it is redone here in
/// Python's order of additions (in a layer, the order of its sorted paths).
fn check_total(nodes: &[Node<'_>], layers: &[(Size<'_>, Vec<u32>)]) -> Result<(), Error> {
    let all: Vec<u32> = (0..nodes.len() as u32).collect();
    let listed = sum_of(nodes, &all)?;
    let mut layered = Total::default();
    for (_, paths) in layers {
        if !layered.add(&sum_of(nodes, paths)?) {
            return Err(Error::Input("the layer sizes cannot be added up".into()));
        }
    }
    if listed.py_cmp(layered.value()) != Some(Ordering::Equal) {
        return Err(Error::Input(format!(
            "the layer sizes add up to {}, not to the sum of narSize over the list, {listed} (auto-layer.py asserts they are equal; is a path listed twice?)",
            layered.value()
        )));
    }
    Ok(())
}

/// Splits the graph into layers; returns each layer's paths (ignored ones removed, empty layers dropped).
pub fn auto_layer<'n>(
    nodes: &'n [Node<'_>],
    ignore: &HashSet<String>,
    limit: i64,
) -> Result<Vec<Vec<&'n str>>, Error> {
    let n = nodes.len();
    // Python builds a dict by path; a repeated path keeps its last node.
    let arena = crate::graph::PathArena::new(nodes);
    let idx = arena.index();
    let mut deps: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut users: Vec<Vec<u32>> = vec![Vec::new(); n];
    let live: Vec<u32> = {
        let mut v: Vec<u32> = idx.values().copied().collect();
        v.sort_unstable();
        v
    };
    // Resolving the references is most of the setup (a hash lookup each, memory-bound):
    // done on all cores, then the lists are filled in order.
    let resolved: Vec<Result<Vec<u32>, Error>> = live
        .par_iter()
        .map(|&i| crate::graph::resolve(&nodes[i as usize], &idx))
        .collect();
    for (&i, list) in live.iter().zip(resolved) {
        let list = list?;
        for &j in &list {
            users[j as usize].push(i);
        }
        deps[i as usize] = list;
    }
    only_numbers(nodes)?;
    // Candidates: stable sort by narSize over the input list, taken from the end.
    let mut by_size = order_by_size(nodes)?;

    let mut interner = Interner {
        ids: Default::default(),
        sets: Vec::new(),
    };
    let empty = interner.intern(Vec::new());
    let mut split: Vec<u32> = vec![empty; n];
    let mut seen = vec![u32::MAX; n];
    let mut in_deps = vec![false; n];
    let mut is_user = vec![false; n];
    let mut count_stamp: Vec<u32> = Vec::new();
    let mut mark = 0u32;
    let (mut d, mut u) = (Vec::new(), Vec::new());
    while let Some(cand) = by_size.pop() {
        let p = idx[nodes[cand as usize].path.as_ref()];
        mark += 1;
        closure(&deps[p as usize], &deps, &mut seen, mark, &mut d);
        mark += 1;
        closure(&users[p as usize], &users, &mut seen, mark, &mut u);
        d.retain(|&x| x != p);
        u.retain(|&x| x != p);
        for &x in &d {
            in_deps[x as usize] = true;
        }
        for &x in &u {
            is_user[x as usize] = true;
        }
        let mut next = split.clone();
        next[p as usize] = interner.intern(vec![p]);
        for &dep in &d {
            let mut set: Vec<u32> = interner.sets[next[dep as usize] as usize]
                .iter()
                .copied()
                .filter(|&x| !is_user[x as usize])
                .collect();
            if !set.iter().any(|&x| in_deps[x as usize]) {
                if let Err(pos) = set.binary_search(&p) {
                    set.insert(pos, p);
                }
            }
            next[dep as usize] = interner.intern(set);
        }
        for &x in &d {
            in_deps[x as usize] = false;
        }
        for &x in &u {
            is_user[x as usize] = false;
        }
        count_stamp.resize(interner.sets.len(), 0);
        mark += 1;
        let mut layers = 0i64;
        for &v in &live {
            let id = next[v as usize] as usize;
            if count_stamp[id] != mark {
                count_stamp[id] = mark;
                layers += 1;
            }
        }
        if layers > limit {
            break;
        }
        split = next;
    }

    // Group paths by layer; order layers by closure size, ties by their sorted paths.
    let mut groups: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &v in &live {
        groups.entry(split[v as usize]).or_default().push(v);
    }
    // auto-layer.py's path_key: (name, hash) from the path split at its first '-'.
    let mut keys: Vec<(&str, &str)> = vec![("", ""); n];
    for &v in &live {
        let p = nodes[v as usize].path.as_ref();
        let Some((hash, name)) = p.split_once('-') else {
            return Err(Error::Input(format!(
                "path {p} has no '-' (not a store path)"
            )));
        };
        keys[v as usize] = (name, hash);
    }
    let path_key = |v: &u32| keys[*v as usize];
    let mut layers: Vec<(Size<'_>, Vec<u32>)> = Vec::new();
    for (_, mut paths) in groups {
        paths.sort_by_key(path_key);
        mark += 1;
        let mut all = Vec::new();
        closure(&paths, &deps, &mut seen, mark, &mut all);
        layers.push((sum_of(nodes, &all)?, paths));
    }
    layers.sort_by(|a, b| {
        a.0.py_cmp(&b.0)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.1.iter().map(path_key).cmp(b.1.iter().map(path_key)))
    });
    check_total(nodes, &layers)?;
    let mut out = Vec::new();
    for (_, paths) in layers {
        let kept: Vec<&str> = paths
            .iter()
            .map(|&v| nodes[v as usize].path.as_ref())
            .filter(|p| !ignore.contains(*p))
            .collect();
        if !kept.is_empty() {
            out.push(kept);
        }
    }
    Ok(out)
}
