//! Corruption campaign (docs/RELIABILITY.md): random bit flips and truncations in every
//! artefact of a database — WAL segments, blocks (chunks, index, footer), the manifest — and
//! for each, the database must either refuse to open with an error, or open and report the
//! damage (recovery notices, `check()`, or a query error); and whatever data it does return
//! must be exactly what was written. Never a wrong number.
//!
//! `TSQ_CORRUPTION_TRIALS=N` runs N trials per artefact kind (default 300, CI); the figures
//! in RELIABILITY.md come from a long run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tsq_storage::{wal, Db, Labels, MatchOp, Matcher, MemVfs, Vfs};

type Model = BTreeMap<(String, i64), u64>;

fn open(vfs: &MemVfs) -> tsq_storage::Result<Db> {
    Db::builder().vfs(Arc::new(vfs.clone())).open("/db")
}

/// A database with two blocks' worth of flushed data and more in the WAL; returns the
/// durable image and the model of every sample written.
fn base() -> (MemVfs, Model) {
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    let mut model = Model::new();
    let mut write = |db: &Db, from: i64, to: i64| {
        let mut app = db.appender();
        for s in 0..8 {
            let name = format!("m{s}");
            let r = app
                .series_ref(&Labels::new([("__name__", name.as_str()), ("job", "j")]))
                .unwrap();
            for t in (from..to).step_by(15_000) {
                // Decimal-looking values, a counter-like ramp and a few irregular ones.
                let v = match s % 3 {
                    0 => (t / 15_000) as f64 * 1.5,
                    1 => ((t / 15_000) % 17) as f64 / 10.0,
                    _ => ((t as f64) * 0.37).sin(),
                };
                app.add(r, t, v);
                model.insert((name.clone(), t), v.to_bits());
            }
        }
        app.commit().unwrap();
    };
    // A series that is never written: the first process numbers the others from 1, the
    // second (which only knows the series its WAL declared) from 0, so the two WAL epochs
    // below name the same series by different ids.
    db.series_ref(&Labels::new([("__name__", "unused"), ("job", "j")]))
        .unwrap();
    write(&db, 0, 3_600_000);
    write(&db, 7_200_000, 9_000_000);
    db.flush().unwrap();
    write(&db, 9_000_000, 9_600_000);
    drop(db);
    let vfs = vfs.crash_image(None);
    let db = open(&vfs).unwrap();
    write(&db, 9_600_000, 10_200_000);
    drop(db);
    (vfs.crash_image(None), model)
}

fn files(vfs: &MemVfs, dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = vfs
        .list(Path::new(dir))
        .unwrap_or_default()
        .into_iter()
        .map(|n| Path::new(dir).join(n))
        .collect();
    v.sort();
    v
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Default, Debug)]
struct Tally {
    trials: u64,
    refused: u64,
    reported: u64,
    query_error: u64,
    /// Damage nobody reported, with the data still exactly right.
    silent_harmless: u64,
    /// A WAL segment cut exactly at a record boundary: it reads as a clean, shorter log, so
    /// the records after the cut are lost without a report (no WAL format can tell, short of
    /// recording its length elsewhere). Counted, not hidden.
    silent_loss_at_record_boundary: u64,
}

/// What the damaged database says; panics on any wrong sample.
fn judge(vfs: &MemVfs, model: &Model, what: &str, boundary_cut: bool, t: &mut Tally) {
    t.trials += 1;
    let db = match open(vfs) {
        Err(_) => {
            t.refused += 1;
            return;
        }
        Ok(db) => db,
    };
    let reported = !db.recovery_notices().is_empty() || !db.check().is_empty();
    let all = [Matcher::new(MatchOp::Regex, "__name__", ".+", true).unwrap()];
    match db.select(&all, i64::MIN, i64::MAX) {
        Err(_) => t.query_error += 1,
        Ok(series) => {
            let mut seen = 0usize;
            for s in &series {
                let name = s.labels.metric_name().unwrap_or_default().to_string();
                for (&ts, &v) in s.timestamps.iter().zip(&s.values) {
                    match model.get(&(name.clone(), ts)) {
                        Some(&bits) if bits == v.to_bits() => seen += 1,
                        other => panic!(
                            "{what}: wrong data returned: {name} @ {ts} = {v} (written: {:?})",
                            other.map(|b| f64::from_bits(*b))
                        ),
                    }
                }
            }
            if reported {
                t.reported += 1;
            } else if seen == model.len() {
                t.silent_harmless += 1;
            } else if boundary_cut {
                t.silent_loss_at_record_boundary += 1;
            } else {
                panic!(
                    "{what}: {} of {} samples gone and nothing reported",
                    model.len() - seen,
                    model.len()
                );
            }
        }
    }
}

#[test]
fn every_damage_is_refused_or_reported_and_never_returns_wrong_data() {
    let trials: u64 = std::env::var("TSQ_CORRUPTION_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let (image, model) = base();
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let kinds: Vec<(&str, Vec<PathBuf>)> = vec![
        ("wal", files(&image, "/db/wal")),
        ("block", files(&image, "/db/blocks")),
        ("manifest", vec![PathBuf::from("/db/MANIFEST")]),
    ];
    let mut report = Vec::new();
    for (kind, paths) in &kinds {
        assert!(!paths.is_empty(), "no {kind} files in the base image");
        for truncate in [false, true] {
            let mut tally = Tally::default();
            for _ in 0..trials {
                let vfs = image.crash_image(None);
                let p = &paths[rng.below(paths.len() as u64) as usize];
                let len = vfs.len(p).unwrap();
                let mut boundary_cut = false;
                let what = if truncate {
                    let at = rng.below(len);
                    if *kind == "wal" {
                        let bytes = vfs.read(p).unwrap();
                        let mut notices = Vec::new();
                        let scan =
                            wal::scan_segment(p, &bytes[..at as usize], &mut notices, |_| Ok(()))
                                .unwrap();
                        boundary_cut = !scan.torn_tail && notices.is_empty();
                    }
                    vfs.truncate(p, at).unwrap();
                    format!("{} truncated to {at} of {len}", p.display())
                } else {
                    let bit = rng.below(len * 8);
                    vfs.flip_bit(p, bit).unwrap();
                    format!("{} bit {bit} of {len} bytes flipped", p.display())
                };
                judge(&vfs, &model, &what, boundary_cut, &mut tally);
            }
            // Every bit of every artefact is under a checksum: a flip is always noticed.
            if !truncate {
                assert_eq!(tally.silent_harmless, 0, "{kind} flips: {tally:?}");
            }
            report.push(format!(
                "{kind:<8} {:<9} {:>6} trials: {:>6} refused to open, {:>6} reported, {:>5} query errors, {:>5} silent (data intact), {:>5} silent loss (WAL cut at a record boundary)",
                if truncate { "truncate" } else { "bit flip" },
                tally.trials,
                tally.refused,
                tally.reported,
                tally.query_error,
                tally.silent_harmless,
                tally.silent_loss_at_record_boundary
            ));
        }
    }
    for r in &report {
        eprintln!("{r}");
    }
}
