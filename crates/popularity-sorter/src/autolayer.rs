//! `auto-layer.py`: streamLayeredImage's default split of a closure into at most N layers.
//!
//! Candidates are taken biggest `narSize` first (ties: the later node in the input first),
//! sizes compared as Python compares them (negative ones, floats and integers of any size).
//! Each candidate `P` becomes a layer of its own; every path `P` depends on drops the primary
//! paths that depend on `P`, and joins `P`'s layer set unless one of its primaries is itself a
//! dependency of `P`. The split stops at the last one within the limit.
//!
//! A layer's identity (its set of primary paths) is interned. A step changes a dependency's
//! layer as a function of its old layer only, so it is computed once per layer, not once per
//! path. With a count of the paths in each layer, the layer count after a step is known before
//! any path moves; the paths move only when the step is kept. The users of a candidate are
//! found in the primaries' dependency sets (bitsets, while they fit in 64 MiB) instead of
//! walked. A step costs O(what `P` reaches), plus O(what reaches `P`) past that memory.
//!
//! Layers of equal closure size come out as nixpkgs' auto-layer.py gives them: in the order of
//! a CPython set of the layers' identities (`crate::pyset`).
//!
//! tidy: lookup only (the interner, the ignore set and the cache of path hashes are only looked up).

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::graph::{Csr, FastMap, FastSet, Node, PathArena};
use crate::listed::Listed;
use crate::pyset::{frozenset_hash, str_hash, PySet};
use crate::size::{order_by, Size, Total};
use crate::Error;

/// One vertex per distinct path (a repeated path is its last node, as auto-layer.py's dict
/// by path keeps it), with its dependencies and users.
struct Graph<'s> {
    /// Each node's path and size, in list order.
    paths: Vec<&'s str>,
    sizes: Vec<Size<'s>>,
    /// The node of each vertex.
    live: Vec<u32>,
    deps: Csr,
    users: Csr,
    /// The vertices in the order of their path's first node: the order of auto-layer.py's
    /// dicts by path.
    dict_order: Vec<u32>,
    /// Each vertex's size, when every size is an integer of `i128` (the usual case).
    ints: Option<Vec<i128>>,
}

impl<'s> Graph<'s> {
    /// The graph of the nodes with these paths and sizes, given the node of each vertex, the
    /// vertices' dependencies, and each node's vertex.
    fn new(
        paths: Vec<&'s str>,
        sizes: Vec<Size<'s>>,
        live: Vec<u32>,
        deps: Csr,
        vertex: &[u32],
    ) -> Self {
        let rest = || {
            let dict_order = if live.len() == paths.len() {
                vertex.to_vec()
            } else {
                let mut seen = vec![false; live.len()];
                vertex
                    .iter()
                    .copied()
                    .filter(|&v| !std::mem::replace(&mut seen[v as usize], true))
                    .collect()
            };
            let ints = live
                .iter()
                .map(|&i| match sizes[i as usize] {
                    Size::Int(x) => Some(x),
                    _ => None,
                })
                .collect();
            (dict_order, ints)
        };
        let (users, (dict_order, ints)) = rayon::join(|| deps.transpose(), rest);
        Graph {
            paths,
            sizes,
            users,
            deps,
            live,
            dict_order,
            ints,
        }
    }

    fn path(&self, v: u32) -> &'s str {
        self.paths[self.live[v as usize] as usize]
    }

    fn size(&self, v: u32) -> &Size<'s> {
        &self.sizes[self.live[v as usize] as usize]
    }

    fn len(&self) -> usize {
        self.live.len()
    }
}

/// The vertices reached from `start` through `adj` (cycles allowed), `start` itself left out
/// unless a cycle leads back to it; `seen` marks them with `mark`.
fn reach(start: u32, adj: &Csr, seen: &mut [u32], mark: u32, out: &mut Vec<u32>) {
    out.clear();
    let mut next = 0;
    let mut row = adj.row(start);
    loop {
        for &c in row {
            if seen[c as usize] != mark {
                seen[c as usize] = mark;
                out.push(c);
            }
        }
        let Some(&v) = out.get(next) else {
            return;
        };
        next += 1;
        row = adj.row(v);
    }
}

