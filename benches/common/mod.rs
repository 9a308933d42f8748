//! Data shared by the benchmarks.

use tsq::exec::MemStorage;
use tsq::formats::gen::{workload, WorkloadParams};

/// The 8-day workload dataset's series of the given metrics, in memory, and the last
/// timestamp.
pub fn workload_in_memory(metrics: &[&str]) -> (MemStorage, i64) {
    let ds = workload(&WorkloadParams {
        days: 8,
        ..WorkloadParams::default()
    });
    let mut db = MemStorage::new();
    let wanted: Vec<bool> = ds
        .series()
        .iter()
        .map(|s| metrics.contains(&s.metric.as_str()))
        .collect();
    let mut last = 0;
    ds.for_each_sample(|i, t, v| {
        if wanted[i] {
            db.add(ds.series()[i].labels.clone(), t, v);
            last = last.max(t);
        }
        Ok::<(), ()>(())
    })
    .expect("generator");
    (db, last)
}
