//! `Db::select_lazy`: series read one at a time into reused buffers give exactly what
//! `select` gives and what was written, across blocks that overlap, the head, deletions
//! and ranges that cut chunks; a damaged chunk fails only the series that reads it.

use std::collections::BTreeMap;
use std::sync::Arc;

use tsq_storage::{Db, Labels, MatchOp, Matcher, MemVfs};

type Model = BTreeMap<String, BTreeMap<i64, f64>>;

fn name(i: usize) -> String {
    format!("m{i}")
}

fn labels(i: usize) -> Labels {
    Labels::new([("__name__", name(i).as_str()), ("job", "x")])
}

/// Writes `(series, t, v)` in one batch, into the database and the model.
fn write(db: &Db, model: &mut Model, samples: &[(usize, i64, f64)]) {
    let mut app = db.appender();
    for &(i, t, v) in samples {
        app.add_labels(&labels(i), t, v).unwrap();
        model.entry(name(i)).or_default().insert(t, v);
    }
    app.commit().unwrap();
}

/// A database whose series are spread over two blocks that overlap in time (the second
/// written out of order into the first's range), a deletion, and the head; and its model.
fn build(vfs: &MemVfs) -> (Db, Model) {
    let db = Db::builder()
        .vfs(Arc::new(vfs.clone()))
        .block_range_ms(10_000)
        .chunk_samples(16)
        .open("/db")
        .unwrap();
    let mut model = Model::new();
    // Block 1: five series, 0..6 s every 100 ms (several chunks each).
    let first: Vec<_> = (0..5)
        .flat_map(|i| (0..60).map(move |k| (i, k * 100, (i * 1000 + k as usize) as f64)))
        .collect();
    write(&db, &mut model, &first);
    db.flush().unwrap();
    // Block 2: samples between and on top of block 1's for series 1 and 3 (later wins),
    // and a series of its own.
    let second: Vec<_> = [1usize, 3]
        .iter()
        .flat_map(|&i| (0..40).map(move |k| (i, 50 + k * 100, -(k as f64))))
        .chain([(1, 1_000, 0.25), (3, 2_000, -0.5)])
        .chain((0..30).map(|k| (5, k * 200, k as f64 * 1.5)))
        .collect();
    write(&db, &mut model, &second);
    db.flush().unwrap();
    // A deletion that cuts series 0 and 1 in the middle of chunks.
    let m01 = Matcher::new(MatchOp::Regex, "__name__", "m0|m1", true).unwrap();
    db.delete(&[m01], 1_230, 2_770).unwrap();
    for i in 0..2 {
        let m = model.get_mut(&name(i)).unwrap();
        m.retain(|&t, _| !(1_230..=2_770).contains(&t));
    }
    // The head: series 2 continues, series 6 exists only here.
    let third: Vec<_> = (0..20)
        .map(|k| (2, 6_000 + k * 100, k as f64))
        .chain((0..5).map(|k| (6, 5_000 + k * 10, 7.0)))
        .collect();
    write(&db, &mut model, &third);
    assert!(db.blocks().len() >= 2, "two blocks: {}", db.blocks().len());
    (db, model)
}