/// Layer identities (sorted sets of primary vertices), interned, with the number of vertices
/// in each.
#[derive(Default)]
struct Layers {
    ids: FastMap<Vec<u32>, u32>,
    sets: Vec<Vec<u32>>,
    count: Vec<u32>,
    /// Layers holding at least one vertex.
    used: usize,
}

impl Layers {
    fn intern(&mut self, set: Vec<u32>) -> u32 {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(set.clone());
        self.ids.insert(set, id);
        self.count.push(0);
        id
    }

    fn enter(&mut self, id: u32, vertices: u32) {
        let c = &mut self.count[id as usize];
        if *c == 0 && vertices > 0 {
            self.used += 1;
        }
        *c += vertices;
    }

    fn leave(&mut self, id: u32, vertices: u32) {
        let c = &mut self.count[id as usize];
        if *c > 0 && *c == vertices {
            self.used -= 1;
        }
        *c -= vertices;
    }
}

/// How many bits the primary paths' dependency sets may take (64 MiB); past that, the users
/// of each candidate are walked instead.
const PRIMARY_BITS: usize = 1 << 29;

/// The dependencies of each primary path, a bit per vertex: a primary `x` depends on a
/// candidate `p` exactly when `x` is one of `p`'s users, so with these a step need not walk
/// the users (in a chain, half the graph at each step).
struct PrimaryDeps {
    sets: Vec<Vec<u64>>,
    /// Per vertex: its index in `sets`, `u32::MAX` when it is not a primary.
    slot: Vec<u32>,
}

impl PrimaryDeps {
    /// Whether primary `x` depends on `p`.
    fn depends(&self, x: u32, p: u32) -> bool {
        let Some(set) = self.sets.get(self.slot[x as usize] as usize) else {
            return false;
        };
        set[p as usize / 64] >> (p % 64) & 1 == 1
    }

    /// The (cleared) dependency set of a new primary `p`, or its set if it has one; `None`
    /// when a new one no longer fits.
    fn set_for(&mut self, p: u32) -> Option<&mut Vec<u64>> {
        let words = self.slot.len().div_ceil(64);
        if self.slot[p as usize] == u32::MAX {
            if (self.sets.len() + 1) * words * 64 > PRIMARY_BITS {
                return None;
            }
            self.slot[p as usize] = self.sets.len() as u32;
            self.sets.push(vec![0u64; words]);
        }
        self.sets.get_mut(self.slot[p as usize] as usize)
    }
}

/// The split being built: each vertex's layer, and the scratch space of a step.
struct Split {
    layer: Vec<u32>,
    layers: Layers,
    /// Per vertex: the mark of the last dependency set (`deps`) or user set (`users`) it was in.
    in_deps: Vec<u32>,
    in_users: Vec<u32>,
    /// The primaries' dependencies, while they fit (else users are marked in `in_users`).
    primary_deps: Option<PrimaryDeps>,
    step: u32,
    /// Per layer: the step that last touched it, how many of its vertices that step moves,
    /// and to which layer.
    touched_step: Vec<u32>,
    moving: Vec<u32>,
    next: Vec<u32>,
    /// The layers the current step touches.
    touched: Vec<u32>,
}

impl Split {
    fn new(vertices: usize) -> Split {
        let mut layers = Layers::default();
        let empty = layers.intern(Vec::new());
        layers.enter(empty, vertices as u32);
        Split {
            layer: vec![empty; vertices],
            layers,
            in_deps: vec![0; vertices],
            in_users: vec![0; vertices],
            primary_deps: Some(PrimaryDeps {
                sets: Vec::new(),
                slot: vec![u32::MAX; vertices],
            }),
            step: 0,
            touched_step: Vec::new(),
            moving: Vec::new(),
            next: Vec::new(),
            touched: Vec::new(),
        }
    }

