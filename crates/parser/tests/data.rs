//! Data-driven tests over `test_data/`.
//!
//! * `test_data/ok/*.promql`: one query per line (a line ending in ` \` continues on the next
//!   line, joined with a newline; empty lines and lines starting with `##` are skipped). Each
//!   query must parse; its canonical print must parse back to the same tree and print the
//!   same; the expected output (`*.expected`) lists, per query, the canonical print, the type
//!   and an S-expression of the tree.
//! * `test_data/err/*.promql`: same layout; each query must fail; `*.expected` lists the
//!   error (`line:column: message`) and the caret rendering.
//!
//! Regenerate the expectations with `UPDATE_EXPECT=1 cargo test -p tsq-parser --test data`,
//! then review the diff: a wrong expectation regenerated is a wrong test.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use tsq_parser::{functions, parse, printer::aggregate_op_str, AggregateOp};

fn cases(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    for line in text.lines() {
        if pending.is_none() && (line.trim().is_empty() || line.starts_with("##")) {
            continue;
        }
        let (body, cont) = match line.strip_suffix(" \\") {
            Some(b) => (b, true),
            None => (line, false),
        };
        let q = match pending.take() {
            Some(p) => format!("{p}\n{body}"),
            None => body.to_string(),
        };
        if cont {
            pending = Some(q);
        } else {
            out.push(q);
        }
    }
    if let Some(p) = pending {
        out.push(p);
    }
    out
}

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(dir);
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "promql"))
        .collect();
    v.sort();
    v
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("   |{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_expected(path: &Path, actual: &str, failures: &mut Vec<String>) {
    let exp_path = path.with_extension("expected");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        fs::write(&exp_path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&exp_path).unwrap_or_default();
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("\n  expected: {a}\n  actual:   {b}"))
            .unwrap_or_else(|| " (length differs)".into());
        failures.push(format!(
            "{} differs from the actual output{first}",
            exp_path.display()
        ));
    }
}

#[test]
fn ok_cases() {
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    let mut count = 0;
    for path in files("ok") {
        let mut out = String::new();
        for q in cases(&path) {
            count += 1;
            let e = match parse(&q) {
                Ok(e) => e,
                Err(err) => {
                    failures.push(format!("{}: {q:?} failed: {err}", path.display()));
                    continue;
                }
            };
            let printed = e.to_string();
            match parse(&printed) {
                Ok(e2) => {
                    if format!("{e2:?}") != format!("{e:?}") {
                        failures.push(format!("{q:?}: reparse of {printed:?} differs"));
                    }
                    if e2.to_string() != printed {
                        failures.push(format!("{q:?}: printing is not idempotent"));
                    }
                }
                Err(err) => failures.push(format!("{q:?}: canonical {printed:?} fails: {err}")),
            }
            let mut called = Vec::new();
            common::called_functions(&e, &mut called);
            seen.extend(called);
            out.push_str(&format!(
                "{q}\n=> {printed}\n   {} {}\n\n",
                e.value_type().name(),
                common::sx(&e)
            ));
        }
        check_expected(&path, &out, &mut failures);
    }
    for f in functions() {
        if !seen.contains(f.name) {
            failures.push(format!("function {:?} appears in no ok case", f.name));
        }
    }
    for op in AggregateOp::ALL {
        if !seen.contains(aggregate_op_str(op)) {
            failures.push(format!("aggregation {op:?} appears in no ok case"));
        }
    }
    println!("{count} ok cases");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn err_cases() {
    let mut failures = Vec::new();
    let mut count = 0;
    for path in files("err") {
        let mut out = String::new();
        for q in cases(&path) {
            count += 1;
            match parse(&q) {
                Ok(e) => failures.push(format!("{}: {q:?} parsed as {e}", path.display())),
                Err(err) => {
                    // Line and column agree with the byte offset.
                    let before = &q[..err.offset];
                    let line = before.matches('\n').count() + 1;
                    let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
                    if (line, col) != (err.line, err.column) {
                        failures.push(format!("{q:?}: position {err:?} inconsistent"));
                    }
                    out.push_str(&format!("{q}\n=> {err}\n{}\n\n", indent(&err.render(&q))));
                }
            }
        }
        check_expected(&path, &out, &mut failures);
    }
    println!("{count} err cases");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
