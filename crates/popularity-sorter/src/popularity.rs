//! The popularity contest of `closure-graph.py` and flatten-references-graph, in near-linear time.
//!
//! The originals unfold the graph into a tree from every root and merge counters bottom-up.
//! That count has a closed form: with `P(y)` the number of paths from the roots to `y`
//! (1 for a root), the popularity of `d` is the sum of `P(y)` over `d` and all its ancestors.
//! `P` is computed in topological order, each sum by a walk over the ancestors, so the cost is
//! the total size of the ancestor sets instead of the unfolded tree. Counts use `u128` and
//! fall back to arbitrary precision if they ever overflow, so results are exact at any scale.

use num_bigint::BigUint;

use crate::Error;

trait Count: Clone + Ord {
    fn zero() -> Self;
    fn one() -> Self;
    /// Adds `other`; false on overflow.
    fn add(&mut self, other: &Self) -> bool;
}

impl Count for u128 {
    fn zero() -> Self {
        0
    }
    fn one() -> Self {
        1
    }
    fn add(&mut self, other: &Self) -> bool {
        match self.checked_add(*other) {
            Some(v) => {
                *self = v;
                true
            }
            None => false,
        }
    }
}

impl Count for BigUint {
    fn zero() -> Self {
        BigUint::ZERO
    }
    fn one() -> Self {
        BigUint::from(1u8)
    }
    fn add(&mut self, other: &Self) -> bool {
        *self += other;
        true
    }
}

/// The nodes reachable from the roots, in topological order (roots first).
/// A cycle reachable from a root is an error naming a node on it.
fn topo_from_roots(
    succ: &[Vec<u32>],
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
            if let Some(&c) = succ[v as usize].get(*next) {
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

fn walk_sum<C: Count>(
    d: u32,
    mark: u32,
    stamp: &mut [u32],
    stack: &mut Vec<u32>,
    paths: &[C],
    preds: &[Vec<u32>],
    reach: &[bool],
) -> Option<C> {
    let mut pop = C::zero();
    stamp[d as usize] = mark;
    stack.push(d);
    while let Some(y) = stack.pop() {
        if !pop.add(&paths[y as usize]) {
            return None;
        }
        for &p in &preds[y as usize] {
            if reach[p as usize] && stamp[p as usize] != mark {
                stamp[p as usize] = mark;
                stack.push(p);
            }
        }
    }
    Some(pop)
}

fn compute<C: Count + Send + Sync>(
    order: &[u32],
    preds: &[Vec<u32>],
    reach: &[bool],
    roots: &[u32],
) -> Option<Vec<(u32, C)>> {
    use rayon::prelude::*;
    let n = preds.len();
    let mut paths: Vec<C> = vec![C::zero(); n];
    for &r in roots {
        paths[r as usize] = C::one();
    }
    for &v in order {
        if preds[v as usize].is_empty() {
            continue;
        }
        let mut sum = C::zero();
        for &p in &preds[v as usize] {
            if reach[p as usize] && !sum.add(&paths[p as usize]) {
                return None;
            }
        }
        paths[v as usize] = sum;
    }
    // A node with a single (reachable) parent has that parent's ancestors plus itself:
    // its popularity is the parent's plus its own path count. Every other node walks its
    // ancestors; those walks are independent and run in parallel.
    let single: Vec<Option<u32>> = (0..n)
        .map(|v| {
            let mut it = preds[v].iter().filter(|&&p| reach[p as usize]);
            match (it.next(), it.next()) {
                (Some(&p), None) => Some(p),
                _ => None,
            }
        })
        .collect();
    let walkers: Vec<u32> = order
        .iter()
        .copied()
        .filter(|&v| single[v as usize].is_none())
        .collect();
    // Costs are uneven (deep nodes have many ancestors), so the work is spread item by item;
    // each worker keeps one stamp array, and every walk marks with its own index.
    let walked: Vec<Option<(u32, C)>> = walkers
        .par_iter()
        .enumerate()
        .map_init(
            || (vec![u32::MAX; n], Vec::new()),
            |(stamp, stack), (k, &d)| {
                walk_sum(d, k as u32, stamp, stack, &paths, preds, reach).map(|c| (d, c))
            },
        )
        .collect();
    let mut pop: Vec<Option<C>> = vec![None; n];
    for w in walked {
        let (d, c) = w?;
        pop[d as usize] = Some(c);
    }
    for &v in order {
        if let Some(p) = single[v as usize] {
            let mut c = pop[p as usize].clone()?;
            if !c.add(&paths[v as usize]) {
                return None;
            }
            pop[v as usize] = Some(c);
        }
    }
    order
        .iter()
        .map(|&v| pop[v as usize].clone().map(|c| (v, c)))
        .collect()
}

/// Orders nodes by popularity, most popular first, ties by `key` ascending; nodes no root
/// reaches come last, sorted by `key`. `succ` has no self-loops and no duplicates.
pub fn order(
    succ: &[Vec<u32>],
    key: &dyn Fn(u32) -> String,
    name: &dyn Fn(u32) -> String,
) -> Result<Vec<u32>, Error> {
    let n = succ.len();
    let mut preds: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (v, cs) in succ.iter().enumerate() {
        for &c in cs {
            preds[c as usize].push(v as u32);
        }
    }
    let roots: Vec<u32> = (0..n as u32)
        .filter(|&v| preds[v as usize].is_empty())
        .collect();
    let topo = topo_from_roots(succ, &roots, name)?;
    let mut reach = vec![false; n];
    for &v in &topo {
        reach[v as usize] = true;
    }
    let keys: Vec<String> = (0..n as u32).map(key).collect();
    let mut ranked: Vec<u32> = match compute::<u128>(&topo, &preds, &reach, &roots) {
        Some(pops) => sort_ranked(pops, &keys),
        None => match compute::<BigUint>(&topo, &preds, &reach, &roots) {
            Some(pops) => sort_ranked(pops, &keys),
            None => Vec::new(),
        },
    };
    let mut missing: Vec<u32> = (0..n as u32).filter(|&v| !reach[v as usize]).collect();
    missing.sort_by(|&a, &b| keys[a as usize].cmp(&keys[b as usize]));
    ranked.extend(missing);
    Ok(ranked)
}

fn sort_ranked<C: Count>(mut pops: Vec<(u32, C)>, keys: &[String]) -> Vec<u32> {
    pops.sort_by(|(a, pa), (b, pb)| {
        pb.cmp(pa)
            .then_with(|| keys[*a as usize].cmp(&keys[*b as usize]))
    });
    pops.into_iter().map(|(v, _)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_example() -> Result<(), Error> {
        // A B C D E F G = 0..7: A->B, A->G, B->C, B->E, C->D, C->E, D->F, E->F
        let succ = vec![
            vec![1, 6],
            vec![2, 4],
            vec![3, 4],
            vec![5],
            vec![5],
            vec![],
            vec![],
        ];
        let names = ["A", "B", "C", "D", "E", "F", "G"];
        let key = |v: u32| names[v as usize].to_string();
        let got: Vec<&str> = order(&succ, &key, &key)?
            .into_iter()
            .map(|v| names[v as usize])
            .collect();
        assert_eq!(got, ["F", "E", "D", "C", "B", "G", "A"]);
        Ok(())
    }

    #[test]
    fn cycle_is_an_error() {
        let succ = vec![vec![1], vec![2], vec![1]];
        let key = |v: u32| v.to_string();
        assert!(matches!(order(&succ, &key, &key), Err(Error::Cycle(_))));
    }
}
