//! Real process kills (issue #9, campaign 2): `tsq ingest` of a generated workload file is
//! killed with SIGKILL at random moments. After each kill:
//!
//! 1. `tsq check` exits 0 (the database opens and every checksum verifies);
//! 2. the samples present are exactly the first N samples of the file, in file order, where
//!    N is a whole number of `--batch` batches (ingest writes in file order and every batch
//!    is one atomic WAL record): no batch is half there, none is skipped;
//! 3. resuming (ingesting the rest of the file: the same file without the sample lines
//!    already committed) gives exactly the data of a clean import (`tsq dump` equal).
//!
//! CI does a handful of kills; `TSQ_KILL_TRIALS=100 cargo test --release -p tsq-cli --test
//! kill` runs the long campaign (`TSQ_KILL_SEED` picks the seed).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tsq::formats::{self, Event, ParseOptions};
use tsq::storage::Labels;

const BATCH: usize = 1_000;

mod common;
use common::{db_state, ok_as as ok, small_workload, tsq, Rng};

/// One sample of the file: (labels, t, value bits, 1-based line).
type Sample = (Labels, i64, u64, usize);

fn file_samples(data: &[u8]) -> Vec<Sample> {
    let fmt = formats::detect_format(Some("x.om"), data).expect("format");
    let opts = ParseOptions::new(fmt);
    let mut keys: BTreeMap<String, Labels> = BTreeMap::new();
    let mut out = Vec::new();
    formats::parse(data, &opts, |ev| {
        if let Event::Sample(r) = ev {
            let labels = keys
                .entry(r.series_key.to_string())
                .or_insert_with(|| formats::parse_series_key(r.series_key).unwrap())
                .clone();
            out.push((labels, r.timestamp_ms, r.value.to_bits(), r.line));
        }
        Ok::<(), std::io::Error>(())
    })
    .map_err(|_| "parse")
    .unwrap();
    out
}

/// The file without the sample lines of its first `n` samples.
fn suffix_file(data: &[u8], samples: &[Sample], n: usize) -> Vec<u8> {
    let drop: std::collections::HashSet<usize> = samples[..n].iter().map(|s| s.3).collect();
    let mut out = Vec::with_capacity(data.len());
    for (i, line) in data.split_inclusive(|&b| b == b'\n').enumerate() {
        if !drop.contains(&(i + 1)) {
            out.extend_from_slice(line);
        }
    }
    out
}

