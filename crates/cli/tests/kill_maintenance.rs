//! Real process kills beyond `tsq ingest` (issue #9, campaign 2): `tsq compact`, `tsq delete`
//! and an embedding program writing with the WAL synced per batch, each killed with SIGKILL
//! at random moments. After each kill the database must pass `tsq check` and hold:
//!
//! - after a killed `tsq compact`: exactly the data it held before (compaction moves data
//!   between the head and blocks, it never changes it);
//! - after a killed `tsq delete`: the data before the deletion or the data after it, nothing
//!   in between;
//! - after a killed embedder: every batch whose `commit` returned, whole, plus at most the
//!   one batch in flight, whole.
//!
//! CI does a few kills of each; `TSQ_KILL_TRIALS=100 cargo test --release -p tsq-cli --test
//! kill_maintenance` runs the long campaign (`TSQ_KILL_SEED` picks the seed).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tsq::storage::{Db, Labels, SyncPolicy};

mod common;
use common::{db_state, ok_as as ok, small_workload, stderr, stdout, tsq, Rng};

fn trials() -> (usize, u64) {
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    let n = env("TSQ_KILL_TRIALS").unwrap_or(3) as usize;
    (n, env("TSQ_KILL_SEED").unwrap_or(5))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn check_clean(db: &Path, ctx: &str) {
    let c = tsq(db, &["check"]);
    assert!(
        c.status.success(),
        "{ctx}: tsq check after kill: {}{}",
        stdout(&c),
        stderr(&c)
    );
}

/// A database with a day of the workload dataset, still in the head (WAL) after ingest.
fn template(dir: &Path) -> std::path::PathBuf {
    let file = small_workload(dir);
    let db = dir.join("template");
    ok(tsq(&db, &["ingest", file.to_str().unwrap()]), "ingest");
    db
}

/// Runs `tsq --db DB ARGS`, killing it after a random delay within 1.1 x `full`; true when
/// the kill landed before the process exited on its own.
fn run_killed(db: &Path, args: &[&str], full: Duration, rng: &mut Rng) -> (bool, u64) {
    let delay_us = rng.next() % (full.as_micros() as u64 * 11 / 10 + 1);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsq"))
        .arg("--db")
        .arg(db)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_micros(delay_us));
    let exited = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    child.wait().unwrap();
    (!exited, delay_us)
}

#[test]
fn sigkill_during_compact_changes_no_data() {
    let (trials, seed) = trials();
    let tmp = tempfile::tempdir().unwrap();
    let tpl = template(tmp.path());
    let before = db_state(&tpl);
    assert!(before.len() > 10_000);
    let timed = tmp.path().join("timed");
    copy_dir(&tpl, &timed);
    let started = Instant::now();
    ok(tsq(&timed, &["compact"]), "clean compact");
    let full = started.elapsed();
    assert_eq!(
        db_state(&timed),
        before,
        "a clean compaction changed the data"
    );
    let mut rng = Rng(seed);
    let mut killed = 0;
    for trial in 0..trials {
        let db = tmp.path().join(format!("db{trial}"));
        copy_dir(&tpl, &db);
        let (k, delay_us) = run_killed(&db, &["compact"], full, &mut rng);
        killed += usize::from(k);
        let ctx = format!("compact trial {trial} (seed {seed}, kill after {delay_us} us)");
        check_clean(&db, &ctx);
        assert!(db_state(&db) == before, "{ctx}: the data changed");
        // The next compaction finishes the job, still without changing anything.
        ok(
            tsq(&db, &["compact"]),
            &format!("{ctx}: compact after the kill"),
        );
        check_clean(&db, &ctx);
        assert!(db_state(&db) == before, "{ctx}: the data changed");
        std::fs::remove_dir_all(&db).unwrap();
    }
    eprintln!(
        "kill compact: {trials} trials, {killed} killed mid-run; {} samples, clean compact {:.0} ms",
        before.len(),
        full.as_secs_f64() * 1e3
    );
}