    /// Whether primary `x` is a user of the candidate `p` (of this step).
    fn is_user(&self, x: u32, p: u32) -> bool {
        match &self.primary_deps {
            Some(deps) => deps.depends(x, p),
            None => self.in_users[x as usize] == self.step,
        }
    }

    /// The layer a dependency of `p` in layer `old` moves to: `old` without the users of `p`,
    /// plus `p` unless a remaining primary is itself a dependency of `p`.
    fn successor(&mut self, old: u32, p: u32) -> u32 {
        let mut set: Vec<u32> = self.layers.sets[old as usize]
            .iter()
            .copied()
            .filter(|&x| !self.is_user(x, p))
            .collect();
        if !set.iter().any(|&x| self.in_deps[x as usize] == self.step) {
            if let Err(pos) = set.binary_search(&p) {
                set.insert(pos, p);
            }
        }
        self.layers.intern(set)
    }

    /// Walks what `p` depends on into `deps` (marked in `in_deps`, `p` itself left out even
    /// when a cycle leads back to it), counting them per layer as they are found and noting
    /// the layers touched: one pass, where the walk and the count were two.
    fn walk_deps(&mut self, p: u32, adj: &Csr, deps: &mut Vec<u32>) {
        deps.clear();
        self.touched.clear();
        let layers = self.layers.sets.len();
        if self.touched_step.len() < layers {
            self.touched_step.resize(layers, 0);
            self.moving.resize(layers, 0);
            self.next.resize(layers, 0);
        }
        let step = self.step;
        self.in_deps[p as usize] = step;
        let mut next = 0;
        let mut row = adj.row(p);
        loop {
            for &c in row {
                if self.in_deps[c as usize] != step {
                    self.in_deps[c as usize] = step;
                    deps.push(c);
                    let o = self.layer[c as usize] as usize;
                    if self.touched_step[o] != step {
                        self.touched_step[o] = step;
                        self.moving[o] = 0;
                        self.touched.push(o as u32);
                    }
                    self.moving[o] += 1;
                }
            }
            let Some(&v) = deps.get(next) else {
                break;
            };
            next += 1;
            row = adj.row(v);
        }
        self.in_deps[p as usize] = 0;
    }

    /// Moves `p`'s dependencies to their layers' next layers, recording them as `p`'s
    /// dependency set on the way (or giving the sets up when it no longer fits).
    fn move_deps(&mut self, p: u32, deps: &[u32]) {
        let set = self.primary_deps.as_mut().and_then(|pd| pd.set_for(p));
        match set {
            Some(set) => {
                for &d in deps {
                    let l = &mut self.layer[d as usize];
                    *l = self.next[*l as usize];
                    set[d as usize / 64] |= 1 << (d % 64);
                }
            }
            None => {
                self.primary_deps = None;
                for &d in deps {
                    let l = &mut self.layer[d as usize];
                    *l = self.next[*l as usize];
                }
            }
        }
    }

    /// Moves the counted vertices of each touched layer to its `next` layer, or back.
    fn shift_counts(&mut self, back: bool) {
        for &o in &self.touched {
            let (k, n) = (self.moving[o as usize], self.next[o as usize]);
            let (from, to) = if back { (n, o) } else { (o, n) };
            self.layers.enter(to, k);
            self.layers.leave(from, k);
        }
    }