#[test]
fn sigkill_during_ingest_leaves_a_prefix_of_whole_batches() {
    let trials: usize = std::env::var("TSQ_KILL_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let seed: u64 = std::env::var("TSQ_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9);
    let tmp = tempfile::tempdir().unwrap();
    let file = small_workload(tmp.path());
    let data = std::fs::read(&file).unwrap();
    let samples = file_samples(&data);
    {
        let mut distinct: std::collections::HashSet<(&Labels, i64)> = Default::default();
        assert!(
            samples.iter().all(|s| distinct.insert((&s.0, s.1))),
            "the generated file repeats a (series, timestamp): the prefix check needs distinct samples"
        );
    }
    let batch = BATCH.to_string();
    let ingest_args = |f: &Path| {
        vec![
            "ingest".to_string(),
            f.to_str().unwrap().to_string(),
            "--batch".into(),
            batch.clone(),
        ]
    };

    // Reference: a clean import, timed.
    let clean = tmp.path().join("clean");
    let started = Instant::now();
    ok(
        Command::new(env!("CARGO_BIN_EXE_tsq"))
            .arg("--db")
            .arg(&clean)
            .args(ingest_args(&file))
            .output()
            .unwrap(),
        "clean ingest",
    );
    let full_time = started.elapsed();
    let reference_dump = ok(tsq(&clean, &["dump"]), "dump").stdout;
    let reference = db_state(&clean);
    assert_eq!(reference.len(), samples.len());

    let mut rng = Rng(seed);
    let (mut partial, mut none, mut all) = (0, 0, 0);
    for trial in 0..trials {
        let db = tmp.path().join(format!("db{trial}"));
        // Kill somewhere in the whole run (check pass, then batches).
        let delay_us = rng.next() % (full_time.as_micros() as u64 * 11 / 10 + 1);
        let mut child = Command::new(env!("CARGO_BIN_EXE_tsq"))
            .arg("--db")
            .arg(&db)
            .args(ingest_args(&file))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(delay_us));
        let _ = child.kill(); // SIGKILL on Unix; fails only if it has exited already
        child.wait().unwrap();
        let ctx = format!("trial {trial} (seed {seed}, kill after {delay_us} us)");
        if !db.exists() {
            none += 1; // killed during the check pass: nothing created
            continue;
        }
        let check = tsq(&db, &["check"]);
        assert!(
            check.status.success(),
            "{ctx}: tsq check after kill: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let got = db_state(&db);
        let n = got.len();
        assert!(
            n % BATCH == 0 || n == samples.len(),
            "{ctx}: {n} samples present, not a whole number of {BATCH}-sample batches"
        );
        for (labels, t, v, line) in &samples[..n] {
            assert_eq!(
                got.get(&(labels.clone(), *t)),
                Some(v),
                "{ctx}: {n} samples present but sample of line {line} ({labels} @ {t}) is not one of them"
            );
        }
        match n {
            0 => none += 1,
            n if n == samples.len() => all += 1,
            _ => partial += 1,
        }
        // Resume: ingest what is missing; the result equals a clean import.
        let rest = tmp.path().join(format!("rest{trial}.om"));
        std::fs::write(&rest, suffix_file(&data, &samples, n)).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_tsq"))
            .arg("--db")
            .arg(&db)
            .args(ingest_args(&rest))
            .output()
            .unwrap();
        ok(o, &format!("{ctx}: resumed ingest"));
        let dump = ok(tsq(&db, &["dump"]), "dump").stdout;
        assert!(
            dump == reference_dump,
            "{ctx}: dump after resume differs from a clean import"
        );
        std::fs::remove_dir_all(&db).unwrap();
        std::fs::remove_file(&rest).unwrap();
    }
    eprintln!(
        "kill: {trials} kills ({partial} mid-write, {none} before the first batch, {all} after the last); {} samples, clean ingest {:.0} ms",
        samples.len(),
        full_time.as_secs_f64() * 1e3
    );
}

/// Regression (found by this campaign): `tsq check` (read-only) called the torn WAL tail a
/// kill leaves "damaged" and exited 1, although it is the normal residue of a crash (and of
/// a writer in the middle of a record) that the next writer truncates with a notice.
#[test]
fn check_accepts_the_torn_wal_tail_a_kill_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let f = tmp.path().join("in.prom");
    let mut body = String::new();
    for i in 0..2_000i64 {
        body.push_str(&format!(
            "m{{s=\"{}\"}} {i} {}\n",
            i % 7,
            1_767_225_600_000 + i * 1_000
        ));
    }
    std::fs::write(&f, body).unwrap();
    let args = ["ingest", f.to_str().unwrap(), "--batch", "500"];
    ok(tsq(&db, &args), "ingest");
    let before = ok(tsq(&db, &["dump"]), "dump").stdout;
    // What SIGKILL in the middle of writing a record leaves: the first bytes of a record.
    let wal = db.join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let mut data = std::fs::read(last).unwrap();
    let partial = data[..data.len().min(100)].to_vec();
    data.extend_from_slice(&partial);
    std::fs::write(last, data).unwrap();
    let check = tsq(&db, &["check"]);
    assert!(
        check.status.success(),
        "check after a torn tail: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert_eq!(ok(tsq(&db, &["dump"]), "dump").stdout, before);
    // The next writer truncates the tail; everything is still there.
    ok(tsq(&db, &["compact"]), "compact");
    ok(tsq(&db, &["check"]), "check after compact");
    assert_eq!(ok(tsq(&db, &["dump"]), "dump").stdout, before);
}
