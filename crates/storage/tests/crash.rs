//! Crash consistency: a scripted workload is stopped at every mutating file-system call
//! (every write, sync, rename, removal), the unsynced state is dropped (and, in a second
//! pass, torn), and the database is reopened. Every acknowledged batch must be there whole,
//! the batch in flight must be there whole or not at all, and nothing else may appear.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tsq_storage::{Db, FaultKind, Labels, MatchOp, Matcher, MemVfs, Vfs};

type Model = BTreeMap<String, BTreeMap<i64, u64>>;

#[derive(Clone, Debug)]
enum Op {
    Batch(Vec<(String, i64, f64)>),
    Delete(String, i64, i64),
    Flush,
    Compact,
}

fn workload() -> Vec<Op> {
    let mut ops = Vec::new();
    let hour = 3_600_000i64;
    for i in 0..24i64 {
        // Three series per batch; timestamps spread over several block ranges.
        let t = i * hour / 3;
        let mut b = vec![
            (format!("a{}", i % 3), t, i as f64),
            ("b".to_string(), t, -(i as f64)),
            (
                "c".to_string(),
                t + 1,
                f64::from_bits(0x7ff8_0000_0000_0000 | i as u64),
            ),
        ];
        if i % 5 == 4 {
            // An out-of-order write inside the window, and a duplicate timestamp.
            b.push(("b".to_string(), t - hour / 2, 1000.0 + i as f64));
            b.push(("c".to_string(), t + 1, 7.5));
        }
        ops.push(Op::Batch(b));
        if i == 9 || i == 17 {
            ops.push(Op::Flush);
        }
        if i == 12 {
            ops.push(Op::Delete("b".into(), hour, 2 * hour));
        }
        if i == 20 {
            ops.push(Op::Compact);
        }
    }
    ops
}

fn labels(name: &str) -> Labels {
    Labels::new([("__name__", name), ("job", "crash")])
}

fn apply_model(m: &mut Model, op: &Op) {
    match op {
        Op::Batch(b) => {
            for (n, t, v) in b {
                m.entry(n.clone()).or_default().insert(*t, v.to_bits());
            }
        }
        Op::Delete(n, a, b) => {
            if let Some(s) = m.get_mut(n) {
                s.retain(|t, _| t < a || t > b);
            }
        }
        Op::Flush | Op::Compact => {}
    }
}

fn run(db: &Db, op: &Op) -> tsq_storage::Result<()> {
    match op {
        Op::Batch(b) => {
            let mut app = db.appender();
            for (n, t, v) in b {
                let r = app.series_ref(&labels(n))?;
                app.add(r, *t, *v);
            }
            app.commit().map(|_| ())
        }
        Op::Delete(n, a, b) => db.delete(&[Matcher::equal("__name__", n.as_str())], *a, *b),
        Op::Flush => db.flush(),
        Op::Compact => db.compact(),
    }
}

fn read_all(db: &Db) -> Model {
    let all = Matcher::new(MatchOp::Equal, "job", "crash", true).unwrap();
    let mut m = Model::new();
    for s in db.select(&[all], i64::MIN, i64::MAX).unwrap() {
        let name = s.labels.metric_name().unwrap().to_string();
        let e: &mut BTreeMap<i64, u64> = m.entry(name).or_default();
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            e.insert(*t, v.to_bits());
        }
    }
    m.retain(|_, s| !s.is_empty());
    m
}

fn open(vfs: &MemVfs) -> tsq_storage::Result<Db> {
    Db::builder()
        .vfs(Arc::new(vfs.clone()))
        .ooo_window_ms(3_600_000)
        .chunk_samples(4)
        .open("/db")
}

/// Runs the workload with every call from `fail_from` on failing; returns the model of
/// acknowledged operations, the model including the op in flight, and the file system.
fn run_until(fail_from: Option<u64>) -> (Model, Model, MemVfs, bool) {
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    if let Some(k) = fail_from {
        vfs.fail_at(k, FaultKind::Io);
    }
    let mut acked = Model::new();
    for op in workload() {
        let mut with = acked.clone();
        apply_model(&mut with, &op);
        if run(&db, &op).is_err() {
            std::mem::forget(db); // a crash: no orderly shutdown
            return (acked, with, vfs, true);
        }
        acked = with;
    }
    drop(db);
    (acked.clone(), acked, vfs, false)
}