    /// Makes `p` a primary path; false (and the split unchanged) when that gives more than
    /// `limit` layers. Every dependency in one layer moves to one layer, so the new layer
    /// count is known from the counts per layer before any vertex moves.
    fn try_primary(&mut self, p: u32, g: &Graph<'_>, buf: &mut [Vec<u32>; 2], limit: i64) -> bool {
        self.step += 1;
        let [deps, users] = buf;
        // A cycle through `p` puts it among its own dependencies; auto-layer.py leaves it out.
        self.walk_deps(p, &g.deps, deps);
        if self.primary_deps.is_none() {
            reach(p, &g.users, &mut self.in_users, self.step, users);
        }
        self.in_users[p as usize] = 0;
        let touched = std::mem::take(&mut self.touched);
        for &o in &touched {
            self.next[o as usize] = self.successor(o, p);
        }
        self.touched = touched;
        let (own, old) = (self.layers.intern(vec![p]), self.layer[p as usize]);
        self.shift_counts(false);
        self.layers.enter(own, 1);
        self.layers.leave(old, 1);
        if self.layers.used as i64 > limit {
            self.layers.enter(old, 1);
            self.layers.leave(own, 1);
            self.shift_counts(true);
            return false;
        }
        self.move_deps(p, deps);
        self.layer[p as usize] = own;
        true
    }
}

/// The graph of the distinct paths of `nodes`, and each node's vertex; a reference to a path
/// that is not a node is an error.
fn graph_of_nodes<'s>(nodes: &'s [Node<'_>]) -> Result<(Graph<'s>, Vec<u32>), Error> {
    let arena = PathArena::new(nodes);
    let index = arena.index();
    let deps = crate::graph::adjacency(nodes, &index)?;
    // Each node's vertex (a repeated path's earlier nodes too), for the candidates.
    let vertex: Vec<u32> = if index.live.len() == nodes.len() {
        (0..nodes.len() as u32).collect()
    } else {
        nodes
            .iter()
            .map(|n| index.map.get(n.path.as_ref()).copied().unwrap_or(0))
            .collect()
    };
    let paths = nodes.iter().map(|n| n.path.as_ref()).collect();
    let sizes = nodes.iter().map(|n| n.nar_size.clone()).collect();
    Ok((Graph::new(paths, sizes, index.live, deps, &vertex), vertex))
}

/// [`graph_of_nodes`] of a list read as numbers: the same graph (vertices numbered in the
/// order of their nodes, the same error for a missing reference).
fn graph_of_listed(l: &Listed) -> Result<(Graph<'_>, Vec<u32>), Error> {
    let mut last = vec![u32::MAX; l.strings.len()];
    for (k, &p) in l.paths.iter().enumerate() {
        last[p as usize] = k as u32;
    }
    let live: Vec<u32> = (0..l.len() as u32)
        .filter(|&k| last[l.paths[k as usize] as usize] == k)
        .collect();
    // Each string's vertex: `u32::MAX` for a path that is only referenced.
    let mut vertex_of = vec![u32::MAX; l.strings.len()];
    for (v, &k) in live.iter().enumerate() {
        vertex_of[l.paths[k as usize] as usize] = v as u32;
    }
    let rows = || {
        Csr::from_rows_par(live.len(), |v, out| {
            let k = live[v] as usize;
            let from = out.len();
            for &r in l.refs(k) {
                match vertex_of[r as usize] {
                    u32::MAX => {
                        return Err(Error::MissingRef {
                            node: l.path(k).to_string(),
                            reference: l.strings.get(r).to_string(),
                        })
                    }
                    w => out.push(w),
                }
            }
            crate::graph::dedup_tail(out, from);
            crate::graph::drop_self(out, from, v);
            Ok(())
        })
    };
    // Each node's vertex, path and size, meanwhile (a path is a cache miss each).
    let nodes = || {
        let vertex: Vec<u32> = l.paths.iter().map(|&p| vertex_of[p as usize]).collect();
        let paths: Vec<&str> = (0..l.len()).into_par_iter().map(|k| l.path(k)).collect();
        let sizes = l.sizes.iter().map(|&s| Size::Int(i128::from(s))).collect();
        (vertex, paths, sizes)
    };
    let (deps, (vertex, paths, sizes)) = rayon::join(rows, nodes);
    Ok((Graph::new(paths, sizes, live, deps?, &vertex), vertex))
}

