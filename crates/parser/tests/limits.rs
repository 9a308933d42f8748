//! Deeply nested and very long inputs are refused cleanly, never with a stack overflow; the
//! deepest accepted trees still print, compare, debug-format and drop on a 2 MiB thread.

use tsq_parser::parse;

/// Runs `f` on a thread with a small stack, as test harnesses and servers use.
fn small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn refused(q: String) {
    small_stack(move || {
        let err = parse(&q).unwrap_err();
        assert_eq!(err.message, "query too deeply nested", "{err}");
    });
}

#[test]
fn hundred_thousand_parens() {
    refused("(".repeat(100_000));
    refused(format!("{}x{}", "(".repeat(100_000), ")".repeat(100_000)));
}

#[test]
fn long_unary_and_right_assoc_chains() {
    refused(format!("{}1", "-".repeat(100_000)));
    refused(format!("{}1", "2 ^ ".repeat(100_000)));
    refused(format!("{}x", "abs(".repeat(100_000)));
    refused(format!("x[{}1s]", "(".repeat(100_000)));
    refused(format!("x[{}1s]", "-".repeat(100_000)));
}

#[test]
fn long_left_assoc_chains() {
    refused(format!("1{}", " + 1".repeat(100_000)));
    refused(format!("x[1s{}]", " + 1s".repeat(100_000)));
    refused(format!("sum(x){}", " or sum(x)".repeat(50_000)));
}

#[test]
fn deepest_accepted_trees_are_usable() {
    small_stack(|| {
        for q in [
            format!("{}x{}", "(".repeat(250), ")".repeat(250)),
            format!("{}1", "-".repeat(250)),
            format!("1{}", " + 1".repeat(250)),
            format!("{}x{}", "abs(".repeat(250), ")".repeat(250)),
            format!("x[1s{}]", " + 1s".repeat(250)),
        ] {
            let e = parse(&q).unwrap();
            let printed = e.to_string();
            let again = parse(&printed).unwrap();
            assert_eq!(again, e);
            assert!(!format!("{e:?}").is_empty());
            drop(again);
        }
    });
}

#[test]
fn limits_are_exact() {
    small_stack(|| {
        assert!(parse(&format!("1{}", " + 1".repeat(255))).is_ok());
        assert!(parse(&format!("1{}", " + 1".repeat(256))).is_err());
    });
}

#[test]
fn empty_and_blank_input() {
    for q in ["", "   ", "# only a comment"] {
        let err = parse(q).unwrap_err();
        assert_eq!(err.message, "no expression found in input");
    }
}
