//! The popularity contest of `closure-graph.py` and flatten-references-graph, without unfolding.
//!
//! The originals unfold the graph into a tree from every root and merge counters bottom-up.
//! That count has a closed form: with `P(y)` the number of paths from the roots to `y`
//! (1 for a root), the popularity of `d` is the sum of `P(y)` over `d` and all its ancestors.
//! A node with one parent has its parent's popularity plus its own `P`. Every other node needs
//! the sum over its ancestor set, taken one of two ways:
//! - a node with few ancestors (at most `budget`) walks them;
//! - the others, the widely shared libraries, are summed 64 at a time: one pass over the graph,
//!   children before parents, gives every node a 64-bit mask of the targets it reaches, and
//!   each node's `P` is added to the targets its mask names.
//!
//! Both run on all cores and give the same sums whatever the thread count.
//! Counts use `u128` and switch to arbitrary precision if they ever overflow, so results are
//! exact at any scale.

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use num_bigint::BigUint;
use rayon::prelude::*;

use crate::graph::{Csr, PackageName};
use crate::Error;

/// A path count or a sum of them.
trait Count: Clone + Ord + Send + Sync {
    fn zero() -> Self;
    fn one() -> Self;
    /// Adds `other`; false on overflow.
    fn checked_add(&mut self, other: &Self) -> bool;
    /// Adds `other` where the caller knows the sum fits.
    fn add(&mut self, other: &Self);
    /// Subtracts `other` where the caller knows the result is not negative once all its
    /// additions are done (fixed-width counts wrap in between).
    fn sub(&mut self, other: &Self);
}

macro_rules! fixed_width_count {
    ($t:ty) => {
        impl Count for $t {
            fn zero() -> Self {
                0
            }
            fn one() -> Self {
                1
            }
            fn checked_add(&mut self, other: &Self) -> bool {
                match <$t>::checked_add(*self, *other) {
                    Some(v) => {
                        *self = v;
                        true
                    }
                    None => false,
                }
            }
            fn add(&mut self, other: &Self) {
                // Every sum taken is at most the total of all path counts, checked to fit.
                *self = self.wrapping_add(*other);
            }
            fn sub(&mut self, other: &Self) {
                *self = self.wrapping_sub(*other);
            }
        }
    };
}

fixed_width_count!(u64);
fixed_width_count!(u128);

impl Count for BigUint {
    fn zero() -> Self {
        BigUint::ZERO
    }
    fn one() -> Self {
        BigUint::from(1u8)
    }
    fn checked_add(&mut self, other: &Self) -> bool {
        *self += other;
        true
    }
    fn add(&mut self, other: &Self) {
        *self += other;
    }
    fn sub(&mut self, other: &Self) {
        *self -= other;
    }
}

/// The part of the graph the roots reach, renumbered in topological order (parents first):
/// rank `i` is node `node[i]`.
struct Reached {
    node: Vec<u32>,
    /// Parents of each rank (only reached ones), in ranks.
    preds: Csr,
    /// Children of each rank, in ranks.
    succ: Csr,
}

/// The nodes reachable from the roots, in topological order (roots first).
/// A cycle reachable from a root is an error naming a node on it.
fn topo_from_roots(
    succ: &Csr,
    roots: &[u32],
    name: &dyn Fn(u32) -> String,
) -> Result<Vec<u32>, Error> {
    // 0 = unseen, 1 = on the DFS stack, 2 = done.
    let mut state = vec![0u8; succ.len()];
    let mut post = Vec::with_capacity(succ.len());
    let mut stack: Vec<(u32, usize)> = Vec::new();
    for &r in roots {
        if state[r as usize] != 0 {
            continue;
        }
        state[r as usize] = 1;
        stack.push((r, 0));
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&c) = succ.row(v).get(*next) {
                *next += 1;
                match state[c as usize] {
                    0 => {
                        state[c as usize] = 1;
                        stack.push((c, 0));
                    }
                    1 => return Err(Error::Cycle(name(c))),
                    _ => {}
                }
            } else {
                state[v as usize] = 2;
                post.push(v);
                stack.pop();
            }
        }
    }
    post.reverse();
    Ok(post)
}

