//! Concurrency (issue #9, campaign 3): a writer, a maintenance thread (flush, compaction,
//! deletion) and several readers run together for a bounded time.
//!
//! The writer commits batches in which series `a` and `b` always get the same timestamps
//! and values (in order, and some out of order inside the window). A deletion always
//! covers both. So every consistent snapshot has `a == b`; a reader that sees one without
//! the other has seen half a batch, or a flush or compaction half done. Readers also check
//! that the newest batch they see never goes backwards. A read-only opener of the same
//! directory (as `tsq query` while `tsq ingest` runs) must see the same invariant.
//!
//! Deadlock is not left to hope: every thread reports to a channel, and the test fails if
//! they have not all finished before a deadline.
//!
//! `TSQ_CONCURRENCY_MS` sets the run time (default 1500 ms).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tsq_storage::{Db, Labels, Matcher, SyncPolicy};

fn labels(name: &str) -> Labels {
    Labels::new([("__name__", name), ("job", "conc")])
}

/// How long the writers run: `TSQ_CONCURRENCY_MS`, default 1500 ms.
fn run_ms() -> u64 {
    std::env::var("TSQ_CONCURRENCY_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500)
}

/// Checks one snapshot; returns the newest timestamp seen.
fn check_snapshot(db: &Db, who: &str) -> Result<Option<i64>, String> {
    let got = db
        .select(&[Matcher::equal("job", "conc")], i64::MIN, i64::MAX)
        .map_err(|e| format!("{who}: select failed: {e}"))?;
    let mut by_name: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    for s in got {
        let name = s.labels.metric_name().unwrap_or("").to_string();
        if !s.timestamps.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!("{who}: {name}: timestamps not strictly increasing"));
        }
        by_name.insert(
            name,
            s.timestamps
                .iter()
                .zip(&s.values)
                .map(|(t, v)| (*t, v.to_bits()))
                .collect(),
        );
    }
    let a = by_name.remove("a").unwrap_or_default();
    let b = by_name.remove("b").unwrap_or_default();
    if a != b {
        let first = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        return Err(format!(
            "{who}: torn snapshot: a has {} samples, b has {}; first difference at index {first}: a {:?} b {:?}",
            a.len(),
            b.len(),
            a.get(first),
            b.get(first)
        ));
    }
    Ok(a.last().map(|x| x.0))
}