#[test]
fn sigkill_during_delete_applies_all_or_nothing() {
    let (trials, seed) = trials();
    let tmp = tempfile::tempdir().unwrap();
    let tpl = template(tmp.path());
    // Half of the blocks' data: compact first so that the deletion meets blocks and head.
    ok(tsq(&tpl, &["compact"]), "compact");
    let before = db_state(&tpl);
    let args = [
        "delete",
        "{__name__=~\"http_requests_total|up\"}",
        "--start",
        "2026-01-01T06:00:00Z",
        "--end",
        "2026-01-01T18:00:00Z",
    ];
    let timed = tmp.path().join("timed");
    copy_dir(&tpl, &timed);
    let started = Instant::now();
    ok(tsq(&timed, &args), "clean delete");
    let full = started.elapsed();
    let after = db_state(&timed);
    assert!(after.len() < before.len(), "the deletion deleted nothing");
    let mut rng = Rng(seed ^ 0xDE1E7E);
    let (mut none, mut all) = (0, 0);
    for trial in 0..trials {
        let db = tmp.path().join(format!("db{trial}"));
        copy_dir(&tpl, &db);
        let (_, delay_us) = run_killed(&db, &args, full, &mut rng);
        let ctx = format!("delete trial {trial} (seed {seed}, kill after {delay_us} us)");
        check_clean(&db, &ctx);
        let got = db_state(&db);
        if got == before {
            none += 1;
        } else if got == after {
            all += 1;
        } else {
            panic!(
                "{ctx}: {} samples: neither before ({}) nor after ({}) the deletion",
                got.len(),
                before.len(),
                after.len()
            );
        }
        // A compaction afterwards reclaims, and keeps whichever state it found.
        ok(tsq(&db, &["compact"]), &format!("{ctx}: compact"));
        assert!(db_state(&db) == got, "{ctx}: compaction changed the data");
        std::fs::remove_dir_all(&db).unwrap();
    }
    eprintln!(
        "kill delete: {trials} trials, {none} before the deletion, {all} after; clean delete {:.0} ms",
        full.as_secs_f64() * 1e3
    );
}

const EMBEDDER_BATCH: i64 = 50;

/// The embedding program: when `TSQ_KILL_EMBEDDER_DB` is set, this test writes batches to
/// that database with the WAL synced per batch and prints each batch's number once its
/// `commit` has returned. Run by `sigkill_of_an_embedder_loses_no_acknowledged_batch` as a
/// child process (the test binary itself), and killed.
#[test]
fn embedder_child() {
    let Some(dir) = std::env::var_os("TSQ_KILL_EMBEDDER_DB") else {
        return; // only meaningful as the child of the kill test
    };
    let db = Db::builder().sync(SyncPolicy::Batch).open(&dir).unwrap();
    let mut app = db.appender();
    let refs: Vec<_> = (0..5)
        .map(|s| {
            let l = Labels::new([("__name__", "embedded"), ("s", &*s.to_string())]);
            app.series_ref(&l).unwrap()
        })
        .collect();
    let mut out = std::io::stdout().lock();
    for k in 0i64.. {
        for i in 0..EMBEDDER_BATCH {
            let r = refs[(i % 5) as usize];
            app.add(r, k * 1_000 + i, (k * EMBEDDER_BATCH + i) as f64);
        }
        app.commit().unwrap();
        writeln!(out, "{k}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_of_an_embedder_loses_no_acknowledged_batch() {
    let (trials, seed) = trials();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed ^ 0xE3BED);
    let mut acked_total = 0;
    for trial in 0..trials {
        let dir = tmp.path().join(format!("emb{trial}"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "embedder_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TSQ_KILL_EMBEDDER_DB", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reader = BufReader::new(child.stdout.take().unwrap());
        let acked = std::thread::spawn(move || {
            // The last batch number the child printed: acknowledged by `commit`.
            let mut last: Option<i64> = None;
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Ok(k) = line.trim().parse::<i64>() {
                    last = Some(k);
                }
            }
            last
        });
        std::thread::sleep(Duration::from_millis(50 + rng.next() % 400));
        let _ = child.kill();
        child.wait().unwrap();
        let last = acked.join().unwrap();
        let ctx = format!("embedder trial {trial} (seed {seed}), last acknowledged {last:?}");
        if !dir.exists() {
            assert!(last.is_none(), "{ctx}");
            continue;
        }
        check_clean(&dir, &ctx);
        let got = db_state(&dir);
        // Whole batches 0..=m, m the last acknowledged one or the one after it.
        let n = got.len() as i64;
        assert_eq!(n % EMBEDDER_BATCH, 0, "{ctx}: {n} samples: half a batch");
        let m = n / EMBEDDER_BATCH - 1;
        let lo = last.unwrap_or(-1);
        assert!(
            m == lo || m == lo + 1,
            "{ctx}: {} whole batches present",
            m + 1
        );
        for ((_, t), v) in &got {
            let (k, i) = (t / 1_000, t % 1_000);
            assert!(k <= m && i < EMBEDDER_BATCH, "{ctx}: sample at {t}");
            assert_eq!(f64::from_bits(*v), (k * EMBEDDER_BATCH + i) as f64, "{ctx}");
        }
        acked_total += lo + 1;
    }
    eprintln!("kill embedder: {trials} kills, {acked_total} acknowledged batches all present");
}
