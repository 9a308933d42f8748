//! Fuzz target: the query parser never panics, and whatever it accepts prints back to text
//! that parses to the same tree (compared through `Debug`, so that NaN equals NaN).
//!
//! `cargo fuzz run parse_query` (needs the `[[bin]]` entry in fuzz/Cargo.toml).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = tsq_parser::parse(query) else {
        // Errors must point inside the input (or just past its end).
        if let Err(e) = tsq_parser::parse(query) {
            assert!(e.offset <= query.len());
            let _ = e.render(query);
        }
        return;
    };
    let printed = expr.to_string();
    let reparsed = match tsq_parser::parse(&printed) {
        Ok(e) => e,
        Err(e) => panic!("{query:?} printed as {printed:?}, which fails to parse: {e}"),
    };
    assert_eq!(format!("{reparsed:?}"), format!("{expr:?}"), "{query:?} printed as {printed:?}");
    assert_eq!(reparsed.to_string(), printed);
    let _ = expr.value_type();
});