impl Reached {
    fn new(succ: &Csr, name: &dyn Fn(u32) -> String) -> Result<Reached, Error> {
        let n = succ.len();
        let mut has_parent = vec![false; n];
        for (_, c) in succ.pairs() {
            has_parent[c as usize] = true;
        }
        let roots: Vec<u32> = (0..n as u32).filter(|&v| !has_parent[v as usize]).collect();
        let node = topo_from_roots(succ, &roots, name)?;
        let mut rank = vec![u32::MAX; n];
        for (i, &v) in node.iter().enumerate() {
            rank[v as usize] = i as u32;
        }
        // Children of a reached node are reached; its rows keep their order.
        let edges = node
            .iter()
            .enumerate()
            .flat_map(|(i, &v)| succ.row(v).iter().map(move |&c| (i as u32, c)));
        let succ = Csr::from_edges(node.len(), edges.map(|(i, c)| (i, rank[c as usize])));
        Ok(Reached {
            preds: succ.transpose(),
            succ,
            node,
        })
    }

    fn len(&self) -> usize {
        self.node.len()
    }
}

/// `P` of every rank, and whether their total fits (then no sum of them overflows).
fn path_counts<C: Count>(g: &Reached) -> Option<Vec<C>> {
    let mut paths: Vec<C> = Vec::with_capacity(g.len());
    let mut total = C::zero();
    for y in 0..g.len() as u32 {
        let parents = g.preds.row(y);
        let mut p = if parents.is_empty() {
            C::one()
        } else {
            C::zero()
        };
        for &q in parents {
            if !p.checked_add(&paths[q as usize]) {
                return None;
            }
        }
        if !total.checked_add(&p) {
            return None;
        }
        paths.push(p);
    }
    Some(paths)
}

/// How many ancestors a node may have and still walk them: beyond it, a node's share of a
/// pass over the graph costs less than the walk (a walk step costs several steps of a pass:
/// it jumps around in memory where a pass reads in order; measured on mkstore.py graphs).
fn budget(g: &Reached) -> usize {
    ((g.len() + g.succ.edges()) / 512).clamp(64, 4096)
}

/// Walks the ancestors of `s` (itself included) and sums their `P`; `None` once more than
/// `budget` are seen or one of them is known to have more (then so has `s`).
struct Walker<'a, C> {
    g: &'a Reached,
    paths: &'a [C],
    heavy: &'a [AtomicBool],
    budget: usize,
}

impl<C: Count> Walker<'_, C> {
    fn sum(&self, s: u32, mark: u32, stamp: &mut [u32], stack: &mut Vec<u32>) -> Option<C> {
        let mut sum = C::zero();
        let mut seen = 1usize;
        stack.clear();
        stamp[s as usize] = mark;
        stack.push(s);
        while let Some(y) = stack.pop() {
            sum.add(&self.paths[y as usize]);
            for &p in self.g.preds.row(y) {
                if stamp[p as usize] != mark {
                    if self.heavy[p as usize].load(AtomicOrdering::Relaxed) || seen == self.budget {
                        self.heavy[s as usize].store(true, AtomicOrdering::Relaxed);
                        return None;
                    }
                    seen += 1;
                    stamp[p as usize] = mark;
                    stack.push(p);
                }
            }
        }
        Some(sum)
    }
}

/// Words in a target mask: a pass over the graph serves `64 * WORDS` targets.
const WORDS: usize = 4;

/// Which targets of a pass a node reaches.
type Mask = [u64; WORDS];

