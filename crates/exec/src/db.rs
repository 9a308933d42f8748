//! The engine's read API over the real database.

use tsq_storage::block::ChunkMeta;
use tsq_storage::{Db, Labels, Matcher, Result, Selection, SeriesData};

use crate::{Queryable, SeriesSet};

impl Queryable for Db {
    fn select(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Result<Vec<SeriesData>> {
        Db::select(self, matchers, mint_ms, maxt_ms)
    }

    fn select_lazy(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Box<dyn SeriesSet + '_>> {
        Ok(Box::new(Db::select_lazy(self, matchers, mint_ms, maxt_ms)?))
    }
}

impl SeriesSet for Selection {
    fn len(&self) -> usize {
        Selection::len(self)
    }

    fn labels(&self, i: usize) -> &Labels {
        Selection::labels(self, i)
    }

    fn samples_hint(&self, i: usize) -> usize {
        Selection::samples_hint(self, i)
    }

    fn read(&self, i: usize, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> Result<()> {
        Selection::read(self, i, ts, vs)
    }

    fn read_last(&self, i: usize, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> Result<()> {
        Selection::read_last(self, i, ts, vs)
    }

    fn read_summarised(
        &self,
        i: usize,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
        summaries: &mut Vec<ChunkMeta>,
        summarise: &dyn Fn(&ChunkMeta) -> bool,
    ) -> Result<()> {
        Selection::read_summarised(self, i, ts, vs, summaries, summarise)
    }
}

#[cfg(test)]
mod tests {
    use tsq_storage::{Db, Labels, Matcher, SeriesData, STALE_NAN_BITS};

    use crate::{Engine, EngineOptions, MemStorage, Queryable, Value};

    /// The database through `select` only: the engine's default `select_lazy`, which
    /// reads from a fully loaded selection.
    struct Eager<'a>(&'a Db);

    impl Queryable for Eager<'_> {
        fn select(
            &self,
            matchers: &[Matcher],
            mint_ms: i64,
            maxt_ms: i64,
        ) -> tsq_storage::Result<Vec<SeriesData>> {
            self.0.select(matchers, mint_ms, maxt_ms)
        }
    }

    /// The same samples in a database (two blocks that overlap, then the head) and in
    /// memory: 40 series of 6 000 samples, with staleness markers, NaN, a counter reset
    /// and samples rewritten out of order (the later write wins in both).
    fn stores(dir: &std::path::Path) -> (Db, MemStorage) {
        // Chunks of 64 samples (640 s): hour-long windows hold whole chunks.
        let db = Db::builder()
            .ooo_window_ms(86_400_000)
            .chunk_samples(64)
            .open(dir)
            .unwrap();
        let mut mem = MemStorage::new();
        let mut write = |samples: &[(usize, i64, f64)], flush: bool| {
            let mut app = db.appender();
            for &(i, t, v) in samples {
                let l = Labels::new([
                    ("__name__", "reqs_total"),
                    ("job", if i % 2 == 0 { "a" } else { "b" }),
                    ("instance", &format!("i{i}")),
                ]);
                app.add_labels(&l, t, v).unwrap();
                mem.add(l, t, v);
            }
            app.commit().unwrap();
            if flush {
                db.flush().unwrap();
            }
        };
        let value = |i: usize, k: i64| -> f64 {
            match (i, k) {
                (4, 1_000..=1_009) => f64::from_bits(STALE_NAN_BITS),
                (5, 2_000) => f64::NAN,
                // A counter reset half way for series 7.
                (7, _) => ((k % 3_000) * 3) as f64,
                // Signed zeros: which one max/min return depends on their order.
                (10, 500..=900) => {
                    // Chunks start at multiples of 64: in some the first zero is -0,
                    // in others +0.
                    if (k / 7) % 2 == 0 {
                        -0.0
                    } else {
                        0.0
                    }
                }
                (10, _) => -(k as f64),
                // A run of NaN, and a whole chunk of them.
                (11, 3_000..=3_200) => f64::NAN,
                _ => (k * (i as i64 + 1)) as f64 + (k % 7) as f64 * 0.125,
            }
        };
        let first: Vec<_> = (0..40)
            .flat_map(|i| (0..4_000).map(move |k| (i, k * 10_000, value(i, k))))
            .collect();
        write(&first, true);
        let rewrite: Vec<_> = (0..40)
            .step_by(3)
            .flat_map(|i| (100..200).map(move |k| (i, k * 10_000, -1.5 * k as f64)))
            .collect();
        write(&rewrite, true);
        let rest: Vec<_> = (0..40)
            .flat_map(|i| (4_000..6_000).map(move |k| (i, k * 10_000, value(i, k))))
            .collect();
        write(&rest, false);
        (db, mem)
    }

