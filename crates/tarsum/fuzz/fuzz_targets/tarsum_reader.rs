//! Fuzzes the Go-semantics tar reader behind tarsum: any input gives a sum or an error, never a
//! panic, and the sum does not depend on the number of hashing threads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let one = tarsum::tarsum_with_threads(data, 1);
    let two = tarsum::tarsum_with_threads(data, 2);
    match (one, two) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("thread count changed the outcome: {a:?} vs {b:?}"),
    }
});
