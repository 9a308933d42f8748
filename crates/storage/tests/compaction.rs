//! Compaction joins the chunks a flush cut at block boundaries.

use std::sync::Arc;

use tsq_storage::{Db, Labels, Matcher, MemVfs};

/// A flush cuts every series' chunks at block-range boundaries (a chunk never straddles two
/// blocks). Once compaction has put those blocks into one, neighbouring chunks that fit in
/// one chunk together are joined: fewer, longer chunks, the same samples.
#[test]
fn compaction_joins_chunks_cut_at_block_boundaries() {
    let vfs = MemVfs::new();
    let db = Db::builder()
        .vfs(Arc::new(vfs))
        .block_range_ms(100)
        .chunk_samples(32)
        .open("/db")
        .unwrap();
    let mut app = db.appender();
    // `a`: 10 samples in each of 3 block ranges; `b`: 10 in each of 4 (40 > 32).
    let a = app.series_ref(&Labels::new([("__name__", "a")])).unwrap();
    let b = app.series_ref(&Labels::new([("__name__", "b")])).unwrap();
    let mut want_a = Vec::new();
    for t in (0..300).step_by(10) {
        app.add(a, t, t as f64 * 0.5);
        want_a.push((t, t as f64 * 0.5));
    }
    for t in (0..400).step_by(10) {
        app.add(b, t, (t % 70) as f64);
    }
    app.commit().unwrap();
    db.flush().unwrap();
    assert_eq!(db.blocks().len(), 4);
    db.compact().unwrap();
    let blocks = db.blocks();
    assert_eq!(blocks.len(), 1);
    let series = blocks[0].all_series().unwrap();
    let counts: Vec<Vec<u32>> = series
        .iter()
        .map(|s| s.chunks.iter().map(|m| m.count).collect())
        .collect();
    assert_eq!(counts, vec![vec![30], vec![30, 10]]);
    assert!(blocks[0].check().is_empty());
    let got = db
        .select(&[Matcher::equal("__name__", "a")], i64::MIN, i64::MAX)
        .unwrap();
    let got: Vec<(i64, f64)> = got[0]
        .timestamps
        .iter()
        .copied()
        .zip(got[0].values.iter().copied())
        .collect();
    assert_eq!(got, want_a);
    let got = db
        .select(&[Matcher::equal("__name__", "b")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(
        got[0].timestamps,
        (0..400).step_by(10).collect::<Vec<i64>>()
    );
}
