//! Seeded crash simulation (issue #9, campaign 1).
//!
//! Each seed draws a random workload (batches in and out of order, duplicate timestamps,
//! batches older than the out-of-order window, deletions, flushes, compactions, automatic
//! flushes, WAL segment rolls, retention) and random options. A dry run records every
//! mutating file-system call; then the workload is run again with the file system failing
//! from a chosen call on (a random call, a sync, or the call right after a sync), the
//! machine "loses power" (`MemVfs::crash_image`, unsynced data dropped or torn), and
//! the database is reopened, sometimes with a second crash in the middle of recovery.
//! The reopened state must be the acknowledged state, or that plus the whole operation in
//! flight: no acknowledged write lost, no batch half applied, nothing invented. A quarter of
//! the workloads run with `SyncPolicy::Never`, whose promise is weaker: the state after each
//! operation since the last durable point (a flush, compaction or deletion) is acceptable
//! too, so whole batches may be lost, but never part of one, and nothing before that point.
//! Half of those run with `SyncPolicy::Interval` instead (a background thread syncing every
//! half millisecond, whose syncs may themselves be the call that fails): its promise is the
//! same, with fewer batches at risk. Its syncs come from another thread, so a crash point of
//! such a workload is not exactly reproducible by seed; the others are.
//!
//! CI runs a few hundred trials; `TSQ_CRASH_TRIALS=10000 cargo test --release -p
//! tsq-storage --test crash_random` runs the long campaign (`TSQ_CRASH_SEED` picks the
//! first seed). A failure prints the seed and crash point that reproduce it.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use tsq_storage::vfs::{Bytes, VfsFile};
use tsq_storage::{Db, Error, FaultKind, Labels, Matcher, MemVfs, SyncPolicy, Vfs};

/// series -> t -> value bits.
type Model = BTreeMap<u8, BTreeMap<i64, u64>>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

#[derive(Clone, Debug)]
enum Op {
    Batch(Vec<(u8, i64, u64)>),
    Delete(u8, i64, i64),
    Flush,
    Compact,
}

#[derive(Clone, Debug)]
struct Config {
    chunk_samples: usize,
    flush_samples: u64,
    retention_ms: Option<i64>,
    /// `SyncPolicy::Never` instead of the default per-batch sync: a power loss may then lose
    /// whole batches committed since the last durable point (a flush, compaction or
    /// deletion, which sync the log), never part of one.
    sync_never: bool,
    /// With `sync_never`: `SyncPolicy::Interval` instead of `SyncPolicy::Never`.
    interval: bool,
    ops: Vec<Op>,
}

const BLOCK_RANGE: i64 = 10_000;
const WINDOW: i64 = 5_000;

fn workload(seed: u64) -> Config {
    let mut r = Rng(seed);
    let n_series = 1 + r.below(5) as u8;
    let n_ops = 10 + r.below(40) as usize;
    let mut clock = 0i64;
    let mut ops = Vec::with_capacity(n_ops);
    for _ in 0..n_ops {
        match r.below(20) {
            0..=13 => {
                clock += r.range(0, 4_000);
                let n = 1 + r.below(12) as usize;
                let mut b = Vec::with_capacity(n);
                // Mostly in order, some out of order inside the window; in a few batches one
                // sample may lie beyond it (the whole batch must then be refused).
                let too_old_at = if r.chance(10) {
                    r.below(n as u64) as usize
                } else {
                    n
                };
                for i in 0..n {
                    let s = r.below(u64::from(n_series)) as u8;
                    let t = match r.below(10) {
                        _ if i == too_old_at => clock - r.range(0, 3 * WINDOW),
                        0..=2 => clock - r.range(0, WINDOW / 2),
                        _ => clock + r.range(0, 2_000),
                    }
                    .max(0);
                    let v = match r.below(8) {
                        0 => f64::NAN.to_bits() ^ r.below(1 << 20),
                        1 => (-0.0f64).to_bits(),
                        2 => tsq_storage::STALE_NAN_BITS,
                        _ => (r.below(1_000_000) as f64 / 8.0).to_bits(),
                    };
                    b.push((s, t, v));
                }
                ops.push(Op::Batch(b));
            }
            14 | 15 => {
                let from = clock - r.range(0, 4 * BLOCK_RANGE);
                ops.push(Op::Delete(
                    r.below(u64::from(n_series)) as u8,
                    from,
                    from + r.range(0, 2 * BLOCK_RANGE),
                ));
            }
            16..=18 => ops.push(Op::Flush),
            _ => ops.push(Op::Compact),
        }
    }
    Config {
        chunk_samples: 2 + r.below(15) as usize,
        flush_samples: if r.chance(40) {
            20 + r.below(100)
        } else {
            1 << 40
        },
        retention_ms: r.chance(30).then(|| r.range(15_000, 60_000)),
        // Drawn from its own stream so that adding it left every seed's workload unchanged.
        sync_never: Rng(seed ^ 0x5EED_0000_0000_0001).chance(25),
        interval: Rng(seed ^ 0x5EED_0000_0000_0002).chance(50),
        ops,
    }
}