#[test]
fn readers_see_whole_batches_while_writer_flushes_and_compacts() {
    let run_ms = run_ms();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let db = Db::builder()
        .sync(SyncPolicy::Never)
        .block_range_ms(2_000)
        .ooo_window_ms(1_000)
        .chunk_samples(16)
        .flush_samples(5_000)
        .open(&path)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let maint = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<(String, Result<(), String>)>();
    let mut n_threads = 0;

    // Writer.
    {
        let (db, stop, batches, tx) = (db.clone(), stop.clone(), batches.clone(), tx.clone());
        n_threads += 1;
        std::thread::spawn(move || {
            let res = (|| -> Result<(), String> {
                let mut app = db.appender();
                let ra = app.series_ref(&labels("a")).map_err(|e| e.to_string())?;
                let rb = app.series_ref(&labels("b")).map_err(|e| e.to_string())?;
                let rc = app.series_ref(&labels("c")).map_err(|e| e.to_string())?;
                let mut i: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t = i * 10;
                    for k in 0..4 {
                        let v = (i * 4 + k) as f64;
                        app.add(ra, t + k, v);
                        app.add(rb, t + k, v);
                        app.add(rc, t + k, -v);
                    }
                    if i % 7 == 3 && t > 500 {
                        // Out of order, inside the window: overwrite an older timestamp.
                        app.add(ra, t - 500, 1e9 + i as f64);
                        app.add(rb, t - 500, 1e9 + i as f64);
                    }
                    app.commit().map_err(|e| format!("commit {i}: {e}"))?;
                    batches.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                Ok(())
            })();
            drop(db); // before reporting: the test reopens the directory
            let _ = tx.send(("writer".into(), res));
        });
    }
    // Maintenance: flush, compaction, deletions of old ranges of both series.
    {
        let (db, stop, maint, tx) = (db.clone(), stop.clone(), maint.clone(), tx.clone());
        let batches = batches.clone();
        n_threads += 1;
        std::thread::spawn(move || {
            let res = (|| -> Result<(), String> {
                let mut k = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    match k % 3 {
                        0 => db.flush().map_err(|e| format!("flush: {e}"))?,
                        1 => db.compact().map_err(|e| format!("compact: {e}"))?,
                        _ => {
                            // Only ranges well behind the writer, so that the newest batch
                            // a reader sees never legitimately goes back.
                            let safe = batches.load(Ordering::Relaxed) as i64 * 10 - 3_000;
                            if safe > 100 {
                                let from = (k * 37) % safe;
                                db.delete(&[Matcher::equal("job", "conc")], from, from + 20)
                                    .map_err(|e| format!("delete: {e}"))?;
                            }
                        }
                    }
                    maint.fetch_add(1, Ordering::Relaxed);
                    k += 1;
                    std::thread::sleep(Duration::from_millis(15));
                }
                Ok(())
            })();
            drop(db);
            let _ = tx.send(("maintenance".into(), res));
        });
    }
    // In-process readers.
    for r in 0..3 {
        let (db, stop, reads, tx) = (db.clone(), stop.clone(), reads.clone(), tx.clone());
        n_threads += 1;
        std::thread::spawn(move || {
            let who = format!("reader {r}");
            let res = (|| -> Result<(), String> {
                let mut newest = None;
                while !stop.load(Ordering::Relaxed) {
                    let n = check_snapshot(&db, &who)?;
                    if n < newest {
                        return Err(format!("{who}: went back in time: {n:?} after {newest:?}"));
                    }
                    newest = n;
                    if r == 0 {
                        db.label_values("__name__").map_err(|e| e.to_string())?;
                        let _ = db.info();
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })();
            drop(db);
            let _ = tx.send((who, res));
        });
    }
    // A read-only opener of the same directory, as another process would be.
    {
        let (stop, reads, tx, path) = (stop.clone(), reads.clone(), tx.clone(), path.clone());
        n_threads += 1;
        std::thread::spawn(move || {
            let who = "read-only opener".to_string();
            let res = (|| -> Result<(), String> {
                while !stop.load(Ordering::Relaxed) {
                    let ro = Db::open_read_only(&path).map_err(|e| format!("{who}: open: {e}"))?;
                    check_snapshot(&ro, &who)?;
                    reads.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            })();
            let _ = tx.send((who, res));
        });
    }
    drop(tx);
    std::thread::sleep(Duration::from_millis(run_ms));
    stop.store(true, Ordering::Relaxed);
    // Watchdog: every thread must report within the deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures = Vec::new();
    for _ in 0..n_threads {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, Ok(()))) => {}
            Ok((who, Err(e))) => failures.push(format!("{who}: {e}")),
            Err(_) => panic!(
                "deadlock or livelock: threads still running 20 s after stop (batches {}, reads {}, maintenance {})",
                batches.load(Ordering::Relaxed),
                reads.load(Ordering::Relaxed),
                maint.load(Ordering::Relaxed)
            ),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let (nb, nr, nm) = (
        batches.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
        maint.load(Ordering::Relaxed),
    );
    eprintln!("concurrency: {nb} batches, {nr} snapshot reads, {nm} flush/compact/delete");
    assert!(
        nb > 10 && nr > 10 && nm > 3,
        "too little happened: {nb} {nr} {nm}"
    );
    // The final state is consistent too, after a reopen.
    check_snapshot(&db, "final").unwrap();
    drop(db);
    let db = Db::open(&path).unwrap();
    check_snapshot(&db, "reopened").unwrap();
    assert!(db.check().is_empty(), "{:?}", db.check());
}

/// Several writer threads share one `Db` with the WAL synced per batch (so that their syncs
/// go through group commit), while a flusher and readers run. Writer `w` writes series
/// `a{w}` and `b{w}` with the same samples in each batch; every snapshot must have them
/// equal, and after a reopen every batch a writer saw acknowledged must be there, whole.
#[test]
fn several_writers_share_one_db_with_group_commit() {
    let run_ms = run_ms();
    const WRITERS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let db = Db::builder()
        .sync(SyncPolicy::Batch)
        .block_range_ms(2_000)
        .chunk_samples(16)
        .flush_samples(2_000)
        .open(&path)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<(String, Result<u64, String>)>();
    let pair = |w: usize| (format!("a{w}"), format!("b{w}"));

    // Every writer's pair equal; returns the number of samples of each pair.
    let check_pairs = move |db: &Db, who: &str| -> Result<Vec<usize>, String> {
        let got = db
            .select(&[Matcher::equal("job", "conc")], i64::MIN, i64::MAX)
            .map_err(|e| format!("{who}: select failed: {e}"))?;
        let by_name: BTreeMap<String, Vec<(i64, u64)>> = got
            .into_iter()
            .map(|s| {
                let name = s.labels.metric_name().unwrap_or("").to_string();
                let pts = s.timestamps.iter().zip(&s.values);
                (name, pts.map(|(t, v)| (*t, v.to_bits())).collect())
            })
            .collect();
        (0..WRITERS)
            .map(|w| {
                let (an, bn) = pair(w);
                let a = by_name.get(&an).cloned().unwrap_or_default();
                let b = by_name.get(&bn).cloned().unwrap_or_default();
                if a != b {
                    return Err(format!(
                        "{who}: torn snapshot of writer {w}: {} vs {} samples",
                        a.len(),
                        b.len()
                    ));
                }
                Ok(a.len())
            })
            .collect()
    };

    let mut n_threads = 0;
    for w in 0..WRITERS {
        let (db, stop, tx) = (db.clone(), stop.clone(), tx.clone());
        n_threads += 1;
        std::thread::spawn(move || {
            let res = (|| -> Result<u64, String> {
                let mut app = db.appender();
                let (an, bn) = pair(w);
                let ra = app.series_ref(&labels(&an)).map_err(|e| e.to_string())?;
                let rb = app.series_ref(&labels(&bn)).map_err(|e| e.to_string())?;
                let mut acked = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = acked as i64 * 10;
                    for k in 0..4 {
                        let v = (w * 1_000_000) as f64 + (acked * 4 + k) as f64;
                        app.add(ra, t + k as i64, v);
                        app.add(rb, t + k as i64, v);
                    }
                    app.commit().map_err(|e| format!("commit {acked}: {e}"))?;
                    acked += 1;
                }
                Ok(acked)
            })();
            drop(db);
            let _ = tx.send((format!("writer {w}"), res));
        });
    }
    {
        let (db, stop, tx) = (db.clone(), stop.clone(), tx.clone());
        n_threads += 1;
        std::thread::spawn(move || {
            let res = (|| -> Result<u64, String> {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    db.flush().map_err(|e| format!("flush: {e}"))?;
                    n += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                Ok(n)
            })();
            drop(db);
            let _ = tx.send(("flusher".into(), res));
        });
    }
    for r in 0..2 {
        let (db, stop, reads, tx) = (db.clone(), stop.clone(), reads.clone(), tx.clone());
        n_threads += 1;
        std::thread::spawn(move || {
            let who = format!("reader {r}");
            let res = (|| -> Result<u64, String> {
                let mut last = vec![0usize; WRITERS];
                while !stop.load(Ordering::Relaxed) {
                    let now = check_pairs(&db, &who)?;
                    if let Some(w) = (0..WRITERS).find(|&w| now[w] < last[w]) {
                        return Err(format!(
                            "{who}: writer {w} went back: {} after {} samples",
                            now[w], last[w]
                        ));
                    }
                    last = now;
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                Ok(0)
            })();
            drop(db);
            let _ = tx.send((who, res));
        });
    }
    drop(tx);
    std::thread::sleep(Duration::from_millis(run_ms));
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures = Vec::new();
    let mut acked = vec![0u64; WRITERS];
    for _ in 0..n_threads {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((who, Ok(n))) => {
                if let Some(w) = who.strip_prefix("writer ") {
                    acked[w.parse::<usize>().unwrap()] = n;
                }
            }
            Ok((who, Err(e))) => failures.push(format!("{who}: {e}")),
            Err(_) => panic!("deadlock or livelock: threads still running 20 s after stop"),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let nr = reads.load(Ordering::Relaxed);
    eprintln!("several writers: acknowledged batches {acked:?}, {nr} snapshot reads");
    assert!(
        acked.iter().all(|&n| n > 5) && nr > 5,
        "too little happened: {acked:?} {nr}"
    );
    drop(db);
    // Every acknowledged batch is there after a reopen (4 samples each, per series).
    let db = Db::open(&path).unwrap();
    let counts = check_pairs(&db, "reopened").unwrap();
    for w in 0..WRITERS {
        assert_eq!(
            counts[w] as u64,
            acked[w] * 4,
            "writer {w}: acknowledged {} batches",
            acked[w]
        );
    }
    assert!(db.check().is_empty(), "{:?}", db.check());
}