#[test]
fn acknowledged_batches_survive_a_crash_at_every_call() {
    let (full, _, vfs, _) = run_until(None);
    let total_ops = vfs.ops();
    assert!(
        total_ops > 100,
        "workload too small to be interesting: {total_ops} ops"
    );
    let mut trials = 0;
    for k in 0..total_ops {
        let (acked, inflight, vfs, crashed) = run_until(Some(k));
        if !crashed {
            continue;
        }
        for torn in [None, Some(k)] {
            trials += 1;
            let image = vfs.crash_image(torn);
            image.clear_fault();
            let db = open(&image).unwrap_or_else(|e| panic!("reopen after crash at op {k}: {e}"));
            let got = read_all(&db);
            let mut acked = acked.clone();
            acked.retain(|_, s| !s.is_empty());
            let mut inflight = inflight.clone();
            inflight.retain(|_, s| !s.is_empty());
            assert!(
                got == acked || got == inflight,
                "crash at op {k} (torn {torn:?}): state is neither the acknowledged one nor that plus the batch in flight\n got {got:?}\n acked {acked:?}"
            );
        }
    }
    assert!(trials > 200, "only {trials} crash trials");
    let db = open(&vfs).unwrap();
    let mut full = full;
    full.retain(|_, s| !s.is_empty());
    assert_eq!(read_all(&db), full);
}

#[test]
fn failed_calls_leave_the_database_usable() {
    // ENOSPC at each call: the failing operation reports an error, the process goes on,
    // later operations succeed once space is back, and a reopen sees every acknowledged
    // write.
    let (_, _, vfs, _) = run_until(None);
    let total = vfs.ops();
    for k in (0..total).step_by(7) {
        let vfs = MemVfs::new();
        let db = open(&vfs).unwrap();
        let mut acked = Model::new();
        let ops = workload();
        let mut failed_once = false;
        for op in &ops {
            if !failed_once && vfs.ops() >= k {
                vfs.fail_at(vfs.ops(), FaultKind::NoSpace);
            }
            match run(&db, op) {
                Ok(()) => apply_model(&mut acked, op),
                Err(_) => {
                    failed_once = true;
                    vfs.clear_fault();
                }
            }
            if failed_once {
                vfs.clear_fault();
            }
        }
        acked.retain(|_, s| !s.is_empty());
        let live = read_all(&db);
        drop(db);
        let db = open(&vfs.crash_image(None)).unwrap();
        let after = read_all(&db);
        assert_eq!(
            after, live,
            "fault at {k}: reopened state differs from the live one"
        );
        // Every acknowledged sample is present (a failed batch may still be there whole).
        for (name, s) in &acked {
            for (t, v) in s {
                assert_eq!(
                    after.get(name).and_then(|x| x.get(t)),
                    Some(v),
                    "fault at {k}: {name}@{t} lost"
                );
            }
        }
    }
}

#[test]
fn second_writer_is_refused() {
    let vfs = MemVfs::new();
    let _db = open(&vfs).unwrap();
    let err = open(&vfs).err().expect("second open must fail");
    assert!(matches!(err, tsq_storage::Error::Locked { .. }), "{err}");
    assert!(!vfs.exists(Path::new("/db/none")));
}

#[test]
fn concurrent_committers_are_all_durable_when_acknowledged() {
    // Group commit: several threads commit small batches with a sync per batch; one fsync
    // may cover several of them. Whatever the interleaving, every acknowledged batch must be
    // in a crash image taken after the threads finish, and each batch whole.
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    std::thread::scope(|s| {
        for th in 0..4i64 {
            let db = &db;
            s.spawn(move || {
                let a = db.series_ref(&labels(&format!("t{th}a"))).unwrap();
                let b = db.series_ref(&labels(&format!("t{th}b"))).unwrap();
                for i in 0..50i64 {
                    let mut app = db.appender();
                    app.add(a, i * 1000, i as f64);
                    app.add(b, i * 1000, -(i as f64));
                    app.commit().unwrap();
                }
            });
        }
    });
    let image = vfs.crash_image(None);
    std::mem::forget(db);
    let db = open(&image).unwrap();
    let got = read_all(&db);
    assert_eq!(got.len(), 8);
    for (name, samples) in &got {
        assert_eq!(samples.len(), 50, "{name}");
    }
}

