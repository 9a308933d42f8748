//! Fuzz target: random operations against the engine on `MemVfs` and against a `BTreeMap`
//! model, with injected faults (ENOSPC, EIO) and crash-and-reopen.
//!
//! The input is a program of byte-coded ops: batches (in and out of order, duplicates),
//! deletions, flushes, compactions, reopens (clean or after a power loss), and faults that
//! make the next few file-system calls fail. Oracles:
//! - an operation that succeeds is visible exactly as the model says;
//! - a failed deletion is invisible to the running process; a failed batch is invisible,
//!   or (its WAL write done, its group-commit sync failed) visible whole: never in part;
//! - after a reopen, every acknowledged sample is there, except that a failed batch or
//!   deletion may have become durable whole (its WAL record was written before the failing
//!   sync); nothing else may appear;
//! - no operation panics.
//!
//! `cargo fuzz run engine_model` (from fuzz/).

#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tsq_storage::{Db, Error, FaultKind, Labels, Matcher, MemVfs};

type Model = BTreeMap<u8, BTreeMap<i64, u64>>;

const WINDOW: i64 = 5_000;

fn labels(s: u8) -> Labels {
    Labels::new([("__name__", "m".to_string()), ("s", s.to_string())])
}

fn open(vfs: &MemVfs) -> Db {
    Db::builder()
        .vfs(Arc::new(vfs.clone()))
        .block_range_ms(10_000)
        .chunk_samples(4)
        .ooo_window_ms(WINDOW)
        .wal_segment_bytes(4096)
        .open("/db")
        .expect("reopen without faults")
}

fn read(db: &Db) -> Model {
    let mut m = Model::new();
    for s in db
        .select(&[Matcher::equal("__name__", "m")], i64::MIN, i64::MAX)
        .expect("select")
    {
        let id: u8 = s.labels.get("s").unwrap().parse().unwrap();
        let e = m.entry(id).or_default();
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            assert!(e.insert(*t, v.to_bits()).is_none(), "duplicate timestamp");
        }
    }
    m.retain(|_, x| !x.is_empty());
    m
}

fn norm(mut m: Model) -> Model {
    m.retain(|_, x| !x.is_empty());
    m
}

/// Something that failed but may have become durable whole.
#[derive(Clone, Debug)]
enum Maybe {
    Batch(Vec<(u8, i64, u64)>),
    Delete(u8, i64, i64),
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
}

/// After a reopen: the acknowledged model, possibly with some failed operations applied,
/// checked key by key.
fn check_reopened(got: &Model, acked: &Model, maybes: &[Maybe]) {
    let maybe_value = |s: u8, t: i64, v: u64| {
        maybes
            .iter()
            .any(|m| matches!(m, Maybe::Batch(b) if b.iter().any(|x| *x == (s, t, v))))
    };
    let maybe_deleted = |s: u8, t: i64| {
        maybes
            .iter()
            .any(|m| matches!(m, Maybe::Delete(x, a, b) if *x == s && *a <= t && t <= *b))
    };
    for (s, x) in acked {
        for (t, v) in x {
            match got.get(s).and_then(|g| g.get(t)) {
                Some(g) if g == v || maybe_value(*s, *t, *g) => {}
                None if maybe_deleted(*s, *t) => {}
                other => {
                    panic!("acknowledged s{s}@{t}={v:#x} reopened as {other:?}; maybes {maybes:?}")
                }
            }
        }
    }
    for (s, x) in got {
        for (t, v) in x {
            let known = acked.get(s).and_then(|a| a.get(t)) == Some(v);
            assert!(
                known || maybe_value(*s, *t, *v),
                "s{s}@{t}={v:#x} appeared from nowhere"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let mut vfs = MemVfs::new();
    let mut db = open(&vfs);
    // What must survive a crash (acknowledged), and what the process sees (acknowledged
    // plus failed batches that stayed visible).
    let mut model = Model::new();
    let mut live = Model::new();
    let mut maybes: Vec<Maybe> = Vec::new();
    let mut clock = 0i64;
    let mut steps = 0;
    while let Some(code) = input.u8() {
        steps += 1;
        if steps > 64 {
            break;
        }
        match code % 16 {
            0..=6 => {
                let n = 1 + (input.u8().unwrap_or(0) % 8) as usize;
                let mut batch = Vec::new();
                for _ in 0..n {
                    let s = input.u8().unwrap_or(0) % 4;
                    let dt = i64::from(input.u16().unwrap_or(0)) - 8_000;
                    let v = u64::from(input.u16().unwrap_or(0)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    batch.push((s, (clock + dt).max(0), v));
                }
                clock += 1_000;
                let mut app = db.appender();
                for &(s, t, v) in &batch {
                    let r = app.series_ref(&labels(s)).expect("series_ref does no I/O");
                    app.add(r, t, f64::from_bits(v));
                }
                let before = read(&db);
                match app.commit() {
                    Ok(_) => {
                        for &(s, t, v) in &batch {
                            model.entry(s).or_default().insert(t, v);
                            live.entry(s).or_default().insert(t, v);
                        }
                    }
                    Err(Error::Rejected(_)) => {}
                    Err(_) => {
                        let now = read(&db);
                        if now != before {
                            for &(s, t, v) in &batch {
                                live.entry(s).or_default().insert(t, v);
                            }
                            assert_eq!(
                                now,
                                norm(live.clone()),
                                "a failed batch is visible in part"
                            );
                        }
                        maybes.push(Maybe::Batch(batch));
                    }
                }
            }
            7 => {
                let s = input.u8().unwrap_or(0) % 4;
                let from = clock - i64::from(input.u16().unwrap_or(0));
                let to = from + i64::from(input.u8().unwrap_or(0)) * 100;
                let before = read(&db);
                match db.delete(&[Matcher::equal("s", s.to_string())], from, to) {
                    Ok(()) => {
                        for m in [&mut model, &mut live] {
                            if let Some(x) = m.get_mut(&s) {
                                x.retain(|t, _| *t < from || *t > to);
                            }
                        }
                    }
                    Err(_) => {
                        assert_eq!(read(&db), before, "a failed deletion is visible");
                        maybes.push(Maybe::Delete(s, from, to));
                    }
                }
            }
            8 | 9 => {
                // May fail under a fault; the data must not change either way.
                let _ = if code % 16 == 8 {
                    db.flush()
                } else {
                    db.compact()
                };
            }
            10 | 11 => {
                // Fault: fail calls from a few calls ahead on, until cleared.
                let ahead = u64::from(input.u8().unwrap_or(0) % 16);
                let kind = if code % 2 == 0 {
                    FaultKind::NoSpace
                } else {
                    FaultKind::Io
                };
                vfs.fail_at(vfs.ops() + ahead, kind);
            }
            12 => vfs.clear_fault(),
            13 | 14 => {
                // Reopen: clean (drop, everything written is there) or after power loss.
                let power_loss = code % 16 == 14;
                vfs.clear_fault();
                if power_loss {
                    // The image is taken before the handle is dropped (dropping syncs).
                    let image = vfs.crash_image(None);
                    drop(db);
                    vfs = image;
                } else {
                    drop(db);
                    vfs = vfs.crash_image(None);
                }
                db = open(&vfs);
                let got = read(&db);
                check_reopened(&got, &norm(model.clone()), &maybes);
                model = got.clone();
                live = got;
                maybes.clear();
            }
            _ => vfs.clear_fault(),
        }
        // The live state is the model after every step.
        assert_eq!(
            read(&db),
            norm(live.clone()),
            "live state differs from the model"
        );
    }
    vfs.clear_fault();
    assert_eq!(read(&db), norm(live.clone()));
});
