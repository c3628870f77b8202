//! Fuzzes the node-list readers: whatever the input, the fast scanner and serde_json agree
//! (same nodes, or both refuse), auto-layer's windowed reader reads what serde_json reads
//! wherever it answers, and none panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popularity_sorter::graph::{parse_nodes, parse_nodes_serde};
use popularity_sorter::size::Size;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(listed)) = popularity_sorter::listed::read(data, data.len() as u64) {
        let text = std::str::from_utf8(data).expect("the reader answered on bytes not UTF-8");
        let nodes = parse_nodes_serde(text, true).expect("the reader answered where serde refuses");
        assert_eq!(nodes.len(), listed.len());
        for (k, n) in nodes.iter().enumerate() {
            assert_eq!(n.path, listed.path(k));
            assert_eq!(n.nar_size, Size::Int(i128::from(listed.size(k))));
            assert!(n.references.iter().map(|r| r.as_ref()).eq(listed.references(k)));
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for need_size in [false, true] {
        let fast = parse_nodes(text, need_size).ok();
        let slow = parse_nodes_serde(text, need_size).ok();
        assert_eq!(fast, slow, "need_size {need_size}");
    }
});