#[test]
fn lazy_reads_into_reused_buffers_equal_select_and_the_model() {
    let vfs = MemVfs::new();
    let (db, model) = build(&vfs);
    let all = [Matcher::equal("job", "x")];
    // Ranges cutting chunks, blocks and the deletion at various places.
    for (mint, maxt) in [
        (i64::MIN, i64::MAX),
        (0, 0),
        (150, 1_250),
        (1_240, 2_760),
        (2_770, 5_020),
        (5_900, 7_000),
        (10_000, 20_000),
    ] {
        let eager = db.select(&all, mint, maxt).unwrap();
        let lazy = db.select_lazy(&all, mint, maxt).unwrap();
        // Buffers reused from one series to the next, and dirty to start with.
        let (mut ts, mut vs) = (vec![-1i64; 500], vec![f64::NAN; 3]);
        let mut got = Vec::new();
        for i in 0..lazy.len() {
            lazy.read(i, &mut ts, &mut vs).unwrap();
            assert_eq!(ts.len(), vs.len());
            assert!(ts.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
            assert!(
                lazy.samples_hint(i) >= ts.len(),
                "the hint is an upper bound"
            );
            // The last sample alone, from the chunk statistics where the series allows.
            let (mut lt, mut lv) = (vec![7i64; 3], Vec::new());
            lazy.read_last(i, &mut lt, &mut lv).unwrap();
            assert_eq!(lt.is_empty(), ts.is_empty());
            if let (Some(a), Some(b)) = (lt.last(), ts.last()) {
                assert_eq!(a, b);
                assert_eq!(lv.last().unwrap().to_bits(), vs.last().unwrap().to_bits());
                assert!(ts.ends_with(&lt), "a suffix");
            }
            if !ts.is_empty() {
                got.push((lazy.labels(i).clone(), ts.clone(), vs.clone()));
            }
        }
        let eager: Vec<_> = eager
            .into_iter()
            .map(|s| (s.labels, s.timestamps, s.values))
            .collect();
        assert_eq!(got.len(), eager.len(), "[{mint}, {maxt}]");
        for (g, e) in got.iter().zip(&eager) {
            assert_eq!(g.0, e.0);
            assert_eq!(g.1, e.1, "{} [{mint}, {maxt}]", g.0);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&g.2), bits(&e.2));
        }
        let want: Vec<(String, Vec<(i64, f64)>)> = model
            .iter()
            .map(|(n, m)| {
                let pts: Vec<_> = m.range(mint..=maxt).map(|(&t, &v)| (t, v)).collect();
                (n.clone(), pts)
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        let have: Vec<(String, Vec<(i64, f64)>)> = got
            .iter()
            .map(|(l, ts, vs)| {
                let pts = ts.iter().copied().zip(vs.iter().copied()).collect();
                (l.get("__name__").unwrap().to_string(), pts)
            })
            .collect();
        assert_eq!(have, want, "[{mint}, {maxt}]");
    }
}

#[test]
fn a_selection_is_a_snapshot() {
    let vfs = MemVfs::new();
    let (db, _) = build(&vfs);
    let all = [Matcher::equal("job", "x")];
    let before = db.select(&all, i64::MIN, i64::MAX).unwrap();
    let lazy = db.select_lazy(&all, i64::MIN, i64::MAX).unwrap();
    // Writes, a flush, a deletion and a compaction after the selection was made.
    let mut app = db.appender();
    app.add_labels(&labels(2), 9_000, 1.0).unwrap();
    app.commit().unwrap();
    db.flush().unwrap();
    db.delete(&[Matcher::equal("__name__", "m4")], i64::MIN, i64::MAX)
        .unwrap();
    db.compact().unwrap();
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    let mut after = Vec::new();
    for i in 0..lazy.len() {
        lazy.read(i, &mut ts, &mut vs).unwrap();
        if !ts.is_empty() {
            after.push((lazy.labels(i).clone(), ts.clone(), vs.clone()));
        }
    }
    let before: Vec<_> = before
        .into_iter()
        .map(|s| (s.labels, s.timestamps, s.values))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn a_damaged_chunk_fails_the_series_that_reads_it_only() {
    let vfs = MemVfs::new();
    let db = Db::builder()
        .vfs(Arc::new(vfs.clone()))
        .open("/db")
        .unwrap();
    let mut model = Model::new();
    let samples: Vec<_> = (0..3)
        .flat_map(|i| (0..50).map(move |k| (i, k * 1000, k as f64 + i as f64)))
        .collect();
    write(&db, &mut model, &samples);
    db.flush().unwrap();
    let block = db.blocks()[0].clone();
    let series = block.all_series().unwrap();
    let victim = series[1].chunks[0];
    let path = block.path().to_path_buf();
    drop(series);
    drop(block);
    // Flip a bit in the middle of series 1's first chunk.
    let byte = victim.offset + u64::from(victim.len) / 2;
    vfs.flip_bit(&path, byte * 8 + 6).unwrap();
    drop(db);
    let db2 = Db::builder()
        .vfs(Arc::new(vfs.clone()))
        .read_only(true)
        .open("/db")
        .unwrap();
    let lazy = db2
        .select_lazy(&[Matcher::equal("job", "x")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(lazy.len(), 3);
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let r = lazy.read(i, &mut ts, &mut vs);
        if i == 1 {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(ts.is_empty() && vs.is_empty(), "no data from a failed read");
        } else {
            r.unwrap();
            let want: Vec<i64> = model[&name(i)].keys().copied().collect();
            assert_eq!(ts, want);
        }
    }
}

#[test]
fn summarised_reads_leave_whole_chunks_undecoded_only_where_that_is_exact() {
    let vfs = MemVfs::new();
    let (db, model) = build(&vfs);
    let (mint, maxt) = (150, 5_030);
    let lazy = db
        .select_lazy(&[Matcher::equal("job", "x")], mint, maxt)
        .unwrap();
    let (mut ts, mut vs, mut sums) = (Vec::new(), Vec::new(), Vec::new());
    let mut summarised_series = 0;
    for i in 0..lazy.len() {
        let name = lazy.labels(i).get("__name__").unwrap().to_string();
        let want: Vec<(i64, f64)> = model[&name]
            .range(mint..=maxt)
            .map(|(&t, &v)| (t, v))
            .collect();
        // Everything the storage offers is summarised.
        lazy.read_summarised(i, &mut ts, &mut vs, &mut sums, &|_| true)
            .unwrap();
        let rewritten_or_deleted = ["m0", "m1", "m3"].contains(&name.as_str());
        if rewritten_or_deleted {
            assert!(sums.is_empty(), "{name}: overridden samples are decoded");
        }
        if !sums.is_empty() {
            summarised_series += 1;
        }
        for m in &sums {
            assert!(
                m.min_t >= mint && m.max_t <= maxt,
                "{name}: cut chunk summarised"
            );
            let inside: Vec<&(i64, f64)> = want
                .iter()
                .filter(|(t, _)| (m.min_t..=m.max_t).contains(t))
                .collect();
            assert_eq!(inside.len(), m.count as usize, "{name}");
            let max = inside.iter().map(|p| p.1).fold(f64::MIN, f64::max);
            assert_eq!(max, m.max, "{name}");
            assert!(ts.iter().all(|t| !(m.min_t..=m.max_t).contains(t)));
        }
        // Decoded samples plus summarised counts are the series, and the decoded ones are
        // exactly the samples outside the summarised chunks.
        let counted = ts.len() + sums.iter().map(|m| m.count as usize).sum::<usize>();
        assert_eq!(counted, want.len(), "{name}");
        let decoded: Vec<(i64, f64)> = ts.iter().copied().zip(vs.iter().copied()).collect();
        let outside: Vec<(i64, f64)> = want
            .iter()
            .copied()
            .filter(|(t, _)| !sums.iter().any(|m| (m.min_t..=m.max_t).contains(t)))
            .collect();
        assert_eq!(decoded, outside, "{name}");
        // Refusing every chunk is a plain read.
        lazy.read_summarised(i, &mut ts, &mut vs, &mut sums, &|_| false)
            .unwrap();
        assert!(sums.is_empty());
        let all: Vec<(i64, f64)> = ts.iter().copied().zip(vs.iter().copied()).collect();
        assert_eq!(all, want, "{name}");
    }
    // m2 and m4 (one block, untouched); m5's chunks are cut by the range.
    assert_eq!(summarised_series, 2);
}
