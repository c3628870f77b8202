//! Fuzzes merge-images' member tree: any sequence of members (name, kind, target) over one or
//! two inputs is merged as merge-images merges them, and when the merge is accepted the tree
//! must be safe to extract:
//! - every member's parent is a folder that comes before it (so nothing is below a file or a
//!   symlink), and the members come in strictly increasing name order;
//! - no symlink is absolute, and none resolves outside the root, through the other symlinks,
//!   by a resolver written here independently of the tree's own;
//! - each input's own tree is what a plain model of `tar -x` gives: a later member replaces an
//!   earlier one and a replaced folder loses its children.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use merge_images::tree::{Data, Kind, Tree};

/// Names come from a small alphabet so that paths collide often.
const NAMES: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];
/// Targets also climb and stay.
const STEPS: [&[u8]; 6] = [b"a", b"b", b"c", b"..", b".", b"d"];

#[derive(Clone, Debug)]
enum Spec {
    Dir,
    File,
    Symlink(Vec<u8>),
    HardLink(Vec<Vec<u8>>),
}

struct Member {
    input: usize,
    parts: Vec<Vec<u8>>,
    spec: Spec,
}

/// Reads members from the fuzzer's bytes, four to a dozen bytes each.
fn members(data: &[u8]) -> Vec<Member> {
    let mut it = data.iter().copied();
    let mut out = Vec::new();
    while let (Some(flags), Some(len)) = (it.next(), it.next()) {
        let parts: Vec<Vec<u8>> = (0..=len % 4)
            .map(|_| NAMES[usize::from(it.next().unwrap_or(0)) % NAMES.len()].to_vec())
            .collect();
        let spec = match (flags >> 1) % 4 {
            0 => Spec::Dir,
            1 => Spec::File,
            2 => {
                let n = it.next().unwrap_or(0);
                let mut target = if n & 0x80 != 0 { b"/".to_vec() } else { Vec::new() };
                let steps: Vec<&[u8]> = (0..n % 7)
                    .map(|_| STEPS[usize::from(it.next().unwrap_or(0)) % STEPS.len()])
                    .collect();
                target.extend(steps.join(&b'/'));
                Spec::Symlink(target)
            }
            _ => {
                let n = it.next().unwrap_or(0);
                let target = (0..=n % 4)
                    .map(|_| NAMES[usize::from(it.next().unwrap_or(0)) % NAMES.len()].to_vec())
                    .collect();
                Spec::HardLink(target)
            }
        };
        out.push(Member {
            input: usize::from(flags & 1),
            parts,
            spec,
        });
    }
    out
}

/// What `tar -x` of one input's members gives, as a map of paths; `None` when a member would
/// go below a non-folder (or a hard link has no file to link to).
fn model(members: &[&Member]) -> Option<BTreeMap<Vec<Vec<u8>>, Spec>> {
    let mut map: BTreeMap<Vec<Vec<u8>>, Spec> = BTreeMap::new();
    for m in members {
        for depth in 1..m.parts.len() {
            let prefix = m.parts[..depth].to_vec();
            match map.get(&prefix) {
                None => {
                    map.insert(prefix, Spec::Dir);
                }
                Some(Spec::Dir) => {}
                Some(_) => return None,
            }
        }
        let spec = match &m.spec {
            Spec::HardLink(t) => match map.get(t) {
                Some(Spec::File) => Spec::File,
                _ => return None,
            },
            s => s.clone(),
        };
        let was_dir = matches!(map.get(&m.parts), Some(Spec::Dir));
        if was_dir && !matches!(spec, Spec::Dir) {
            map.retain(|k, _| !(k.len() > m.parts.len() && k.starts_with(&m.parts)));
        }
        map.insert(m.parts.clone(), spec);
    }
    Some(map)
}