/// A string size, which auto-layer.py cannot add up (`TypeError`), refused before the work.
fn only_numbers(g: &Graph<'_>) -> Result<(), Error> {
    match g.sizes.iter().position(|s| !s.is_number()) {
        Some(k) => Err(Error::Input(format!(
            "node {}: narSize is a string, which auto-layer.py cannot add up",
            g.paths[k]
        ))),
        None => Ok(()),
    }
}

/// The layer of every vertex once the split has stopped.
fn layer_split(g: &Graph<'_>, vertex: &[u32], limit: i64) -> Result<Split, Error> {
    // Candidates: stable sort by narSize over the input list, taken from the end.
    let by_size = order_by(g.paths.len(), |k| &g.sizes[k], |k| g.paths[k])?;
    let mut split = Split::new(g.len());
    let mut buf = [Vec::new(), Vec::new()];
    for &cand in by_size.iter().rev() {
        if !split.try_primary(vertex[cand as usize], g, &mut buf, limit) {
            break;
        }
    }
    Ok(split)
}

/// Splits the graph into layers; returns each layer's paths (ignored ones removed, empty layers dropped).
pub fn auto_layer<'n>(
    nodes: &'n [Node<'_>],
    ignore: &FastSet<&str>,
    limit: i64,
) -> Result<Vec<Vec<&'n str>>, Error> {
    let (g, vertex) = graph_of_nodes(nodes)?;
    layers_of(&g, &vertex, ignore, limit)
}

/// [`auto_layer`] of a list read as numbers.
pub fn auto_layer_listed<'l>(
    listed: &'l Listed,
    ignore: &FastSet<&str>,
    limit: i64,
) -> Result<Vec<Vec<&'l str>>, Error> {
    let (g, vertex) = graph_of_listed(listed)?;
    layers_of(&g, &vertex, ignore, limit)
}

/// The layers of the graph: each layer's paths (ignored ones removed, empty layers dropped).
fn layers_of<'s>(
    g: &Graph<'s>,
    vertex: &[u32],
    ignore: &FastSet<&str>,
    limit: i64,
) -> Result<Vec<Vec<&'s str>>, Error> {
    only_numbers(g)?;
    // The split is one step after another; what the ordering needs of the graph alone is
    // worked out on the other cores meanwhile.
    let (split, (sorted, users_first)) = rayon::join(
        || layer_split(g, vertex, limit),
        || rayon::join(|| by_key(g), || users_first(g)),
    );
    let layers = order_layers(g, &split?, sorted?, users_first.as_deref())?;
    check_total(g, &layers)?;
    Ok(layers
        .iter()
        .filter_map(|layer| {
            let kept: Vec<&str> = layer
                .paths
                .iter()
                .map(|&v| g.path(v))
                .filter(|p| ignore.is_empty() || !ignore.contains(p))
                .collect();
            (!kept.is_empty()).then_some(kept)
        })
        .collect())
}

/// A finished layer: its paths (sorted as auto-layer.py sorts them) and the sum of `narSize`
/// over everything they reach.
struct Layer<'s> {
    paths: Vec<u32>,
    closure_size: Size<'s>,
}

/// auto-layer.py's `path_key`: (name, hash) from the path split at its first '-'.
fn path_key(path: &str) -> Result<(&str, &str), Error> {
    match path.split_once('-') {
        Some((hash, name)) => Ok((name, hash)),
        None => Err(no_dash(path)),
    }
}

/// The error for a path without '-'.
fn no_dash(path: &str) -> Error {
    Error::Input(format!("path {path} has no '-' (not a store path)"))
}

/// The first 24 bytes of a key's name as numbers, which settle almost every comparison
/// without another look at the path (zero padding keeps the order: a shorter name never
/// compares greater). 16 bytes left a quarter of a generated 100k graph's names tied with
/// another; 24 leave a few hundred.
fn key_head(name: &str) -> (u128, u64) {
    let mut head = [0u8; 24];
    for (slot, b) in head.iter_mut().zip(name.bytes()) {
        *slot = b;
    }
    let (high, low) = head.split_at(16);
    (
        u128::from_be_bytes(high.try_into().unwrap_or_default()),
        u64::from_be_bytes(low.try_into().unwrap_or_default()),
    )
}

