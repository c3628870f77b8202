//! The three entry points on odd and large inputs; every expected output was printed by the
//! original Python program on the same input (auto-layer.py, flatten-references-graph with
//! igraph 0.11.8, closure-graph.py).

use super::*;

/// A node of `/nix/store/<name>` with `narSize` written as `size` (any JSON).
fn node(name: &str, refs: &[&str], size: &str) -> String {
    let refs: Vec<String> = refs.iter().map(|r| format!("\"/nix/store/{r}\"")).collect();
    format!(
        r#"{{"path": "/nix/store/{name}", "references": [{}], "narSize": {size}}}"#,
        refs.join(", ")
    )
}

fn list(nodes: &[String]) -> String {
    format!("[{}]", nodes.join(", "))
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

fn layers(nodes: &[String], limit: i64) -> Result<String, Error> {
    auto_layer(list(nodes).as_bytes(), b"", limit).map(text)
}

/// The pipeline `[["split_every", 1]]`: every node in its own layer, in the order of the
/// sort by narSize.
fn by_size(nodes: &[String]) -> Result<String, Error> {
    let input = format!(
        r#"{{"graph": {}, "pipeline": [["split_every", 1]]}}"#,
        list(nodes)
    );
    pipeline(input.as_bytes()).map(text)
}

/// `json.dumps(indent=2)` of one-path layers.
fn one_per_layer(names: &[&str]) -> String {
    let items: Vec<String> = names
        .iter()
        .map(|n| format!("  [\n    \"/nix/store/{n}\"\n  ]"))
        .collect();
    format!("[\n{}\n]\n", items.join(",\n"))
}

#[test]
fn a_negative_nar_size_keeps_its_sign() -> Result<(), Error> {
    let g = [node("aaa-a", &[], "-3"), node("bbb-b", &["aaa-a"], "-5")];
    assert_eq!(
        layers(&g, 99)?,
        "[[\"/nix/store/bbb-b\"], [\"/nix/store/aaa-a\"]]\n"
    );
    assert_eq!(by_size(&g)?, one_per_layer(&["bbb-b", "aaa-a"]));
    Ok(())
}

#[test]
fn a_float_size_compares_exactly_with_integers() -> Result<(), Error> {
    let g = [
        node("aaa-a", &[], "1.5"),
        node("bbb-b", &[], "1"),
        node("ccc-c", &["aaa-a"], "2"),
    ];
    let want = "[[\"/nix/store/bbb-b\"], [\"/nix/store/aaa-a\"], [\"/nix/store/ccc-c\"]]\n";
    assert_eq!(layers(&g, 99)?, want);
    assert_eq!(by_size(&g)?, one_per_layer(&["bbb-b", "aaa-a", "ccc-c"]));
    Ok(())
}

#[test]
fn sizes_beyond_64_bits_keep_their_order() -> Result<(), Error> {
    let g = [
        node("aaa-a", &[], &format!("1{}", "0".repeat(45))),
        node("bbb-b", &[], &format!("1{}", "0".repeat(44))),
        node("ccc-c", &["aaa-a"], "5"),
    ];
    let want = "[[\"/nix/store/bbb-b\"], [\"/nix/store/aaa-a\"], [\"/nix/store/ccc-c\"]]\n";
    assert_eq!(layers(&g, 99)?, want);
    assert_eq!(by_size(&g)?, one_per_layer(&["ccc-c", "bbb-b", "aaa-a"]));
    Ok(())
}

#[test]
fn true_and_false_sizes_are_1_and_0() -> Result<(), Error> {
    let g = [
        node("aaa-a", &[], "true"),
        node("bbb-b", &[], "false"),
        node("ccc-c", &[], "0"),
        node("ddd-d", &["aaa-a"], "1"),
    ];
    assert_eq!(
        by_size(&g)?,
        one_per_layer(&["bbb-b", "ccc-c", "aaa-a", "ddd-d"])
    );
    Ok(())
}

#[test]
fn string_sizes_sort_in_the_pipeline_and_fail_in_auto_layer() -> Result<(), Error> {
    let g = [
        node("aaa-a", &[], "\"b\""),
        node("bbb-b", &[], "\"a\""),
        node("ccc-c", &["aaa-a"], "\"c\""),
    ];
    assert_eq!(by_size(&g)?, one_per_layer(&["bbb-b", "aaa-a", "ccc-c"]));
    assert!(matches!(layers(&g, 99), Err(Error::Input(_))));
    let mixed = [node("aaa-a", &[], "\"b\""), node("bbb-b", &[], "1")];
    assert!(matches!(by_size(&mixed), Err(Error::Input(_))));
    Ok(())
}

#[test]
fn null_list_and_object_sizes_are_refused() {
    for size in ["null", "{}", "[2]"] {
        let g = [node("aaa-a", &[], size), node("bbb-b", &[], "1")];
        assert!(matches!(layers(&g, 99), Err(Error::Input(_))), "{size}");
        assert!(matches!(by_size(&g), Err(Error::Input(_))), "{size}");
    }
    let missing = r#"[{"path": "/nix/store/aaa-a", "references": []}]"#;
    assert!(matches!(
        auto_layer(missing.as_bytes(), b"", 99),
        Err(Error::Input(_))
    ));
}

#[test]
fn closure_graph_never_reads_nar_size() -> Result<(), Error> {
    for size in ["\"b\"", "{}", "[1]", "null", "-1.5", "true"] {
        let g = [node("aaa-a", &[], size), node("bbb-b", &["aaa-a"], size)];
        let input = format!(r#"{{"graph": {}}}"#, list(&g));
        assert_eq!(
            closure_graph(input.as_bytes(), "graph")?,
            ["/nix/store/aaa-a", "/nix/store/bbb-b"],
            "{size}"
        );
    }
    let no_size = r#"{"graph": [{"path": "/nix/store/aaa-a", "references": []}]}"#;
    assert_eq!(
        closure_graph(no_size.as_bytes(), "graph")?,
        ["/nix/store/aaa-a"]
    );
    Ok(())
}

#[test]
fn a_repeated_path_is_refused_when_the_sizes_do_not_add_up() -> Result<(), Error> {
    // auto-layer.py keeps the last node of a path, and asserts that the layers add up to
    // the sum over the whole list: they do when the dropped nodes add up to 0.
    let adds_up = [
        node("aaa-a", &[], "2"),
        node("aaa-a", &[], "-2"),
        node("bbb-b", &[], "1"),
        node("aaa-a", &[], "3"),
    ];
    assert_eq!(
        layers(&adds_up, 99)?,
        "[[\"/nix/store/bbb-b\"], [\"/nix/store/aaa-a\"]]\n"
    );
    let off = [
        node("aaa-a", &[], "5"),
        node("bbb-b", &["aaa-a"], "5"),
        node("aaa-a", &[], "3"),
    ];
    assert!(matches!(layers(&off, 99), Err(Error::Input(_))));
    // igraph refuses repeated vertex names.
    assert!(matches!(by_size(&adds_up), Err(Error::Input(_))));
    Ok(())
}

#[test]
fn float_rounding_that_breaks_auto_layers_check_is_an_error() {
    // Over the list: 2^53 + 1 = 2^53 + 1, + 0.5 rounds to 2^53. Over the layers, smallest
    // first: 0.5 + 1 = 1.5, + 2^53 rounds to 2^53 + 2. Python's assertion fails.
    let g = [
        node("aaa-a", &[], "9007199254740992"),
        node("bbb-b", &[], "1"),
        node("ccc-c", &[], "0.5"),
    ];
    assert!(matches!(layers(&g, 99), Err(Error::Input(_))));
    let infinities = [node("aaa-a", &[], "1e400"), node("bbb-b", &[], "-1e400")];
    assert!(matches!(layers(&infinities, 99), Err(Error::Input(_))));
}

/// A root with 100,000 leaves, each referenced twice.
fn star() -> Vec<String> {
    let leaves: Vec<String> = (0..100_000).map(|i| format!("{i:06}-leaf")).collect();
    let twice: Vec<&str> = leaves.iter().chain(&leaves).map(String::as_str).collect();
    let mut nodes = vec![node("zzzzzz-root", &twice, "0")];
    nodes.extend(leaves.iter().map(|l| node(l, &[], "1")));
    nodes
}

#[test]
fn a_node_with_100k_references_is_read_in_linear_time() -> Result<(), Error> {
    let g = star();
    let input = format!(r#"{{"graph": {}}}"#, list(&g));
    let order = closure_graph(input.as_bytes(), "graph")?;
    assert_eq!(order.len(), 100_001);
    assert_eq!(order[0], "/nix/store/000000-leaf");
    assert_eq!(order[99_999], "/nix/store/099999-leaf");
    assert_eq!(order[100_000], "/nix/store/zzzzzz-root");

    let out = layers(&g, 2)?;
    assert!(
        out.starts_with("[[\"/nix/store/099999-leaf\"], [\"/nix/store/000000-leaf\", "),
        "{}",
        &out[..100]
    );
    assert!(out.ends_with(", \"/nix/store/099998-leaf\", \"/nix/store/zzzzzz-root\"]]\n"));

    let input = format!(
        r#"{{"graph": {}, "pipeline": [["popularity_contest"], ["limit_layers", 2]]}}"#,
        list(&g)
    );
    let out = text(pipeline(input.as_bytes())?);
    assert!(out.starts_with(
        "[\n  [\n    \"/nix/store/000000-leaf\"\n  ],\n  [\n    \"/nix/store/000001-leaf\",\n"
    ));
    assert!(
        out.ends_with("    \"/nix/store/099999-leaf\",\n    \"/nix/store/zzzzzz-root\"\n  ]\n]\n")
    );
    Ok(())
}

/// 20,000 nodes in a row, all of size 1; `bad(i)` gives the references of node `i`.
fn row_of(bad: impl Fn(usize) -> Vec<&'static str>) -> Vec<String> {
    (0..20_000)
        .map(|i| node(&format!("{i:05}-n"), &bad(i), "1"))
        .collect()
}

/// Two bad nodes far apart (the lookups run on all cores): the error names the first one in
/// the order the work is defined in, whatever the thread count.
#[test]
fn of_two_missing_references_the_first_is_reported() {
    let g = row_of(|i| match i {
        300 => vec!["zzz-first"],
        19_000 => vec!["zzz-second"],
        _ => vec![],
    });
    let first = |r: Result<_, Error>| match r {
        Err(Error::MissingRef { node, reference }) => (node, reference),
        _ => (String::new(), String::new()),
    };
    let expected = (
        "/nix/store/00300-n".to_string(),
        "/nix/store/zzz-first".to_string(),
    );
    let input = format!(r#"{{"graph": {}}}"#, list(&g));
    assert_eq!(
        first(closure_graph(input.as_bytes(), "graph").map(|_| ())),
        expected
    );
    assert_eq!(first(by_size(&g).map(|_| ())), expected);
}

#[test]
fn of_two_paths_without_a_dash_the_first_is_reported() {
    let mut g = row_of(|_| vec![]);
    g[300] = node("bad300", &[], "1");
    g[19_000] = node("bad19000", &[], "1");
    let why = match layers(&g, 99) {
        Err(Error::Input(why)) => why,
        other => format!("{other:?}"),
    };
    assert_eq!(why, "path /nix/store/bad300 has no '-' (not a store path)");
}

#[test]
fn store_layers_print_as_jq_prints_them() -> Result<(), Error> {
    let paths: Vec<String> = [
        "/nix/store/a-x",
        "/nix/store/b-\u{7f}\u{1}é",
        "/nix/store/c",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        text(store_layers_json(&paths, 2)?),
        "[\n  [\n    \"/nix/store/a-x\"\n  ],\n  [\n    \"/nix/store/b-\\u007f\\u0001é\",\n    \"/nix/store/c\"\n  ]\n]\n"
    );
    assert_eq!(text(store_layers_json::<String>(&[], 2)?), "[]\n");
    assert_eq!(
        text(store_layers_json(&paths[..1], 5)?),
        "[\n  [\n    \"/nix/store/a-x\"\n  ]\n]\n"
    );
    Ok(())
}

/// `/nix/store/<32 times c>-<name>`.
fn p(c: char, name: &str) -> String {
    format!("{}-{name}", c.to_string().repeat(32))
}

/// auto-layer's layers as one line: each a list of the given store paths.
fn layer_line(layers: &[&[&str]]) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            let paths: Vec<String> = l.iter().map(|p| format!("\"/nix/store/{p}\"")).collect();
            format!("[{}]", paths.join(", "))
        })
        .collect();
    format!("[{}]\n", layers.join(", "))
}

#[test]
fn layers_of_equal_closure_size_come_in_cpython_set_order() -> Result<(), Error> {
    // Recorded with `PYTHONHASHSEED=0 auto-layer.py` under CPython 3.11, 3.12 and 3.13 (the
    // originals' order; nixpkgs' python3 setup hook sets that seed).
    let (a, b) = (p('a', "p0x"), p('b', "p1x"));
    let two = [node(&a, &[], "128"), node(&b, &[], "128")];
    assert_eq!(layers(&two, 99)?, layer_line(&[&[&b], &[&a]]));

    let names: Vec<String> = "abcdfg"
        .chars()
        .enumerate()
        .map(|(i, c)| p(c, &format!("p{i}")))
        .collect();
    let mut g: Vec<String> = names.iter().map(|n| node(n, &[], "7")).collect();
    let (h, i, j, k) = (p('h', "top"), p('i', "mid"), p('j', "top"), p('k', "mid"));
    g.extend([
        node(&h, &[&i], "5"),
        node(&i, &[], "2"),
        node(&j, &[&k], "5"),
        node(&k, &[], "2"),
    ]);
    let n = |k: usize| names[k].as_str();
    assert_eq!(
        layers(&g, 99)?,
        layer_line(&[
            &[&i],
            &[&k],
            &[n(2)],
            &[&j],
            &[n(5)],
            &[n(4)],
            &[n(0)],
            &[n(3)],
            &[&h],
            &[n(1)],
        ])
    );
    assert_eq!(
        layers(&g, 3)?,
        layer_line(&[&[n(4)], &[n(5)], &[&i, &k, n(0), n(1), n(2), n(3), &h, &j]])
    );
    Ok(())
}

#[test]
fn paths_no_root_reaches_come_in_cpython_set_order() -> Result<(), Error> {
    // A root, and cycles no root reaches; recorded with `PYTHONHASHSEED=0` closure-graph.py
    // (CPython 3.11 to 3.13) and flatten_references_graph (3.11, igraph 1.0).
    let (root, lib, x, y, z, w, v, u) = (
        p('a', "root"),
        p('b', "lib"),
        p('c', "x"),
        p('d', "y"),
        p('f', "z"),
        p('g', "w"),
        p('0', "v"),
        p('1', "u"),
    );
    let g = [
        node(&root, &[&lib], "1"),
        node(&lib, &[], "1"),
        node(&x, &[&y], "1"),
        node(&y, &[&x, &z], "1"),
        node(&z, &[], "1"),
        node(&w, &[], "1"),
        node(&v, &[&v, &u], "1"),
        node(&u, &[&v], "1"),
    ];
    let want = [&lib, &root, &w, &x, &y, &u, &z, &v];
    let input = format!(r#"{{"graph": {}}}"#, list(&g));
    let got = closure_graph(input.as_bytes(), "graph")?;
    let want_paths: Vec<String> = want.iter().map(|p| format!("/nix/store/{p}")).collect();
    assert_eq!(got, want_paths);
    let input = format!(
        r#"{{"graph": {}, "pipeline": [["popularity_contest"]]}}"#,
        list(&g)
    );
    let names: Vec<&str> = want.iter().map(|s| s.as_str()).collect();
    assert_eq!(text(pipeline(input.as_bytes())?), one_per_layer(&names));
    Ok(())
}

#[test]
fn the_compact_printer_writes_what_json_dumps_writes() -> Result<(), Error> {
    let odd = [
        "/nix/store/a-x",
        "q\"uote",
        "back\\slash",
        "\u{7f}del",
        "tab\t",
        "é",
        "😀",
        "",
    ];
    // Layers longer than a piece rendered on its own.
    let many: Vec<&str> = odd.iter().copied().cycle().take(3 * PIECE + 5).collect();
    for layers in [
        vec![],
        vec![vec![]],
        vec![odd.to_vec()],
        vec![vec!["/nix/store/a-x"], odd[1..4].to_vec(), vec!["~ !"]],
        vec![
            many.clone(),
            vec![],
            many[..PIECE].to_vec(),
            many[..PIECE + 1].to_vec(),
        ],
    ] {
        assert_eq!(
            dumps_compact(&layers)?,
            dumps_layers(&layers, pyjson::COMPACT)?
        );
    }
    assert_eq!(
        text(dumps_compact(&[vec!["a", "b"], vec!["c\u{1}"]])?),
        "[[\"a\", \"b\"], [\"c\\u0001\"]]\n"
    );
    Ok(())
}
