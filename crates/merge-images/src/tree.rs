//! The merged member tree: what extracting each input with `tar -x` into a folder of its own and
//! copying those folders into one with `cp -R --update=none` would give, as mergeImages does,
//! with the containment rules that make the result safe to extract anywhere.
//!
//! - Within one input ([`Tree::add`]) a later member replaces an earlier one at its path, as
//!   `tar -x` does; a folder replaced by anything else loses its children with it.
//!   A member below a file or a symlink is an error: extracting it would fail or write through
//!   the link.
//! - Across inputs ([`Tree::absorb`]) the first copy of a path stays; folders merge, a file that
//!   two inputs hold is returned as a [`Duplicate`] for the caller to compare, equal symlinks
//!   merge, and anything else is an error.
//! - [`Tree::check_links`] resolves every symlink against the finished tree, through the other
//!   symlinks (at most [`MAX_LINKS`] of them, as Linux's `ELOOP` limit), and refuses any that is
//!   absolute, leaves the root, or loops.
//!
//! So the tree never has a member below a non-folder, and no symlink in it leads outside.
//! Nodes live in one arena; every walk is iterative, so a deep tree cannot exhaust the stack.
//! A removed subtree stays in the arena unreachable: memory grows with the members read, which
//! is the index's size anyway.

use std::collections::BTreeMap;

/// A node's place in the arena.
type Id = usize;

/// The root folder's place.
const ROOT: Id = 0;

/// Most symlinks followed while resolving one target (Linux's `MAXSYMLINKS`).
pub const MAX_LINKS: u32 = 40;

/// Where a file's bytes are in its input's plain tar (the input itself or its spool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Data {
    /// Offset of the first data byte.
    pub offset: u64,
    /// Number of bytes.
    pub size: u64,
}

/// What a member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A folder.
    Dir,
    /// A regular file, its bytes in an input.
    File(Data),
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
    /// A regular file whose bytes are written from memory (the merged JSON members).
    Generated(Vec<u8>),
}

impl Kind {
    /// The kind's name in messages.
    pub fn noun(&self) -> &'static str {
        match self {
            Kind::Dir => "folder",
            Kind::File(_) | Kind::Generated(_) => "file",
            Kind::Symlink(_) => "symlink",
        }
    }
}

/// One member of the tree.
#[derive(Clone, Debug)]
pub struct Node {
    name: Vec<u8>,
    parent: Id,
    children: BTreeMap<Vec<u8>, Id>,
    /// Permission bits.
    pub mode: u32,
    /// The input it came from (its index in the merge's list).
    pub input: usize,
    /// What it is.
    pub kind: Kind,
}

/// A file that a later input holds at a path an earlier input already provided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicate {
    /// The path.
    pub path: Vec<u8>,
    /// The copy that stays: its input and bytes.
    pub first: (usize, Data),
    /// The later input's copy.
    pub second: (usize, Data),
}

/// Why a symlink is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkProblem {
    /// Its target is absolute, or a symlink it resolves through is.
    Absolute,
    /// It leads above the root.
    Escapes,
    /// Resolving it follows more than [`MAX_LINKS`] symlinks (a loop, or a chain too long).
    Loops,
}

impl LinkProblem {
    /// The problem in words.
    pub fn why(self) -> &'static str {
        match self {
            LinkProblem::Absolute => "has an absolute target",
            LinkProblem::Escapes => "leads outside the image",
            LinkProblem::Loops => "goes through too many levels of symlinks",
        }
    }
}