/// Every vertex, in the order of [`path_key`]: one sort (on all cores), from which each
/// layer's paths come out sorted.
fn by_key(g: &Graph<'_>) -> Result<Vec<u32>, Error> {
    let heads: Result<Vec<(u128, u64, u32)>, u32> = (0..g.len() as u32)
        .into_par_iter()
        .map(|v| {
            let (name, _) = path_key(g.path(v)).map_err(|_| v)?;
            let (high, low) = key_head(name);
            Ok((high, low, v))
        })
        .collect();
    // Some path has no '-' (rayon reports any one): the error names the first.
    let mut heads = heads.map_err(|bad| {
        let first = (0..bad).find(|&v| !g.path(v).contains('-'));
        no_dash(g.path(first.unwrap_or(bad)))
    })?;
    let key = |v: u32| path_key(g.path(v)).unwrap_or_default();
    // Keys are distinct (distinct paths), so an unstable sort gives the one order.
    heads.par_sort_unstable_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| key(a.2).cmp(&key(b.2)))
    });
    Ok(heads.into_iter().map(|(_, _, v)| v).collect())
}

/// The layers, ordered by closure size; ties in the order of CPython's
/// `set(layer_split.values())` (see [`set_order`]), since the sort is stable. `sorted` is
/// every vertex in [`by_key`] order, `users_first` the order of [`users_first`].
fn order_layers<'s>(
    g: &Graph<'s>,
    split: &Split,
    sorted: Vec<u32>,
    users_first: Option<&[u32]>,
) -> Result<Vec<Layer<'s>>, Error> {
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); split.layers.sets.len()];
    for v in sorted {
        groups[split.layer[v as usize] as usize].push(v);
    }
    let groups: Vec<Vec<u32>> = set_order(g, split)
        .into_iter()
        .map(|id| std::mem::take(&mut groups[id as usize]))
        .collect();
    let known = users_first.and_then(|order| closure_sizes(g, order, &groups));
    // The layers are independent (in a chain, each closure is most of the graph): one per
    // task, each thread with its own marks; errors checked in order, as above.
    let layers: Vec<Result<Layer<'s>, Error>> = groups
        .into_par_iter()
        .enumerate()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(seen, reached), (k, paths)| {
                let closure_size = match known.as_ref().and_then(|sizes| sizes.get(k)) {
                    Some(&size) => Ok(Size::Int(size)),
                    None => {
                        seen.resize(g.len(), false);
                        closure(&paths, &g.deps, seen, reached);
                        let size = sum_of(g, reached);
                        reached.iter().for_each(|&v| seen[v as usize] = false);
                        size
                    }
                };
                Ok(Layer {
                    paths,
                    closure_size: closure_size?,
                })
            },
        )
        .collect();
    let mut layers = layers.into_iter().collect::<Result<Vec<_>, Error>>()?;
    layers.sort_by(|a, b| {
        a.closure_size
            .py_cmp(&b.closure_size)
            .unwrap_or(Ordering::Equal)
    });
    Ok(layers)
}

/// The layer ids in the iteration order of auto-layer.py's `set(layer_split.values())` under
/// `PYTHONHASHSEED=0`: the frozensets of primary paths, added in the order of the dict (the
/// paths' first appearance in the input).
fn set_order(g: &Graph<'_>, split: &Split) -> Vec<u32> {
    let mut hash_of: Vec<Option<i64>> = vec![None; split.layers.sets.len()];
    let mut path_hash: FastMap<u32, i64> = FastMap::default();
    let mut set = PySet::default();
    for &v in &g.dict_order {
        let id = split.layer[v as usize];
        let hash = *hash_of[id as usize].get_or_insert_with(|| {
            frozenset_hash(
                split.layers.sets[id as usize]
                    .iter()
                    .map(|&p| *path_hash.entry(p).or_insert_with(|| str_hash(g.path(p)))),
            )
        });
        set.add(hash, id);
    }
    set.iter().collect()
}