    fn bits(v: &Value) -> String {
        match v {
            Value::Matrix(m) => m
                .iter()
                .map(|s| {
                    let pts: Vec<String> = s
                        .samples
                        .iter()
                        .map(|(t, v)| format!("{t}:{:x}", v.to_bits()))
                        .collect();
                    format!("{} {}\n", s.labels, pts.join(" "))
                })
                .collect(),
            other => format!("{other:?}"),
        }
    }

    /// Range functions over selectors read series one at a time from the database
    /// (`Selection`); the answers are bit for bit those of the fully loaded paths, with one
    /// thread or two.
    #[test]
    fn lazily_read_selectors_give_the_answers_of_loaded_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mem) = stores(dir.path());
        let hour = 3_600_000;
        // (query, step): steps of an hour and more let whole chunks fall inside windows,
        // which max/min/count_over_time then answer from chunk statistics.
        let queries = [
            ("rate(reqs_total[5m])", 300_000),
            ("sum by (job) (rate(reqs_total[5m]))", 300_000),
            ("max_over_time(reqs_total[1h])", 300_000),
            ("max_over_time(reqs_total[1h])", hour),
            ("max_over_time(reqs_total[30m])", hour),
            ("max_over_time(reqs_total[12h])", 6 * hour),
            ("min_over_time(reqs_total[17m])", 300_000),
            ("min_over_time(reqs_total[2h])", 2 * hour),
            ("min_over_time(reqs_total[1h] offset 7m)", hour),
            ("count_over_time(reqs_total[1h])", hour),
            ("count_over_time(reqs_total[10m])", 300_000),
            ("avg_over_time(reqs_total[3h])", 300_000),
            ("stddev_over_time(reqs_total[2h])", 300_000),
            ("sum_over_time(reqs_total[30m])", 300_000),
            ("quantile_over_time(0.9, reqs_total[1h])", 300_000),
            ("last_over_time(reqs_total[10m] offset 1h)", 300_000),
            ("increase(reqs_total{job=\"b\"}[15m])", 300_000),
            ("changes(reqs_total{instance=~\"i[357]\"}[20m])", 300_000),
        ];
        let (start, end) = (3_600_000, 59_990_000);
        for threads in [1, 2] {
            let engine = Engine::new(EngineOptions {
                threads,
                ..EngineOptions::default()
            });
            for (q, step) in queries {
                let lazy = engine.range_query(&db, q, start, end, step).unwrap();
                let eager = engine
                    .range_query(&Eager(&db), q, start, end, step)
                    .unwrap();
                let memory = engine.range_query(&mem, q, start, end, step).unwrap();
                assert!(
                    matches!(&lazy.value, Value::Matrix(m) if !m.is_empty()),
                    "{q}: no result"
                );
                for t in [start, 40_000_000, end] {
                    let a = engine.instant_query(&db, q, t).unwrap();
                    let b = engine.instant_query(&mem, q, t).unwrap();
                    assert_eq!(
                        format!("{:?}", a.value),
                        format!("{:?}", b.value),
                        "{q} at {t}"
                    );
                }
                assert_eq!(
                    bits(&lazy.value),
                    bits(&eager.value),
                    "{q}, {threads} threads"
                );
                assert_eq!(
                    bits(&lazy.value),
                    bits(&memory.value),
                    "{q}, {threads} threads"
                );
                assert_eq!(lazy.warnings, eager.warnings, "{q}");
                assert_eq!(lazy.infos, eager.infos, "{q}");
            }
        }
    }

    /// An instant selector at one time reads each series' last sample, from the chunk
    /// statistics where it can: the same answers as decoding, around chunk ends, staleness
    /// markers, NaN, rewritten series and the head.
    #[test]
    fn instant_selectors_read_the_last_sample_only() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mem) = stores(dir.path());
        let engine = Engine::default();
        let queries = [
            "reqs_total",
            "timestamp(reqs_total)",
            "reqs_total offset 30m",
            "sum by (job) (reqs_total)",
            "reqs_total{instance=~\"i1[01]\"}",
        ];
        // Chunks of 64 samples at 10 s: 640 s apart; times at, just after and inside chunk
        // ends, around the staleness markers of series 4 (10 000-10 090 s), past the end.
        let mut times = vec![0, 5_000, 639_999, 640_000, 640_001, 645_000, 10_050_000];
        times.extend([10_100_000, 10_390_000, 10_400_000, 40_000_000, 59_990_000]);
        times.extend([60_000_000, 60_290_000, 60_300_000, 61_000_000]);
        for q in queries {
            for &t in &times {
                let lazy = engine.instant_query(&db, q, t).unwrap();
                let eager = engine.instant_query(&Eager(&db), q, t).unwrap();
                let memory = engine.instant_query(&mem, q, t).unwrap();
                let show = |v: &Value| match v {
                    Value::Vector(s) => s
                        .iter()
                        .map(|x| format!("{} {:x}", x.labels, x.v.to_bits()))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    other => format!("{other:?}"),
                };
                assert_eq!(show(&lazy.value), show(&eager.value), "{q} at {t}");
                assert_eq!(show(&lazy.value), show(&memory.value), "{q} at {t}");
            }
        }
    }

    /// The sample and series limits hold when series are read one at a time.
    #[test]
    fn limits_hold_on_lazily_read_selectors() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = stores(dir.path());
        let engine = |max_samples, max_series| {
            Engine::new(EngineOptions {
                max_samples,
                max_series,
                ..EngineOptions::default()
            })
        };
        let q = "avg_over_time(reqs_total[1d])";
        let t = 59_990_000;
        let e = engine(100_000, 1_000).instant_query(&db, q, t).unwrap_err();
        assert!(e.to_string().contains("too many samples"), "{e}");
        let e = engine(50_000_000, 39).instant_query(&db, q, t).unwrap_err();
        assert!(e.to_string().contains("too many series"), "{e}");
        // Just enough: every series' samples of the last day (6 000 x 40, rewritten
        // samples counted once).
        let ok = engine(240_000, 40).instant_query(&db, q, t).unwrap();
        assert!(matches!(ok.value, Value::Vector(ref v) if v.len() == 40));
        let e = engine(239_999, 40).instant_query(&db, q, t).unwrap_err();
        assert!(e.to_string().contains("too many samples"), "{e}");
        // max_over_time of the same window reads the statistics of the chunks wholly
        // inside it instead of their samples: fewer samples loaded (the head's and those
        // of series rewritten out of order are still read), same answer.
        let q = "max_over_time(reqs_total[1d])";
        let few = engine(200_000, 40).instant_query(&db, q, t).unwrap();
        let all = engine(50_000_000, 40)
            .instant_query(&Eager(&db), q, t)
            .unwrap();
        assert_eq!(format!("{:?}", few.value), format!("{:?}", all.value));
        let e = engine(200_000, 40)
            .instant_query(&Eager(&db), q, t)
            .unwrap_err();
        assert!(e.to_string().contains("too many samples"), "{e}");
    }

    #[test]
    fn queries_run_over_the_real_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut app = db.appender();
        for (job, v) in [("a", 1.0), ("b", 2.0)] {
            let r = app
                .series_ref(&Labels::new([("__name__", "up"), ("job", job)]))
                .unwrap();
            app.add(r, 10_000, v);
        }
        app.commit().unwrap();
        db.flush().unwrap();
        let res = Engine::default()
            .instant_query(&db, "sum(up)", 60_000)
            .unwrap();
        assert!(
            matches!(res.value, Value::Vector(ref v) if v.len() == 1 && v[0].v == 3.0),
            "{:?}",
            res.value
        );
    }
}