/// What is wrong with the tree a member or an input would make.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// A member below a file or symlink of the same input (or of an earlier one).
    #[error("entry {} is below the {what} {}", show(entry), show(parent))]
    Below {
        /// The member.
        entry: Vec<u8>,
        /// The non-folder above it.
        parent: Vec<u8>,
        /// What that is (`file`, `symlink`).
        what: &'static str,
    },
    /// Two inputs hold different kinds of member under one path.
    #[error(
        "entry {} is a {first_kind} in input {first} and a {second_kind} in input {second}",
        show(entry)
    )]
    Kinds {
        /// The path.
        entry: Vec<u8>,
        /// The input whose copy stays.
        first: usize,
        /// Its kind.
        first_kind: &'static str,
        /// The later input.
        second: usize,
        /// Its kind.
        second_kind: &'static str,
    },
    /// Two inputs hold symlinks with different targets under one path.
    #[error(
        "symlink {} differs between input {first} and input {second}",
        show(entry)
    )]
    Targets {
        /// The path.
        entry: Vec<u8>,
        /// The input whose copy stays.
        first: usize,
        /// The later input.
        second: usize,
    },
    /// A symlink that cannot stay in the image.
    #[error("symlink {} -> {} {}", show(entry), show(target), problem.why())]
    Link {
        /// The symlink.
        entry: Vec<u8>,
        /// Its target.
        target: Vec<u8>,
        /// The input it came from.
        input: usize,
        /// What is wrong.
        problem: LinkProblem,
    },
}

/// A name for messages: UTF-8 where it is, escapes elsewhere, quoted.
pub fn show(name: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(name))
}

/// Splits a member name into its components, dropping empty ones and `.`; `None` for the root
/// itself, an error for an absolute name or a `..` component.
pub fn components(name: &[u8]) -> Result<Option<Vec<Vec<u8>>>, &'static str> {
    if name.first() == Some(&b'/') {
        return Err("absolute name");
    }
    let mut parts = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("'..' in name"),
            p => parts.push(p.to_vec()),
        }
    }
    Ok(if parts.is_empty() { None } else { Some(parts) })
}