/// The vertices with every user before it (Kahn's order); `None` when there is a cycle.
fn users_first(g: &Graph<'_>) -> Option<Vec<u32>> {
    let mut waiting: Vec<u32> = (0..g.len() as u32)
        .map(|v| g.users.row(v).len() as u32)
        .collect();
    let mut order: Vec<u32> = (0..g.len() as u32)
        .filter(|&v| waiting[v as usize] == 0)
        .collect();
    let mut next = 0;
    while let Some(&v) = order.get(next) {
        next += 1;
        for &c in g.deps.row(v) {
            waiting[c as usize] -= 1;
            if waiting[c as usize] == 0 {
                order.push(c);
            }
        }
    }
    (order.len() == g.len()).then_some(order)
}

/// Layers handled per pass of [`closure_sizes`]: a bit each.
const LAYERS_PER_PASS: usize = 128;

/// The closure size of each group of paths, all in a few passes over the graph instead of a
/// walk per group (in a chain, each walk covers most of the graph): a vertex is in the
/// closures of its own group and of every group its users are in the closures of, so in an
/// order with users first, a bitset of groups per vertex is an OR of its users'. Vertices
/// with the same bitset are added up together. `None` (each closure walked instead) when a
/// size is not an integer of `i128` or a sum overflows. `order` has every user of a vertex
/// before it (the graph has no cycle).
fn closure_sizes(g: &Graph<'_>, order: &[u32], groups: &[Vec<u32>]) -> Option<Vec<i128>> {
    let ints = g.ints.as_ref()?;
    let mut sizes = vec![0i128; groups.len()];
    let mut bits = vec![0u128; g.len()];
    for first in (0..groups.len()).step_by(LAYERS_PER_PASS) {
        bits.iter_mut().for_each(|b| *b = 0);
        for (k, group) in groups.iter().enumerate().skip(first).take(LAYERS_PER_PASS) {
            group
                .iter()
                .for_each(|&v| bits[v as usize] = 1 << (k - first));
        }
        let mut by_bits: FastMap<u128, i128> = FastMap::default();
        for &v in order {
            let b = bits[v as usize];
            for &c in g.deps.row(v) {
                bits[c as usize] |= b;
            }
            let sum = by_bits.entry(b).or_insert(0);
            *sum = sum.checked_add(ints[v as usize])?;
        }
        for (b, sum) in by_bits {
            for (k, size) in sizes
                .iter_mut()
                .enumerate()
                .skip(first)
                .take(LAYERS_PER_PASS)
            {
                if b >> (k - first) & 1 == 1 {
                    *size = size.checked_add(sum)?;
                }
            }
        }
    }
    Some(sizes)
}

/// `start` and every vertex it reaches, marked in `seen` (the caller clears the marks).
fn closure(start: &[u32], adj: &Csr, seen: &mut [bool], out: &mut Vec<u32>) {
    out.clear();
    for &s in start {
        if !std::mem::replace(&mut seen[s as usize], true) {
            out.push(s);
        }
    }
    let mut next = 0;
    while let Some(&v) = out.get(next) {
        next += 1;
        for &c in adj.row(v) {
            if !std::mem::replace(&mut seen[c as usize], true) {
                out.push(c);
            }
        }
    }
}

/// The sum of the sizes of `vertices`, as auto-layer.py adds them.
fn sum_of<'s>(g: &Graph<'s>, vertices: &[u32]) -> Result<Size<'s>, Error> {
    if let Some(ints) = &g.ints {
        let sum = vertices
            .iter()
            .try_fold(0i128, |sum, &v| sum.checked_add(ints[v as usize]));
        if let Some(sum) = sum {
            return Ok(Size::Int(sum));
        }
    }
    sum_sizes(vertices.iter().map(|&v| (g.size(v), g.path(v))))
}