/// The tree's members as (path components, kind name or symlink target).
fn listing(tree: &Tree) -> Vec<(Vec<Vec<u8>>, Kind)> {
    let mut out = Vec::new();
    let _ = tree.walk(|path, node| -> Result<(), ()> {
        let parts = path.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
        out.push((parts, node.kind.clone()));
        Ok(())
    });
    out
}

fn same_shape(spec: &Spec, kind: &Kind) -> bool {
    match (spec, kind) {
        (Spec::Dir, Kind::Dir) => true,
        (Spec::File | Spec::HardLink(_), Kind::File(_)) => true,
        (Spec::Symlink(a), Kind::Symlink(b)) => a == b,
        _ => false,
    }
}

/// One input's tree as merge-images' index builds it; `None` when it refuses the input.
fn input_tree(idx: usize, members: &[&Member]) -> Option<Tree> {
    let mut tree = Tree::new();
    for (n, m) in members.iter().enumerate() {
        let kind = match &m.spec {
            Spec::Dir => Kind::Dir,
            Spec::File => Kind::File(Data { offset: n as u64, size: 1 }),
            Spec::Symlink(t) => Kind::Symlink(t.clone()),
            Spec::HardLink(t) => match tree.get(t).map(|n| &n.kind) {
                Some(Kind::File(d)) => Kind::File(*d),
                _ => return None,
            },
        };
        tree.add(idx, &m.parts, kind, 0o644).ok()?;
    }
    Some(tree)
}

/// Follows `path` through the listing's symlinks, the classic way: a symlink met is replaced by
/// its target's components. Panics when the path leaves the root or is absolute.
fn assert_inside(map: &BTreeMap<Vec<Vec<u8>>, Kind>, link: &[Vec<u8>], target: &[u8]) {
    assert!(!target.starts_with(b"/"), "absolute symlink {link:?} accepted");
    let mut at: Vec<Vec<u8>> = link[..link.len() - 1].to_vec();
    let mut todo: Vec<Vec<u8>> = target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec).collect();
    let mut expansions = 0;
    while let Some(part) = todo.pop() {
        match part.as_slice() {
            b"" | b"." => {}
            b".." => assert!(at.pop().is_some(), "symlink {link:?} -> {target:?} escapes"),
            _ => {
                at.push(part);
                if let Some(Kind::Symlink(t)) = map.get(&at) {
                    expansions += 1;
                    if expansions > 1000 {
                        return;
                    }
                    assert!(!t.starts_with(b"/"), "{link:?} resolves through an absolute link");
                    at.pop();
                    todo.extend(t.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
                }
            }
        }
    }
}

fn check_merged(tree: &Tree) {
    let list = listing(tree);
    let map: BTreeMap<Vec<Vec<u8>>, Kind> = list.iter().cloned().collect();
    assert_eq!(map.len(), list.len(), "a path listed twice");
    for pair in list.windows(2) {
        assert!(pair[0].0 < pair[1].0, "members out of order");
    }
    for (parts, kind) in &list {
        for depth in 1..parts.len() {
            assert_eq!(map.get(&parts[..depth]), Some(&Kind::Dir), "{parts:?} below a non-folder");
        }
        if let Kind::Symlink(t) = kind {
            assert_inside(&map, parts, t);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let all = members(data);
    let mut merged = Tree::new();
    for idx in 0..2 {
        let mine: Vec<&Member> = all.iter().filter(|m| m.input == idx).collect();
        let tree = input_tree(idx, &mine);
        let want = model(&mine);
        assert_eq!(tree.is_some(), want.is_some(), "tree and model disagree on refusing");
        let (Some(tree), Some(want)) = (tree, want) else { return };
        let got = listing(&tree);
        assert_eq!(got.len(), want.len(), "tree and model differ: {got:?} {want:?}");
        for ((parts, kind), (wp, spec)) in got.iter().zip(&want) {
            assert!(parts == wp && same_shape(spec, kind), "tree and model differ at {parts:?}");
        }
        if merged.absorb(tree).is_err() {
            return;
        }
    }
    if merged.check_links().is_ok() {
        check_merged(&merged);
    }
});