/// The member tree (see the module doc).
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: Vec<Node>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// An empty tree: the root folder alone.
    pub fn new() -> Tree {
        Tree {
            nodes: vec![Node {
                name: Vec::new(),
                parent: ROOT,
                children: BTreeMap::new(),
                mode: 0o755,
                input: 0,
                kind: Kind::Dir,
            }],
        }
    }

    fn child(&self, dir: Id, name: &[u8]) -> Option<Id> {
        self.nodes[dir].children.get(name).copied()
    }

    fn push(&mut self, parent: Id, name: Vec<u8>, kind: Kind, mode: u32, input: usize) -> Id {
        let id = self.nodes.len();
        self.nodes[parent].children.insert(name.clone(), id);
        self.nodes.push(Node {
            name,
            parent,
            children: BTreeMap::new(),
            mode,
            input,
            kind,
        });
        id
    }

    /// The path of a node, components joined by `/`.
    fn path(&self, mut id: Id) -> Vec<u8> {
        let mut names = Vec::new();
        while id != ROOT {
            names.push(self.nodes[id].name.as_slice());
            id = self.nodes[id].parent;
        }
        names.reverse();
        names.join(&b'/')
    }

    /// The node at `parts`, if there is one.
    pub fn get(&self, parts: &[Vec<u8>]) -> Option<&Node> {
        let mut cur = ROOT;
        for name in parts {
            cur = self.child(cur, name)?;
        }
        self.nodes.get(cur)
    }

    /// Adds one member of `input` at `parts` (not empty), as `tar -x` would extract it after
    /// the members already added: missing parents become folders (0755), and a member already
    /// at that path is replaced (a folder replaced by a non-folder loses its children; a folder
    /// listed again only takes the new mode, as GNU tar's `--overwrite-dir` does).
    pub fn add(
        &mut self,
        input: usize,
        parts: &[Vec<u8>],
        kind: Kind,
        mode: u32,
    ) -> Result<(), TreeError> {
        let Some((last, dirs)) = parts.split_last() else {
            return Ok(());
        };
        let mut cur = ROOT;
        for name in dirs {
            cur = match self.child(cur, name) {
                None => self.push(cur, name.clone(), Kind::Dir, 0o755, input),
                Some(c) if self.nodes[c].kind == Kind::Dir => c,
                Some(c) => {
                    return Err(TreeError::Below {
                        entry: parts.join(&b'/'),
                        parent: self.path(c),
                        what: self.nodes[c].kind.noun(),
                    })
                }
            };
        }
        match self.child(cur, last) {
            None => {
                self.push(cur, last.clone(), kind, mode, input);
            }
            Some(c) => {
                let node = &mut self.nodes[c];
                if kind != Kind::Dir {
                    node.children.clear();
                }
                node.kind = kind;
                node.mode = mode;
                node.input = input;
            }
        }
        Ok(())
    }

    /// Removes the member `name` at the top level and returns it (with its subtree gone).
    pub fn take_top(&mut self, name: &[u8]) -> Option<Node> {
        let id = self.nodes[ROOT].children.remove(name)?;
        self.nodes.get(id).cloned()
    }

    /// Merges `other` (an input's own tree) into this one as `cp -R --update=none` would: the
    /// members already here stay. Returns the files both hold, for the caller to compare.
    pub fn absorb(&mut self, mut other: Tree) -> Result<Vec<Duplicate>, TreeError> {
        if self.nodes[ROOT].children.is_empty() {
            *self = other;
            return Ok(Vec::new());
        }
        let mut dups = Vec::new();
        let mut stack = vec![(ROOT, ROOT)];
        while let Some((mine, theirs)) = stack.pop() {
            let children = std::mem::take(&mut other.nodes[theirs].children);
            for (name, oc) in children {
                let Some(c) = self.child(mine, &name) else {
                    self.graft(mine, &mut other, oc);
                    continue;
                };
                let (a, b) = (&self.nodes[c], &other.nodes[oc]);
                match (&a.kind, &b.kind) {
                    (Kind::Dir, Kind::Dir) => stack.push((c, oc)),
                    (Kind::File(x), Kind::File(y)) => dups.push(Duplicate {
                        path: self.path(c),
                        first: (a.input, *x),
                        second: (b.input, *y),
                    }),
                    (Kind::Symlink(x), Kind::Symlink(y)) if x == y => {}
                    (Kind::Symlink(_), Kind::Symlink(_)) => {
                        return Err(TreeError::Targets {
                            entry: self.path(c),
                            first: a.input,
                            second: b.input,
                        })
                    }
                    (x, y) => {
                        return Err(TreeError::Kinds {
                            entry: self.path(c),
                            first: a.input,
                            first_kind: x.noun(),
                            second: b.input,
                            second_kind: y.noun(),
                        })
                    }
                }
            }
        }
        Ok(dups)
    }

    /// Moves the subtree at `theirs` in `other` under the folder `parent` of this tree.
    fn graft(&mut self, parent: Id, other: &mut Tree, theirs: Id) {
        let mut stack = vec![(parent, theirs)];
        while let Some((p, o)) = stack.pop() {
            let node = &mut other.nodes[o];
            let name = std::mem::take(&mut node.name);
            let kind = std::mem::replace(&mut node.kind, Kind::Dir);
            let children = std::mem::take(&mut node.children);
            let id = self.push(p, name, kind, node.mode, node.input);
            stack.extend(children.into_values().map(|c| (id, c)));
        }
    }

    /// Calls `f` with every member's path and node in output order: depth first, the members
    /// of a folder sorted by name bytes, each folder before its contents (GNU tar's
    /// `--sort=name`). The root itself is not visited.
    pub fn walk<E>(&self, mut f: impl FnMut(&[u8], &Node) -> Result<(), E>) -> Result<(), E> {
        self.walk_ids(|path, id| f(path, &self.nodes[id]))
    }

    fn walk_ids<E>(&self, mut f: impl FnMut(&[u8], Id) -> Result<(), E>) -> Result<(), E> {
        let mut path = Vec::new();
        // (node, length of its parent's path); children pushed in reverse to pop in order.
        let mut stack: Vec<(Id, usize)> = self.nodes[ROOT]
            .children
            .values()
            .rev()
            .map(|&c| (c, 0))
            .collect();
        while let Some((id, base)) = stack.pop() {
            path.truncate(base);
            if base > 0 {
                path.push(b'/');
            }
            path.extend_from_slice(&self.nodes[id].name);
            f(&path, id)?;
            let len = path.len();
            stack.extend(self.nodes[id].children.values().rev().map(|&c| (c, len)));
        }
        Ok(())
    }

    /// Refuses the first symlink (in output order) whose target is absolute, leads outside the
    /// root (as written, or resolved through the tree's folders and symlinks), or loops.
    pub fn check_links(&self) -> Result<(), TreeError> {
        let mut memo = vec![Memo::Todo; self.nodes.len()];
        self.walk_ids(|path, id| {
            let node = &self.nodes[id];
            let Kind::Symlink(target) = &node.kind else {
                return Ok(());
            };
            let problem = if target.first() == Some(&b'/') {
                Some(LinkProblem::Absolute)
            } else if lexically_escapes(path, target) {
                Some(LinkProblem::Escapes)
            } else {
                self.resolve(id, &mut memo, 0).err()
            };
            match problem {
                None => Ok(()),
                Some(problem) => Err(TreeError::Link {
                    entry: path.to_vec(),
                    target: target.clone(),
                    input: node.input,
                    problem,
                }),
            }
        })
    }

    /// Where the symlink `link` leads, and how many symlinks that followed (itself included).
    fn resolve(&self, link: Id, memo: &mut [Memo], depth: u32) -> Resolved {
        match &memo[link] {
            Memo::Done(r) => return *r,
            // Met again while it is being resolved: a loop.
            Memo::Busy => return Err(LinkProblem::Loops),
            Memo::Todo => {}
        }
        if depth >= MAX_LINKS {
            return Err(LinkProblem::Loops);
        }
        memo[link] = Memo::Busy;
        let r = self.follow(link, memo, depth);
        memo[link] = Memo::Done(r);
        r
    }

    /// Walks the target of `link` from the folder it is in, component by component.
    fn follow(&self, link: Id, memo: &mut [Memo], depth: u32) -> Resolved {
        let node = &self.nodes[link];
        let Kind::Symlink(target) = &node.kind else {
            return Ok((
                Loc {
                    node: link,
                    below: 0,
                },
                0,
            ));
        };
        if target.first() == Some(&b'/') {
            return Err(LinkProblem::Absolute);
        }
        let mut at = Loc {
            node: node.parent,
            below: 0,
        };
        let mut links = 1u32;
        for part in target.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." if at.below > 0 => at.below -= 1,
                b".." if at.node == ROOT => return Err(LinkProblem::Escapes),
                b".." => at.node = self.nodes[at.node].parent,
                _ if at.below > 0 => at.below += 1,
                name => match self.child(at.node, name) {
                    // Not in the tree (or below a file): nothing can be there, so the rest of
                    // the target is taken as written.
                    None => at.below = 1,
                    Some(c) if matches!(self.nodes[c].kind, Kind::Symlink(_)) => {
                        let (to, n) = self.resolve(c, memo, depth + 1)?;
                        links = links.saturating_add(n);
                        at = to;
                    }
                    Some(c) => at = Loc { node: c, below: 0 },
                },
            }
            if links > MAX_LINKS {
                return Err(LinkProblem::Loops);
            }
        }
        Ok((at, links))
    }
}

