//! Helpers shared by the integration tests that run the `tsq` binary.
// Each test crate uses its own subset of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `tsq --db DB ARGS...` and waits for it.
pub fn tsq(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tsq"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run tsq")
}

/// The process's standard output, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The process's standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `o`, after asserting that `what` succeeded (its stderr and stdout otherwise).
pub fn ok_as(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        stderr(&o),
        stdout(&o)
    );
    o
}
