//! Property test: random appends (in and out of order, duplicates), deletions, flushes,
//! compactions and reopens against a plain in-memory model. Every select must equal the
//! model's answer, bit for bit.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use tsq_storage::{Db, Labels, Matcher, MemVfs};

#[derive(Debug, Clone)]
enum Op {
    Append {
        series: u8,
        dt: i64,
        value: u32,
        n: u8,
    },
    Delete {
        series: u8,
        from: i64,
        len: i64,
    },
    Flush,
    Compact,
    Reopen,
    Query {
        from: i64,
        len: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, -3_000i64..20_000, any::<u32>(), 1u8..20).prop_map(|(series, dt, value, n)| Op::Append { series, dt, value, n }),
        1 => (0u8..4, 0i64..200_000, 0i64..50_000).prop_map(|(series, from, len)| Op::Delete { series, from, len }),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        2 => (0i64..200_000, 0i64..200_000).prop_map(|(from, len)| Op::Query { from, len }),
    ]
}

fn labels(i: u8) -> Labels {
    Labels::new([("__name__", "m".to_string()), ("s", i.to_string())])
}

fn open(vfs: &MemVfs) -> Db {
    Db::builder()
        .vfs(Arc::new(vfs.clone()))
        .block_range_ms(10_000)
        .chunk_samples(8)
        .ooo_window_ms(5_000)
        .open("/m")
        .unwrap()
}

fn check(db: &Db, model: &BTreeMap<u8, BTreeMap<i64, u64>>, from: i64, to: i64) {
    let got = db
        .select(&[Matcher::equal("__name__", "m")], from, to)
        .unwrap();
    let mut want: Vec<(Labels, Vec<(i64, u64)>)> = Vec::new();
    for (s, samples) in model {
        let v: Vec<(i64, u64)> = samples.range(from..=to).map(|(t, v)| (*t, *v)).collect();
        if !v.is_empty() {
            want.push((labels(*s), v));
        }
    }
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<(Labels, Vec<(i64, u64)>)> = got
        .into_iter()
        .map(|s| {
            (
                s.labels,
                s.timestamps
                    .into_iter()
                    .zip(s.values.into_iter().map(f64::to_bits))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(got, want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut vfs = MemVfs::new();
        let mut db = open(&vfs);
        let mut model: BTreeMap<u8, BTreeMap<i64, u64>> = BTreeMap::new();
        let mut newest: BTreeMap<u8, i64> = BTreeMap::new();
        let mut clock = 0i64;
        for op in ops {
            match op {
                Op::Append { series, dt, value, n } => {
                    let mut app = db.appender();
                    let r = app.series_ref(&labels(series)).unwrap();
                    let mut batch = Vec::new();
                    for k in 0..n as i64 {
                        let t = (clock + dt + k * 1_000).max(0);
                        let v = f64::from_bits(u64::from(value).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k as u64);
                        app.add(r, t, v);
                        batch.push((t, v));
                    }
                    clock += 2_000;
                    let newest_before = newest.get(&series).copied();
                    match app.commit() {
                        Ok(_) => {
                            let e = model.entry(series).or_default();
                            for (t, v) in batch {
                                e.insert(t, v.to_bits());
                                let n = newest.entry(series).or_insert(t);
                                *n = (*n).max(t);
                            }
                        }
                        Err(e) => {
                            // Only a write older than the window may be refused, and then
                            // nothing of the batch is written (checked by the next query).
                            prop_assert!(matches!(e, tsq_storage::Error::Rejected(_)), "{e}");
                            let too_old = newest_before.is_some_and(|m| batch.iter().any(|&(t, _)| t < m - 5_000));
                            prop_assert!(too_old, "refused a write inside the window: {e}");
                        }
                    }
                }
                Op::Delete { series, from, len } => {
                    db.delete(&[Matcher::equal("s", series.to_string())], from, from + len).unwrap();
                    if let Some(s) = model.get_mut(&series) {
                        s.retain(|t, _| *t < from || *t > from + len);
                    }
                }
                Op::Flush => db.flush().unwrap(),
                Op::Compact => db.compact().unwrap(),
                Op::Reopen => {
                    drop(db);
                    vfs = vfs.crash_image(None);
                    db = open(&vfs);
                }
                Op::Query { from, len } => check(&db, &model, from, from + len),
            }
        }
        check(&db, &model, i64::MIN, i64::MAX);
    }
}
