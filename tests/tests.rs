//! Integration tests of the tsq facade, as an embedder uses it: one binary, one module per
//! topic.

/// Open, append, reopen, query: the embedder's whole path (crashes are simulated in
/// crates/storage/tests/crash.rs).
mod embedder {
    use tsq::exec::{Engine, Value};
    use tsq::storage::{Db, Labels};

    #[test]
    fn acknowledged_writes_survive_a_reopen_and_answer_queries() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            let mut app = db.appender();
            for job in ["a", "b", "c"] {
                let r = app
                    .series_ref(&Labels::new([("__name__", "up"), ("job", job)]))
                    .unwrap();
                for i in 0..100 {
                    app.add(r, i * 10_000, if job == "b" && i > 50 { 0.0 } else { 1.0 });
                }
            }
            app.commit().unwrap();
            // Half of the data goes to a block, half stays in the WAL.
            db.flush().unwrap();
            let mut app = db.appender();
            let r = app
                .series_ref(&Labels::new([("__name__", "up"), ("job", "a")]))
                .unwrap();
            app.add(r, 1_000_000, 7.0);
            app.commit().unwrap();
            drop(db); // no close(): what was committed must be there
        }
        let db = Db::open(dir.path()).unwrap();
        let engine = Engine::default();
        let res = engine.instant_query(&db, "sum(up)", 990_000).unwrap();
        let Value::Vector(v) = res.value else {
            panic!("vector")
        };
        assert_eq!(v[0].v, 2.0); // a and c are 1, b went to 0
        let res = engine
            .instant_query(&db, "up{job=\"a\"}", 1_000_000)
            .unwrap();
        let Value::Vector(v) = res.value else {
            panic!("vector")
        };
        assert_eq!(v[0].v, 7.0);
        let res = engine
            .range_query(&db, "count_over_time(up[1m])", 60_000, 120_000, 60_000)
            .unwrap();
        let Value::Matrix(m) = res.value else {
            panic!("matrix")
        };
        assert_eq!(m.len(), 3);
        assert!(
            m.iter().all(|s| s.samples.iter().all(|&(_, v)| v == 6.0)),
            "{m:?}"
        );
    }
}

/// Episodes and alert replay through the facade: the questions an embedder asks of its own
/// history ("when was it down", "would this alert have fired").
mod episodes {
    use tsq::exec::alert::{AlertEvent, AlertMachine};
    use tsq::exec::{Engine, Value};
    use tsq::storage::{Db, Labels};

    #[test]
    fn outages_and_alerts_from_stored_samples() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut app = db.appender();
        let r = app
            .series_ref(&Labels::new([("__name__", "up"), ("job", "api")]))
            .unwrap();
        // One sample a minute for 30 minutes; down from minute 10 to 15 inclusive.
        for i in 0..30 {
            let v = if (10..=15).contains(&i) { 0.0 } else { 1.0 };
            app.add(r, i * 60_000, v);
        }
        app.commit().unwrap();
        let engine = Engine::default();
        let res = engine
            .instant_query(&db, "episodes((up == 0)[30m:1m], 2m)", 29 * 60_000)
            .unwrap();
        let Value::Episodes(e) = res.value else {
            panic!("episodes, got {:?}", res.value)
        };
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].labels, Labels::new([("job", "api")]));
        assert_eq!((e[0].start, e[0].end), (600_000, 960_000));
        assert!(!e[0].ongoing && !e[0].truncated_start);
        assert_eq!(e[0].measure("held_since"), Some(720.0));

        // The same outage as an alert with `for: 3m`: pending at 10m, firing at 13m,
        // resolved at 16m, through the query function and through the state machine.
        let res = engine
            .instant_query(&db, "alert_episodes((up == 0)[30m:1m], 3m)", 29 * 60_000)
            .unwrap();
        let Value::Episodes(a) = res.value else {
            panic!("episodes")
        };
        assert_eq!((a[0].start, a[0].end), (780_000, 960_000));
        assert_eq!(a[0].measure("pending_duration"), Some(180.0));

        let mut m = AlertMachine::new(180_000, 0);
        let mut events = Vec::new();
        for i in 0..30 {
            let t = i * 60_000;
            let res = engine.instant_query(&db, "up == 0", t).unwrap();
            let Value::Vector(v) = res.value else {
                panic!("vector")
            };
            let result: Vec<(Labels, f64)> = v
                .into_iter()
                .map(|s| (s.labels.without_metric_name(), s.v))
                .collect();
            m.eval(t, &result, &mut events);
        }
        let fired: Vec<i64> = events
            .iter()
            .filter_map(|e| match e {
                AlertEvent::Fired { at, .. } => Some(*at),
                _ => None,
            })
            .collect();
        assert_eq!(fired, vec![780_000]);
    }
}
