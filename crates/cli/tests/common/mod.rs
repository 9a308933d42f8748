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

/// A small deterministic generator (splitmix64) for the kill campaigns' delays.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Every sample of a database: (series, t) -> value bits.
pub type State = std::collections::BTreeMap<(tsq::storage::Labels, i64), u64>;

/// Every sample of the database in `dir`, read through a read-only `Db` (as a second process
/// would after a kill).
pub fn db_state(dir: &Path) -> State {
    use tsq::storage::{Db, MatchOp, Matcher};
    let db = Db::open_read_only(dir).expect("read-only open after kill");
    let all = Matcher::new(MatchOp::Regex, "__name__", ".+", true).unwrap();
    let mut out = State::new();
    for s in db.select(&[all], i64::MIN, i64::MAX).unwrap() {
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            out.insert((s.labels.clone(), *t), v.to_bits());
        }
    }
    out
}

/// Writes a day of the workload dataset for 2 services x 2 instances (184,320 samples) to
/// `dir/workload.om` and returns its path.
pub fn small_workload(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("workload.om");
    let args = [
        "gen",
        "--dataset",
        "workload",
        "--days",
        "1",
        "--services",
        "2",
        "--instances",
        "2",
        "--out",
        file.to_str().unwrap(),
    ];
    ok_as(tsq(&dir.join("unused"), &args), "gen");
    file
}