/// The head is flushed when its samples take `flush_bytes` of memory, before
/// `flush_samples` is reached (what keeps hard-to-compress data from growing the head), and
/// nothing is lost by it.
#[test]
fn head_flushes_at_flush_bytes() {
    let vfs = MemVfs::new();
    let db = Db::builder()
        .vfs(Arc::new(vfs.clone()))
        .flush_samples(u64::MAX)
        .flush_bytes(64 << 10)
        .chunk_samples(128)
        .open("/db")
        .unwrap();
    let mut app = db.appender();
    let r = app
        .series_ref(&Labels::new([("__name__", "noisy")]))
        .unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut written = Vec::new();
    for k in 0..100i64 {
        for i in 0..100i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(0x3FF0_0000_0000_0000 | (x >> 12)); // full-precision in [1, 2)
            let t = (k * 100 + i) * 1_000;
            app.add(r, t, v);
            written.push((t, v.to_bits()));
        }
        app.commit().unwrap();
    }
    let info = db.info();
    assert!(
        !info.blocks.is_empty(),
        "10,000 full-precision samples never flushed"
    );
    assert!(info.head_samples < 10_000);
    let got = db
        .select(&[Matcher::equal("__name__", "noisy")], i64::MIN, i64::MAX)
        .unwrap();
    let got: Vec<(i64, u64)> = got[0]
        .timestamps
        .iter()
        .zip(&got[0].values)
        .map(|(t, v)| (*t, v.to_bits()))
        .collect();
    assert_eq!(got, written);
}

/// Series-id epochs (docs/format/wal.md): replay numbers series afresh, so the ids of a
/// reopened process differ from those in the segments it replayed. Here the first process
/// creates `a` and `b` (ids 0 and 1) but writes only `b`; after a crash the second process
/// knows `b` as id 0 and creates `c` as id 1, and writes both while the first process's
/// segment is still there. A third open must replay both generations without mixing them
/// up, and after a flush the WAL is just an epoch record.
#[test]
fn reopened_processes_renumber_series_without_mixing_up_segments() {
    let vfs = MemVfs::new();
    let n = |s: &str| Labels::new([("__name__", s), ("job", "crash")]);
    let db = open(&vfs).unwrap();
    let mut app = db.appender();
    let _a = app.series_ref(&n("a")).unwrap();
    let b = app.series_ref(&n("b")).unwrap();
    app.add(b, 1, 1.0);
    app.commit().unwrap();
    std::mem::forget(db);
    let vfs = vfs.crash_image(None);
    let db = open(&vfs).unwrap();
    let mut app = db.appender();
    let b = app.series_ref(&n("b")).unwrap();
    let c = app.series_ref(&n("c")).unwrap();
    app.add(b, 2, 2.0);
    app.add(c, 3, 3.0);
    app.commit().unwrap();
    app.add(c, 4, 4.0);
    app.commit().unwrap();
    std::mem::forget(db);
    let vfs = vfs.crash_image(None);
    let db = open(&vfs).unwrap();
    assert!(
        db.recovery_notices().is_empty(),
        "{:?}",
        db.recovery_notices()
    );
    let want: Model = [
        (
            "b".to_string(),
            BTreeMap::from([(1, 1f64.to_bits()), (2, 2f64.to_bits())]),
        ),
        (
            "c".to_string(),
            BTreeMap::from([(3, 3f64.to_bits()), (4, 4f64.to_bits())]),
        ),
    ]
    .into();
    assert_eq!(read_all(&db), want);
    db.flush().unwrap();
    let wal: Vec<u64> = vfs
        .list(Path::new("/db/wal"))
        .unwrap()
        .iter()
        .map(|s| vfs.len(&Path::new("/db/wal").join(s)).unwrap())
        .collect();
    assert_eq!(wal, vec![tsq_storage::wal::epoch_record().len() as u64]);
    // Written after the flush: declared again in the new epoch.
    let mut app = db.appender();
    let c = app.series_ref(&n("c")).unwrap();
    app.add(c, 5, 5.0);
    app.commit().unwrap();
    std::mem::forget(db);
    let vfs = vfs.crash_image(None);
    let db = open(&vfs).unwrap();
    let mut want = want;
    want.get_mut("c").unwrap().insert(5, 5f64.to_bits());
    assert_eq!(read_all(&db), want);
}