fn labels(s: u8) -> Labels {
    Labels::new([("__name__", "m".to_string()), ("s", s.to_string())])
}

fn open(vfs: Arc<dyn Vfs>, cfg: &Config) -> tsq_storage::Result<Db> {
    Db::builder()
        .vfs(vfs)
        .block_range_ms(BLOCK_RANGE)
        .ooo_window_ms(WINDOW)
        .chunk_samples(cfg.chunk_samples)
        .flush_samples(cfg.flush_samples)
        .retention_ms(cfg.retention_ms)
        .wal_segment_bytes(4096)
        .sync(if cfg.sync_never && cfg.interval {
            SyncPolicy::Interval(std::time::Duration::from_micros(500))
        } else if cfg.sync_never {
            SyncPolicy::Never
        } else {
            SyncPolicy::Batch
        })
        .open("/db")
}

fn apply(m: &mut Model, op: &Op) {
    match op {
        Op::Batch(b) => {
            for &(s, t, v) in b {
                m.entry(s).or_default().insert(t, v);
            }
        }
        Op::Delete(s, a, b) => {
            if let Some(x) = m.get_mut(s) {
                x.retain(|t, _| t < a || t > b);
            }
        }
        Op::Flush | Op::Compact => {}
    }
}

fn run(db: &Db, op: &Op) -> tsq_storage::Result<()> {
    match op {
        Op::Batch(b) => {
            let mut app = db.appender();
            for &(s, t, v) in b {
                let r = app.series_ref(&labels(s))?;
                app.add(r, t, f64::from_bits(v));
            }
            app.commit().map(|_| ())
        }
        Op::Delete(s, a, b) => db.delete(&[Matcher::equal("s", s.to_string())], *a, *b),
        Op::Flush => db.flush(),
        Op::Compact => db.compact(),
    }
}

fn read_all(db: &Db) -> tsq_storage::Result<Model> {
    let mut m = Model::new();
    for s in db.select(&[Matcher::equal("__name__", "m")], i64::MIN, i64::MAX)? {
        let id: u8 = s.labels.get("s").unwrap().parse().unwrap();
        let e = m.entry(id).or_default();
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            assert!(
                e.insert(*t, v.to_bits()).is_none(),
                "duplicate t {t} in s{id}"
            );
        }
    }
    Ok(m)
}

/// What kind of call a mutating file-system operation was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Write,
    Sync,
    Other,
}

/// Mutating calls by `ops()` index.
type CallLog = Arc<Mutex<Vec<(u64, Call)>>>;

/// Wraps a [`MemVfs`] and records the kind of every mutating call, by its `ops()` index.
#[derive(Clone)]
struct Recorder {
    mem: MemVfs,
    log: CallLog,
}

impl Recorder {
    fn note<T>(&self, kind: Call, f: impl FnOnce() -> T) -> T {
        let before = self.mem.ops();
        let out = f();
        if self.mem.ops() > before {
            self.log.lock().push((before, kind));
        }
        out
    }
}