/// The sums of one pass: what each target gets, summed a run of equal masks at a time.
struct Sums<C> {
    /// Per target: sums added for the targets a mask names.
    plus: Vec<C>,
    /// Per target: sums of masks that name most of a word, added to every target of the
    /// word (`word`) and taken back from the targets the mask does not name (`minus`), so
    /// that a mask costs at most 32 additions per word.
    minus: Vec<C>,
    word: [C; WORDS],
    /// The mask of the current run, and its sum so far.
    run_mask: Mask,
    run: C,
    /// Sums of nodes that reach every target.
    all: C,
    full: Mask,
}

impl<C: Count> Sums<C> {
    fn new(targets: usize) -> Self {
        let mut full = [0u64; WORDS];
        for (w, f) in full.iter_mut().enumerate() {
            let bits = targets.saturating_sub(64 * w).min(64);
            *f = if bits == 0 {
                0
            } else {
                u64::MAX >> (64 - bits)
            };
        }
        Sums {
            plus: vec![C::zero(); targets],
            minus: vec![C::zero(); targets],
            word: std::array::from_fn(|_| C::zero()),
            run_mask: [0; WORDS],
            run: C::zero(),
            all: C::zero(),
            full,
        }
    }

    fn add(&mut self, m: &Mask, p: &C) {
        if *m == self.full {
            self.all.add(p);
        } else if *m == self.run_mask {
            self.run.add(p);
        } else {
            self.flush();
            self.run_mask = *m;
            self.run = p.clone();
        }
    }

    fn flush(&mut self) {
        for w in 0..WORDS {
            let bits = self.run_mask[w];
            let (list, mut rest) = if bits.count_ones() <= 32 {
                (&mut self.plus, bits)
            } else {
                self.word[w].add(&self.run);
                (&mut self.minus, !bits & self.full[w])
            };
            while rest != 0 {
                list[64 * w + rest.trailing_zeros() as usize].add(&self.run);
                rest &= rest - 1;
            }
        }
        self.run_mask = [0; WORDS];
        self.run = C::zero();
    }

    fn finish(mut self) -> Vec<C> {
        self.flush();
        let mut out = self.plus;
        for (k, (c, minus)) in out.iter_mut().zip(&self.minus).enumerate() {
            c.add(&self.word[k / 64]);
            c.add(&self.all);
            c.sub(minus);
        }
        out
    }
}

/// The ancestor sums of `targets` (ranks, ascending, at most `64 * WORDS`) in one pass over
/// the graph, children before parents.
fn block_sums<C: Count>(targets: &[u32], g: &Reached, paths: &[C], mask: &mut [Mask]) -> Vec<C> {
    let Some(&hi) = targets.last() else {
        return Vec::new();
    };
    let mut sums = Sums::new(targets.len());
    let mut next = targets.len();
    for y in (0..=hi).rev() {
        let mut m = [0u64; WORDS];
        if next > 0 && targets[next - 1] == y {
            next -= 1;
            m[next / 64] = 1 << (next % 64);
        }
        // A child ranked above `hi` reaches no target (targets rank below their ancestors'
        // children), and its mask is left over from another pass.
        for &c in g.succ.row(y) {
            if c <= hi {
                let cm = &mask[c as usize];
                for w in 0..WORDS {
                    m[w] |= cm[w];
                }
            }
        }
        mask[y as usize] = m;
        if m != [0; WORDS] {
            sums.add(&m, &paths[y as usize]);
        }
    }
    sums.finish()
}

