//! Fuzzes the node-list reader: whatever the input, the fast scanner and serde_json agree
//! (same nodes, or both refuse), and neither panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popularity_sorter::graph::{parse_nodes, parse_nodes_serde};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for need_size in [false, true] {
        let fast = parse_nodes(text, need_size).ok();
        let slow = parse_nodes_serde(text, need_size).ok();
        assert_eq!(fast, slow, "need_size {need_size}");
    }
});