struct RecFile {
    rec: Recorder,
    inner: Box<dyn VfsFile>,
}

impl VfsFile for RecFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let rec = self.rec.clone();
        rec.note(Call::Write, || self.inner.write_all(buf))
    }
    fn sync(&mut self) -> io::Result<()> {
        let rec = self.rec.clone();
        rec.note(Call::Sync, || self.inner.sync())
    }
    fn syncer(&self) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(RecFile {
            rec: self.rec.clone(),
            inner: self.inner.syncer()?,
        }))
    }
}

impl Vfs for Recorder {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.note(Call::Other, || self.mem.create_dir_all(path))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.mem.list(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let inner = self.note(Call::Other, || self.mem.create(path))?;
        Ok(Box::new(RecFile {
            rec: self.clone(),
            inner,
        }))
    }
    fn append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let inner = self.mem.append(path)?;
        Ok(Box::new(RecFile {
            rec: self.clone(),
            inner,
        }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.mem.read(path)
    }
    fn map(&self, path: &Path) -> io::Result<Bytes> {
        self.mem.map(path)
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        self.mem.len(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.note(Call::Sync, || self.mem.truncate(path, len))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.note(Call::Other, || self.mem.rename(from, to))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.note(Call::Other, || self.mem.remove_file(path))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.note(Call::Sync, || self.mem.sync_dir(dir))
    }
    fn exists(&self, path: &Path) -> bool {
        self.mem.exists(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        self.mem.lock(path)
    }
}

struct Outcome {
    acked: Model,
    with_inflight: Model,
    /// The states a crash may leave besides those two: under `SyncPolicy::Never`, the
    /// acknowledged state after each operation since the last durable point.
    since_durable: Vec<Model>,
    /// Newest timestamp of any acknowledged or in-flight batch (retention's reference).
    newest_t: i64,
    vfs: MemVfs,
    crashed: bool,
    rejected: usize,
}

fn execute(cfg: &Config, fail_from: Option<u64>, log: Option<&CallLog>) -> Outcome {
    let mem = MemVfs::new();
    let rec = Recorder {
        mem: mem.clone(),
        log: log.cloned().unwrap_or_default(),
    };
    let db = open(Arc::new(rec), cfg).expect("open a new database");
    if let Some(k) = fail_from {
        mem.fail_at(k, FaultKind::Io);
    }
    let mut acked = Model::new();
    let mut newest_t = i64::MIN;
    let mut rejected = 0;
    let mut since_durable = vec![Model::new()];
    for op in &cfg.ops {
        let mut with = acked.clone();
        apply(&mut with, op);
        let op_newest = match op {
            Op::Batch(b) => b.iter().map(|x| x.1).max().unwrap_or(i64::MIN),
            _ => i64::MIN,
        };
        match run(&db, op) {
            Ok(()) => {
                acked = with;
                newest_t = newest_t.max(op_newest);
                if cfg.sync_never {
                    if matches!(op, Op::Batch(_)) {
                        since_durable.push(acked.clone());
                    } else {
                        // Flush, compaction and deletion sync the log.
                        since_durable = vec![acked.clone()];
                    }
                }
            }
            Err(Error::Rejected(_)) => rejected += 1,
            Err(e) => {
                assert!(fail_from.is_some(), "error without an injected fault: {e}");
                // Power loss. The fault is sticky (every later call fails), so dropping the
                // handle changes nothing durable: its final sync fails like any call after
                // the crash point. Dropping rather than leaking it also stops the
                // `SyncPolicy::Interval` thread, which a leaked handle would keep syncing
                // (and failing) every half millisecond for the rest of the campaign.
                drop(db);
                return Outcome {
                    acked,
                    with_inflight: with,
                    since_durable: if cfg.sync_never {
                        since_durable
                    } else {
                        Vec::new()
                    },
                    newest_t: newest_t.max(op_newest),
                    vfs: mem,
                    crashed: true,
                    rejected,
                };
            }
        }
    }
    drop(db);
    Outcome {
        with_inflight: acked.clone(),
        since_durable: Vec::new(), // closing syncs
        acked,
        newest_t,
        vfs: mem,
        crashed: false,
        rejected,
    }
}

fn nonempty(mut m: Model) -> Model {
    m.retain(|_, s| !s.is_empty());
    m
}

/// Splits a model at `cutoff`: (samples at or after it, samples before it).
fn split(m: &Model, cutoff: i64) -> (Model, Model) {
    let mut hi = Model::new();
    let mut lo = Model::new();
    for (s, x) in m {
        for (t, v) in x {
            if *t >= cutoff {
                hi.entry(*s).or_default().insert(*t, *v);
            } else {
                lo.entry(*s).or_default().insert(*t, *v);
            }
        }
    }
    (hi, lo)
}

/// Checks the reopened state against the acknowledged state (or that plus the op in
/// flight). Retention may have dropped whole blocks older than its cutoff, so below the
/// cutoff samples may be missing, but any sample present must be one the model holds.
/// On success, tells which state matched: 0 the acknowledged one, 1 that plus the operation
/// in flight, `k >= 2` the `k - 2`-th state since the last durable point.
fn verify(got: &Model, out: &Outcome, cfg: &Config) -> Result<usize, String> {
    let cutoff = match cfg.retention_ms {
        Some(r) if out.newest_t != i64::MIN => out.newest_t - r,
        _ => i64::MIN,
    };
    let (got_hi, got_lo) = split(got, cutoff);
    let mut errs = Vec::new();
    let candidates = [&out.acked, &out.with_inflight]
        .into_iter()
        .chain(out.since_durable.iter());
    for (k, want) in candidates.enumerate() {
        let (want_hi, want_lo) = split(want, cutoff);
        if nonempty(want_hi) != got_hi {
            errs.push("recent samples differ".to_string());
            continue;
        }
        let mut extra = Vec::new();
        for (s, x) in &got_lo {
            for (t, v) in x {
                if want_lo.get(s).and_then(|m| m.get(t)) != Some(v) {
                    extra.push((*s, *t, *v));
                }
            }
        }
        if extra.is_empty() {
            return Ok(k);
        }
        errs.push(format!(
            "samples before the retention cutoff {cutoff} not in the model: {extra:?}"
        ));
    }
    Err(format!(
        "{errs:?}\n got {got:?}\n acked {:?}\n in flight {:?}",
        nonempty(out.acked.clone()),
        nonempty(out.with_inflight.clone())
    ))
}

#[derive(Default, Debug)]
struct Stats {
    workloads: u64,
    crash_runs: u64,
    trials: u64,
    torn: u64,
    recovery_crashes: u64,
    acked_samples_checked: u64,
    rejected_batches: u64,
    /// Trials of workloads run with `SyncPolicy::Never`.
    sync_never_trials: u64,
    /// Of those, trials that came back with fewer batches than acknowledged (as allowed).
    sync_never_lost: u64,
    /// Of the `sync_never_trials`, those run with `SyncPolicy::Interval`.
    sync_interval_trials: u64,
}

fn campaign(first_seed: u64, trials: u64) -> Stats {
    let mut st = Stats::default();
    let mut seed = first_seed;
    while st.trials < trials {
        seed += 1;
        let cfg = workload(seed);
        let log: CallLog = Arc::default();
        let full = execute(&cfg, None, Some(&log));
        st.workloads += 1;
        st.rejected_batches += full.rejected as u64;
        // A clean reopen gives everything.
        {
            let db = open(Arc::new(full.vfs.crash_image(None)), &cfg).unwrap();
            let got = read_all(&db).unwrap();
            verify(&got, &full, &cfg).unwrap_or_else(|e| panic!("seed {seed}, no crash: {e}"));
        }
        let log = log.lock().clone();
        let total = full.vfs.ops();
        let syncs: Vec<u64> = log
            .iter()
            .filter(|c| c.1 == Call::Sync)
            .map(|c| c.0)
            .collect();
        let mut r = Rng(seed ^ 0xC0FF_EE00);
        for _ in 0..4 {
            // A random call, a sync (data written but not yet durable), or the call right
            // after a sync.
            let k = match r.below(3) {
                0 if !syncs.is_empty() => syncs[r.below(syncs.len() as u64) as usize],
                1 if !syncs.is_empty() => syncs[r.below(syncs.len() as u64) as usize] + 1,
                _ => r.below(total),
            };
            let out = execute(&cfg, Some(k), None);
            if !out.crashed {
                continue;
            }
            st.crash_runs += 1;
            for torn in [None, Some(r.next())] {
                st.trials += 1;
                st.sync_never_trials += u64::from(cfg.sync_never);
                st.sync_interval_trials += u64::from(cfg.sync_never && cfg.interval);
                st.torn += u64::from(torn.is_some());
                let mut image = out.vfs.crash_image(torn);
                image.clear_fault();
                let ctx = format!("seed {seed}, crash at call {k} of {total}, torn {torn:?}");
                // Sometimes crash again during recovery, then recover from that.
                if r.chance(25) {
                    let before = image.ops();
                    image.fail_at(before + r.below(8), FaultKind::Io);
                    let res = open(Arc::new(image.clone()), &cfg);
                    if res.is_err() {
                        st.recovery_crashes += 1;
                        image = image.crash_image(torn.map(|t| t ^ 1));
                    } else {
                        drop(res);
                        image = image.crash_image(None);
                    }
                    image.clear_fault();
                }
                let db = open(Arc::new(image.clone()), &cfg)
                    .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
                let got = read_all(&db).unwrap_or_else(|e| panic!("{ctx}: select failed: {e}"));
                let matched = verify(&got, &out, &cfg).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                // An older state than the acknowledged one: batches lost as `Never` allows.
                if matched >= 2 && out.since_durable[matched - 2] != out.acked {
                    st.sync_never_lost += 1;
                }
                st.acked_samples_checked += out.acked.values().map(|s| s.len() as u64).sum::<u64>();
                // The recovered database keeps working: one more batch, flush, reopen.
                let mut app = db.appender();
                let r9 = app.series_ref(&labels(9)).unwrap();
                app.add(r9, 1 << 40, 1.0);
                app.commit()
                    .unwrap_or_else(|e| panic!("{ctx}: commit after recovery: {e}"));
                db.flush()
                    .unwrap_or_else(|e| panic!("{ctx}: flush after recovery: {e}"));
                drop(db);
                let db = open(Arc::new(image.crash_image(None)), &cfg)
                    .unwrap_or_else(|e| panic!("{ctx}: second reopen failed: {e}"));
                let mut again = read_all(&db).unwrap();
                assert_eq!(again.remove(&9).map(|s| s.len()), Some(1), "{ctx}");
                if cfg.retention_ms.is_none() {
                    assert_eq!(
                        nonempty(again),
                        nonempty(got),
                        "{ctx}: flush changed the data"
                    );
                }
            }
        }
    }
    st
}

#[test]
fn random_workloads_survive_random_crashes() {
    let trials: u64 = std::env::var("TSQ_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("TSQ_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let started = std::time::Instant::now();
    let st = campaign(seed, trials);
    eprintln!(
        "crash_random: {st:?} in {:.1} s (first seed {seed})",
        started.elapsed().as_secs_f64()
    );
    assert!(st.trials >= trials);
    assert!(st.torn > 0 && st.crash_runs > 0);
    assert!(st.sync_never_trials > 0 && st.sync_never_trials < st.trials);
    assert!(st.sync_interval_trials > 0 && st.sync_interval_trials < st.sync_never_trials);
    assert!(
        st.sync_never_lost > 0,
        "no Never trial lost a batch: the case is not exercised"
    );
}

#[test]
fn recorder_sees_syncs() {
    // The campaign's sync-point targeting relies on the recorder's log matching `ops()`.
    let cfg = workload(1);
    let log: CallLog = Arc::default();
    let out = execute(&cfg, None, Some(&log));
    let log = log.lock();
    assert!(log.iter().any(|c| c.1 == Call::Sync));
    assert!(log.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(log.last().unwrap().0 < out.vfs.ops());
    let _: BTreeSet<u64> = log.iter().map(|c| c.0).collect();
}

/// Regression (found by the `engine_model` fuzz target): with group commit, a batch whose
/// WAL sync failed was still applied, so the series it declared counted as logged; the next
/// batch went to a fresh segment without declaring them, and after a power loss (the failed
/// record never durable) replay dropped that acknowledged batch's samples.
#[test]
fn acked_batch_after_a_failed_wal_sync_survives_power_loss() {
    for k in 0..8 {
        let vfs = MemVfs::new();
        let cfg = workload(1);
        let db = open(Arc::new(vfs.clone()), &cfg).unwrap();
        vfs.fail_at(vfs.ops() + k, FaultKind::Io);
        let mut app = db.appender();
        let r0 = app.series_ref(&labels(0)).unwrap();
        let r1 = app.series_ref(&labels(1)).unwrap();
        app.add(r0, 1_000, 1.0);
        app.add(r1, 1_000, 1.0);
        let first = app.commit();
        vfs.clear_fault();
        app.add(r0, 2_000, 2.0);
        app.commit()
            .unwrap_or_else(|e| panic!("fault at {k}: commit after the fault: {e}"));
        let image = vfs.crash_image(None); // power loss, the handle still open
        drop(db);
        let db = open(Arc::new(image), &cfg).unwrap();
        let got = read_all(&db).unwrap();
        assert_eq!(
            got.get(&0).and_then(|s| s.get(&2_000)),
            Some(&2.0f64.to_bits()),
            "fault at {k} (first commit {first:?}): acknowledged sample lost; got {got:?}"
        );
    }
}

/// Regression (found by this campaign, seed 160): with group commit, a commit that
/// triggered a flush wrote its batch to blocks before its WAL record was synced. A crash
/// after the manifest swap and before the old segments were removed replayed the durable
/// WAL (without that record) over the blocks, the head winning on equal timestamps: the
/// batch's overwrite of an existing sample was undone while its new samples stayed.
#[test]
fn flush_never_puts_in_blocks_data_newer_than_the_durable_wal() {
    let cfg = Config {
        chunk_samples: 4,
        flush_samples: 3,
        retention_ms: None,
        sync_never: false,
        interval: false,
        ops: Vec::new(),
    };
    let mut crashes = 0;
    for k in 0..60 {
        let vfs = MemVfs::new();
        let db = open(Arc::new(vfs.clone()), &cfg).unwrap();
        let mut app = db.appender();
        let r = app.series_ref(&labels(0)).unwrap();
        app.add(r, 1_000, 1.0);
        app.commit().unwrap();
        vfs.fail_at(vfs.ops() + k, FaultKind::Io);
        // Overwrites t=1000 and adds two samples: the head reaches 3 samples and flushes.
        app.add(r, 1_000, 2.0);
        app.add(r, 2_000, 2.0);
        app.add(r, 3_000, 2.0);
        if app.commit().is_ok() {
            continue;
        }
        crashes += 1;
        let image = vfs.crash_image(None);
        std::mem::forget(db);
        let db = open(Arc::new(image), &cfg).unwrap();
        let got = read_all(&db).unwrap().remove(&0).unwrap_or_default();
        let before: Vec<(i64, f64)> = vec![(1_000, 1.0)];
        let after: Vec<(i64, f64)> = vec![(1_000, 2.0), (2_000, 2.0), (3_000, 2.0)];
        let got: Vec<(i64, f64)> = got
            .into_iter()
            .map(|(t, v)| (t, f64::from_bits(v)))
            .collect();
        assert!(
            got == before || got == after,
            "crash at call {k} of the flushing commit: half a batch: {got:?}"
        );
    }
    assert!(crashes > 5, "only {crashes} crash points");
}