/// The popularity of every rank.
fn popularity<C: Count>(g: &Reached, paths: &[C]) -> Vec<C> {
    let n = g.len();
    let heavy: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let walker = Walker {
        g,
        paths,
        heavy: &heavy,
        budget: budget(g),
    };
    let walkers: Vec<u32> = (0..n as u32)
        .filter(|&y| g.preds.row(y).len() > 1)
        .collect();
    // Walks are uneven (deep nodes have many ancestors), so the work is spread item by item;
    // each worker keeps one stamp array, and every walk marks with its own index.
    let walked: Vec<Option<C>> = walkers
        .par_iter()
        .enumerate()
        .map_init(
            || (vec![u32::MAX; n], Vec::new()),
            |(stamp, stack), (k, &s)| walker.sum(s, k as u32, stamp, stack),
        )
        .collect();
    let mut pop: Vec<Option<C>> = vec![None; n];
    let mut rest: Vec<u32> = Vec::new();
    for (&s, w) in walkers.iter().zip(walked) {
        match w {
            Some(c) => pop[s as usize] = Some(c),
            None => rest.push(s),
        }
    }
    let blocks: Vec<(u32, C)> = rest
        .par_chunks(64 * WORDS)
        .map_init(
            || vec![[0u64; WORDS]; n],
            |mask, targets| {
                let sums = block_sums(targets, g, paths, mask);
                targets.iter().copied().zip(sums).collect::<Vec<_>>()
            },
        )
        .flatten_iter()
        .collect();
    for (s, c) in blocks {
        pop[s as usize] = Some(c);
    }
    let mut out: Vec<C> = Vec::with_capacity(n);
    for y in 0..n {
        let c = match (&pop[y], g.preds.row(y as u32)) {
            (Some(c), _) => c.clone(),
            // A root, or a node whose one parent ranks before it.
            (None, parents) => {
                let mut c = parents
                    .first()
                    .map_or_else(C::zero, |&q| out[q as usize].clone());
                c.add(&paths[y]);
                c
            }
        };
        out.push(c);
    }
    out
}

/// The reached nodes by popularity, most popular first, ties by package name.
fn ranked<'p, C: Count>(g: &Reached, path: &(dyn Fn(u32) -> &'p str + Sync)) -> Option<Vec<u32>> {
    let paths = path_counts::<C>(g)?;
    let pop = popularity(g, &paths);
    let names: Vec<PackageName<'p>> = g
        .node
        .par_iter()
        .map(|&v| PackageName::new(path(v)))
        .collect();
    let mut order: Vec<u32> = (0..g.len() as u32).collect();
    order.par_sort_unstable_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        pop[b].cmp(&pop[a]).then_with(|| names[a].cmp(&names[b]))
    });
    Some(order.into_iter().map(|i| g.node[i as usize]).collect())
}

/// Orders the nodes the roots reach by popularity, most popular first, ties by package name
/// ([`PackageName`]); `path` gives a node's path, distinct for distinct nodes. `succ`
/// has no self-loops and no duplicates. Nodes no root reaches (only possible with cycles)
/// are not in the result.
pub fn order<'p>(succ: &Csr, path: &(dyn Fn(u32) -> &'p str + Sync)) -> Result<Vec<u32>, Error> {
    let g = Reached::new(succ, &|v| path(v).to_string())?;
    Ok(ranked::<u64>(&g, path)
        .or_else(|| ranked::<u128>(&g, path))
        .or_else(|| ranked::<BigUint>(&g, path))
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(lists: &[&[u32]]) -> Csr {
        let edges: Vec<(u32, u32)> = lists
            .iter()
            .enumerate()
            .flat_map(|(v, cs)| cs.iter().map(move |&c| (v as u32, c)))
            .collect();
        Csr::from_edges(lists.len(), edges.into_iter())
    }

    #[test]
    fn doc_example() -> Result<(), Error> {
        // A B C D E F G = 0..7: A->B, A->G, B->C, B->E, C->D, C->E, D->F, E->F
        let succ = csr(&[&[1, 6], &[2, 4], &[3, 4], &[5], &[5], &[], &[]]);
        let names = ["A", "B", "C", "D", "E", "F", "G"];
        let got: Vec<&str> = order(&succ, &|v| names[v as usize])?
            .into_iter()
            .map(|v| names[v as usize])
            .collect();
        assert_eq!(got, ["F", "E", "D", "C", "B", "G", "A"]);
        Ok(())
    }

    #[test]
    fn cycle_is_an_error() {
        let succ = csr(&[&[1], &[2], &[1]]);
        assert!(matches!(order(&succ, &|_| "x"), Err(Error::Cycle(_))));
    }
}