/// The sum of sizes (with the path each belongs to, to name it in an error), added as Python
/// adds them; integers in `i128` while they fit.
fn sum_sizes<'s, 'x>(
    mut sizes: impl Iterator<Item = (&'x Size<'s>, &'x str)>,
) -> Result<Size<'s>, Error>
where
    's: 'x,
{
    let mut fast: i128 = 0;
    let mut total = Total::default();
    for (size, path) in sizes.by_ref() {
        if let Size::Int(i) = size {
            if let Some(sum) = fast.checked_add(*i) {
                fast = sum;
                continue;
            }
        }
        // Past i128, or not an integer: from here on Python's way.
        if !total.add(&Size::Int(fast)) || !total.add(size) {
            return Err(too_large(path));
        }
        for (size, path) in sizes.by_ref() {
            if !total.add(size) {
                return Err(too_large(path));
            }
        }
        return Ok(total.value().clone());
    }
    Ok(Size::Int(fast))
}

fn too_large(path: &str) -> Error {
    Error::Input(format!(
        "node {path}: narSize cannot be added to the others (an integer too large for a float)"
    ))
}

/// auto-layer.py's last check: the layers' sizes add up to the sum over the input list. With
/// integers they do unless a repeated path's earlier nodes, which its dict by path drops, do
/// not add up to 0; with floats rounding can break it, which is why it is redone here in
/// Python's order of additions (in a layer, the order of its sorted paths).
fn check_total(g: &Graph<'_>, layers: &[Layer<'_>]) -> Result<(), Error> {
    let listed = sum_sizes(g.sizes.iter().zip(g.paths.iter().copied()))?;
    let mut layered = Total::default();
    for layer in layers {
        if !layered.add(&sum_of(g, &layer.paths)?) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A DAG of `n` nodes, each referencing a few later ones.
    fn dag(n: usize) -> String {
        let p = |i: usize| format!("/nix/store/{i:032}-n");
        let nodes: Vec<String> = (0..n)
            .map(|i| {
                let refs: Vec<String> = [i * 7 + 1, i * 3 + 2, i + 5]
                    .iter()
                    .filter(|&&j| j < n && j % 4 != 0)
                    .map(|&j| format!("{:?}", p(j)))
                    .collect();
                format!(
                    r#"{{"path": "{}", "narSize": {}, "references": [{}]}}"#,
                    p(i),
                    1000 + i * 37 % 101,
                    refs.join(", ")
                )
            })
            .collect();
        format!("[{}]", nodes.join(", "))
    }

    #[test]
    fn closure_sizes_in_passes_are_the_walked_ones() {
        let text = dag(1000);
        let nodes = crate::graph::parse_nodes(&text, true).unwrap();
        let (g, _) = graph_of_nodes(&nodes).unwrap();
        // More groups than one pass holds, some of them empty.
        let mut groups = vec![Vec::new(); 300];
        for v in 0..g.len() as u32 {
            groups[(v as usize * 13) % 290].push(v);
        }
        let order = users_first(&g).unwrap();
        let sizes = closure_sizes(&g, &order, &groups).unwrap();
        let (mut seen, mut reached) = (vec![false; g.len()], Vec::new());
        for (group, size) in groups.iter().zip(&sizes) {
            closure(group, &g.deps, &mut seen, &mut reached);
            reached.iter().for_each(|&v| seen[v as usize] = false);
            assert_eq!(Size::Int(*size), sum_of(&g, &reached).unwrap());
        }
        assert!(sizes.contains(&0));
    }

    #[test]
    fn a_cycle_leaves_closure_sizes_to_the_walks() {
        let text = r#"[{"path": "/nix/store/a-a", "narSize": 1, "references": ["/nix/store/b-b"]},
            {"path": "/nix/store/b-b", "narSize": 2, "references": ["/nix/store/a-a"]}]"#;
        let nodes = crate::graph::parse_nodes(text, true).unwrap();
        let (g, _) = graph_of_nodes(&nodes).unwrap();
        assert_eq!(users_first(&g), None);
    }
}