/// A place a target leads to: a node, or `below` levels of names under it that are not in the
/// tree.
#[derive(Clone, Copy, Debug)]
struct Loc {
    node: Id,
    below: u64,
}

type Resolved = Result<(Loc, u32), LinkProblem>;

#[derive(Clone, Copy, Debug)]
enum Memo {
    Todo,
    Busy,
    Done(Resolved),
}

/// Whether a symlink at `path` pointing to the relative `target` leaves the root as written,
/// `..` taken literally (what a tool that does not look at the tree would conclude).
fn lexically_escapes(path: &[u8], target: &[u8]) -> bool {
    // The folder the link is in: as deep as its path has components, minus the link itself.
    let mut depth = path.split(|&b| b == b'/').count() as i64 - 1;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member for the tests: `d` folder, `f:N` file at offset N, `l:TARGET` symlink.
    fn kind(spec: &str) -> Kind {
        match spec.split_once(':') {
            Some(("f", n)) => Kind::File(Data {
                offset: n.parse().unwrap_or(0),
                size: 1,
            }),
            Some(("l", t)) => Kind::Symlink(t.as_bytes().to_vec()),
            _ => Kind::Dir,
        }
    }

    fn parts(name: &str) -> Vec<Vec<u8>> {
        components(name.as_bytes())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// The tree one input with these members makes, as `tar -x` would extract them.
    fn input(idx: usize, members: &[(&str, &str)]) -> Result<Tree, TreeError> {
        let mut t = Tree::new();
        for (name, spec) in members {
            t.add(idx, &parts(name), kind(spec), 0o644)?;
        }
        Ok(t)
    }

    /// The tree as `tar -tv` would list it: `dir/`, `file@offset`, `link -> target`.
    fn listing(t: &Tree) -> Vec<String> {
        let mut out = Vec::new();
        let _ = t.walk(|path, node| -> Result<(), ()> {
            let p = String::from_utf8_lossy(path);
            out.push(match &node.kind {
                Kind::Dir => format!("{p}/"),
                Kind::File(d) => format!("{p}@{}", d.offset),
                Kind::Symlink(t) => format!("{p} -> {}", String::from_utf8_lossy(t)),
                Kind::Generated(_) => format!("{p} (generated)"),
            });
            Ok(())
        });
        out
    }

    fn problem(t: &Tree) -> Option<(String, LinkProblem)> {
        match t.check_links() {
            Err(TreeError::Link { entry, problem, .. }) => {
                Some((String::from_utf8_lossy(&entry).into_owned(), problem))
            }
            _ => None,
        }
    }

    #[test]
    fn members_are_walked_in_gnu_tar_name_order() -> Result<(), TreeError> {
        let t = input(
            0,
            &[
                ("a0", "f:1"),
                ("a.b", "f:2"),
                ("a/x", "f:3"),
                ("a-b", "d"),
                ("b", "l:a"),
            ],
        )?;
        assert_eq!(
            listing(&t),
            ["a/", "a/x@3", "a-b/", "a.b@2", "a0@1", "b -> a"]
        );
        Ok(())
    }

    #[test]
    fn a_replaced_directory_loses_its_children() -> Result<(), TreeError> {
        let t = input(0, &[("a/x", "f:1"), ("a/y/z", "f:2"), ("a", "f:3")])?;
        assert_eq!(listing(&t), ["a@3"]);
        let t = input(0, &[("z/pwned", "f:1"), ("z", "l:a")])?;
        assert_eq!(listing(&t), ["z -> a"]);
        // A folder listed again keeps its children and takes the new mode, as GNU tar does.
        let mut t = input(0, &[("a/x", "f:1")])?;
        t.add(0, &parts("a"), Kind::Dir, 0o700)?;
        assert_eq!(listing(&t), ["a/", "a/x@1"]);
        assert_eq!(t.get(&parts("a")).map(|n| n.mode), Some(0o700));
        // A later file replaces an earlier one.
        let t = input(
            0,
            &[
                ("f", "f:1"),
                ("f", "f:2"),
                ("l", "l:x"),
                ("l", "d"),
                ("l/y", "f:3"),
            ],
        )?;
        assert_eq!(listing(&t), ["f@2", "l/", "l/y@3"]);
        Ok(())
    }

    #[test]
    fn a_member_below_a_symlink_or_a_file_is_an_error() {
        let e = input(0, &[("dir", "d"), ("lnk", "l:dir"), ("lnk/x", "f:1")]).err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some(r#"entry "lnk/x" is below the symlink "lnk""#)
        );
        let e = input(0, &[("a/f", "f:1"), ("a/f/g/h", "f:2")]).err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some(r#"entry "a/f/g/h" is below the file "a/f""#)
        );
    }

    #[test]
    fn the_first_input_wins_and_duplicates_are_returned() -> Result<(), TreeError> {
        let mut t = input(0, &[("a/x", "f:1"), ("l", "l:a"), ("k", "d")])?;
        let dups = t.absorb(input(
            1,
            &[("a/x", "f:7"), ("a/y", "f:8"), ("l", "l:a"), ("k/z", "f:9")],
        )?)?;
        assert_eq!(
            listing(&t),
            ["a/", "a/x@1", "a/y@8", "k/", "k/z@9", "l -> a"]
        );
        let one = Data { offset: 1, size: 1 };
        let seven = Data { offset: 7, size: 1 };
        assert_eq!(
            dups,
            [Duplicate {
                path: b"a/x".to_vec(),
                first: (0, one),
                second: (1, seven),
            }]
        );
        assert_eq!(t.get(&parts("a/y")).map(|n| n.input), Some(1));
        Ok(())
    }

    #[test]
    fn only_the_surviving_copy_of_a_path_is_compared() -> Result<(), TreeError> {
        // The later input lists "x" as a folder first, then replaces it with a file (tar -r):
        // the file is what it extracts to, so the kinds agree.
        let mut t = input(0, &[("x", "f:1")])?;
        let dups = t.absorb(input(1, &[("x/y", "f:5"), ("x", "f:6"), ("x", "f:7")])?)?;
        assert_eq!(dups.len(), 1);
        assert_eq!(
            dups.first().map(|d| d.second),
            Some((1, Data { offset: 7, size: 1 }))
        );
        Ok(())
    }

    #[test]
    fn inputs_that_disagree_on_a_kind_or_target_are_an_error() -> Result<(), TreeError> {
        let mut t = input(0, &[("lnk", "l:dir")])?;
        let e = t.absorb(input(1, &[("lnk/x", "f:1")])?).err();
        assert_eq!(
            e,
            Some(TreeError::Kinds {
                entry: b"lnk".to_vec(),
                first: 0,
                first_kind: "symlink",
                second: 1,
                second_kind: "folder",
            })
        );
        let mut t = input(0, &[("lnk", "l:a")])?;
        let e = t.absorb(input(1, &[("lnk", "l:b")])?).err();
        assert!(matches!(e, Some(TreeError::Targets { .. })), "{e:?}");
        Ok(())
    }

    #[test]
    fn a_symlink_that_escapes_through_another_symlink_is_refused() -> Result<(), TreeError> {
        // The D4 shape: each link looks inside when read alone.
        let t = input(
            0,
            &[
                ("z/pwned", "f:1"),
                ("a", "d"),
                ("a/lnk", "l:.."),
                ("z", "l:a/lnk/.."),
            ],
        )?;
        assert_eq!(listing(&t), ["a/", "a/lnk -> ..", "z -> a/lnk/.."]);
        assert_eq!(problem(&t), Some(("z".into(), LinkProblem::Escapes)));
        // A chain through several links, each one level up.
        let t = input(
            0,
            &[
                ("a/b/c/d", "d"),
                ("a/b/c/up", "l:.."),
                ("a/b/up", "l:c/up/.."),
                ("a/x", "l:b/up/../.."),
            ],
        )?;
        assert_eq!(problem(&t), Some(("a/x".into(), LinkProblem::Escapes)));
        // The same chain one level less deep stays inside.
        let t = input(
            0,
            &[
                ("a/b/c/d", "d"),
                ("a/b/c/up", "l:.."),
                ("a/b/up", "l:c/up/.."),
                ("a/x", "l:b/up/.."),
            ],
        )?;
        assert_eq!(problem(&t), None);
        // A link to a folder elsewhere, then up from there.
        let t = input(
            0,
            &[
                ("p/q/r", "d"),
                ("deep", "l:p/q/r"),
                ("s/t", "l:../deep/../../../.."),
            ],
        )?;
        assert_eq!(problem(&t), Some(("s/t".into(), LinkProblem::Escapes)));
        Ok(())
    }

    #[test]
    fn escapes_at_any_depth_and_absolute_targets_are_refused() -> Result<(), TreeError> {
        for (at, target, bad) in [
            ("l", "..", true),
            ("l", ".", false),
            ("a/l", "..", false),
            ("a/l", "../..", true),
            ("a/b/l", "../../x/../y", false),
            ("a/b/l", "x/../../../..", true),
            ("a/b/l", "../../../etc/passwd", true),
            ("l", "missing/../..", true),
            ("l", "missing/..", false),
        ] {
            let t = input(0, &[(at, &format!("l:{target}"))])?;
            let want = bad.then(|| (at.to_string(), LinkProblem::Escapes));
            assert_eq!(problem(&t), want, "{at} -> {target}");
        }
        let t = input(0, &[("x", "l:/etc")])?;
        assert_eq!(problem(&t), Some(("x".into(), LinkProblem::Absolute)));
        let t = input(0, &[("abs", "l:/etc"), ("x", "l:abs/passwd")])?;
        assert_eq!(problem(&t), Some(("abs".into(), LinkProblem::Absolute)));
        let t = input(0, &[("y/abs", "l:/etc"), ("x", "l:y/abs/passwd")])?;
        assert_eq!(problem(&t), Some(("x".into(), LinkProblem::Absolute)));
        Ok(())
    }

    #[test]
    fn symlink_loops_and_long_chains_are_refused() -> Result<(), TreeError> {
        let t = input(0, &[("a", "l:b"), ("b", "l:a")])?;
        assert_eq!(problem(&t), Some(("a".into(), LinkProblem::Loops)));
        let t = input(0, &[("a", "l:a/x")])?;
        assert_eq!(problem(&t), Some(("a".into(), LinkProblem::Loops)));
        // A chain of MAX_LINKS links resolves; one more is too many.
        let chain = |n: u32| -> Result<Tree, TreeError> {
            let mut t = Tree::new();
            for i in 1..n {
                t.add(
                    0,
                    &parts(&format!("l{i}")),
                    kind(&format!("l:l{}", i + 1)),
                    0,
                )?;
            }
            t.add(0, &parts(&format!("l{n}")), kind("l:target"), 0)?;
            Ok(t)
        };
        assert_eq!(problem(&chain(MAX_LINKS)?), None);
        assert_eq!(
            problem(&chain(MAX_LINKS + 1)?),
            Some(("l1".into(), LinkProblem::Loops))
        );
        Ok(())
    }

    #[test]
    fn symlinks_across_inputs_are_resolved_in_the_merged_tree() -> Result<(), TreeError> {
        // Alone, each input is fine; merged, "z" leads out through the other input's link.
        let mut t = input(0, &[("a/lnk", "l:..")])?;
        assert_eq!(problem(&t), None);
        t.absorb(input(1, &[("z", "l:a/lnk/..")])?)?;
        assert_eq!(problem(&t), Some(("z".into(), LinkProblem::Escapes)));
        Ok(())
    }

    #[test]
    fn a_deep_tree_is_walked_without_recursion() -> Result<(), TreeError> {
        let deep = vec![b"d".to_vec(); 200_000];
        let mut t = Tree::new();
        t.add(0, &deep, Kind::Symlink(b"..".to_vec()), 0)?;
        let mut n = 0;
        t.walk(|_, _| -> Result<(), TreeError> {
            n += 1;
            Ok(())
        })?;
        assert_eq!(n, 200_000);
        assert_eq!(t.check_links(), Ok(()));
        let mut merged = input(0, &[("e", "d")])?;
        merged.absorb(t)?;
        assert_eq!(merged.get(&deep).map(|n| n.kind.noun()), Some("symlink"));
        Ok(())
    }

    #[test]
    fn member_names_are_cleaned_and_unsafe_ones_refused() {
        assert_eq!(
            components(b"./a//b/./c/"),
            Ok(Some(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]))
        );
        assert_eq!(components(b"./"), Ok(None));
        assert_eq!(components(b"/etc/passwd"), Err("absolute name"));
        assert_eq!(components(b"a/../b"), Err("'..' in name"));
    }
}
