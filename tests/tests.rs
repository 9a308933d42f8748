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
