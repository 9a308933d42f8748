//! The public API of tsq-exec: engine options, result shapes, limits, errors.

use tsq_exec::{Engine, EngineOptions, Error, MemStorage, Profile, Value};
use tsq_parser::{Expr, MatchOp, Matcher, VectorSelector};
use tsq_storage::Labels;

fn db() -> MemStorage {
    let mut db = MemStorage::new();
    for i in 0..10 {
        let l = Labels::new([("__name__", "up"), ("job", "a"), ("i", &*i.to_string())]);
        for k in 0..=10 {
            db.add(l.clone(), k * 60_000, (k * i) as f64);
        }
    }
    db
}

fn selector(name: &str) -> Expr {
    Expr::VectorSelector(VectorSelector {
        name: Some(name.into()),
        matchers: vec![Matcher {
            name: "__name__".into(),
            op: MatchOp::Equal,
            value: name.into(),
        }],
        offset: None,
        at: None,
        modifier: None,
    })
}

#[test]
fn profile_parses() {
    assert_eq!("promql3".parse::<Profile>().unwrap(), Profile::Promql3);
    assert_eq!(
        "prometheus-2.42".parse::<Profile>().unwrap(),
        Profile::Prometheus242
    );
    assert!("prometheus-1".parse::<Profile>().is_err());
    assert_eq!(Profile::default(), Profile::Promql3);
    let o = EngineOptions::default();
    assert_eq!(o.lookback_delta_ms, 300_000);
    assert_eq!(o.default_subquery_step_ms, 60_000);
}

#[test]
fn hand_built_ast_instant_and_range() {
    let db = db();
    let e = Engine::new(EngineOptions::default());
    let r = e.instant_query_expr(&db, &selector("up"), 120_000).unwrap();
    let Value::Vector(v) = r.value else {
        panic!("expected a vector")
    };
    assert_eq!(v.len(), 10);
    assert!(v.iter().all(|s| s.t == 120_000));
    let r = e
        .range_query_expr(&db, &selector("up"), 0, 600_000, 60_000)
        .unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("expected a matrix")
    };
    assert_eq!(m.len(), 10);
    assert!(m.iter().all(|s| s.samples.len() == 11));
    // Sorted by labels.
    assert!(m.windows(2).all(|w| w[0].labels < w[1].labels));
}

#[test]
fn scalar_and_string_results() {
    let db = db();
    let e = Engine::new(EngineOptions::default());
    let r = e.instant_query_expr(&db, &Expr::Number(4.5), 1000).unwrap();
    assert_eq!(r.value, Value::Scalar { t: 1000, v: 4.5 });
    let r = e
        .instant_query_expr(&db, &Expr::String("hi".into()), 1000)
        .unwrap();
    assert_eq!(
        r.value,
        Value::String {
            t: 1000,
            s: "hi".into()
        }
    );
    let r = e
        .range_query_expr(&db, &Expr::Number(1.0), 0, 120_000, 60_000)
        .unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("expected a matrix")
    };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].samples, vec![(0, 1.0), (60_000, 1.0), (120_000, 1.0)]);
}

#[test]
fn sample_limit_is_an_error_not_an_oom() {
    let db = db();
    let e = Engine::new(EngineOptions {
        max_samples: 50,
        ..Default::default()
    });
    let err = e
        .range_query_expr(&db, &selector("up"), 0, 600_000, 60_000)
        .unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
    let e = Engine::new(EngineOptions {
        max_series: 5,
        ..Default::default()
    });
    let err = e
        .instant_query_expr(&db, &selector("up"), 60_000)
        .unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
}

#[test]
fn bad_range_parameters() {
    let db = db();
    let e = Engine::new(EngineOptions::default());
    assert!(e
        .range_query_expr(&db, &selector("up"), 0, 60_000, 0)
        .is_err());
    assert!(e
        .range_query_expr(&db, &selector("up"), 60_000, 0, 1000)
        .is_err());
    assert!(e
        .range_query_expr(&db, &selector("up"), 0, 100_000_000, 1)
        .is_err());
}

#[test]
fn parsed_queries_and_threads_agree() {
    let db = db();
    let q = "sum by (job) (rate(up[5m]))";
    let one = Engine::new(EngineOptions {
        threads: 1,
        ..Default::default()
    });
    let two = Engine::new(EngineOptions {
        threads: 2,
        ..Default::default()
    });
    let a = one.range_query(&db, q, 0, 600_000, 30_000).unwrap();
    let b = two.range_query(&db, q, 0, 600_000, 30_000).unwrap();
    assert_eq!(a.value, b.value);
    // rate of a metric not named like a counter gives an info in 3.x, none in 2.42.
    assert_eq!(a.infos.len(), 1, "{:?}", a.infos);
    let old = Engine::new(EngineOptions {
        profile: Profile::Prometheus242,
        ..Default::default()
    });
    assert!(old
        .range_query(&db, q, 0, 600_000, 30_000)
        .unwrap()
        .infos
        .is_empty());
}

#[test]
fn many_series_use_worker_threads() {
    let mut db = MemStorage::new();
    for i in 0..300 {
        let l = Labels::new([("__name__", "m_total"), ("i", &*i.to_string())]);
        for k in 0..100 {
            db.add(l.clone(), k * 15_000, (k * (i + 1)) as f64);
        }
    }
    let q = "sum(increase(m_total[1m]))";
    let r1 = Engine::new(EngineOptions {
        threads: 1,
        ..Default::default()
    })
    .range_query(&db, q, 0, 1_485_000, 15_000)
    .unwrap();
    let r2 = Engine::new(EngineOptions::default())
        .range_query(&db, q, 0, 1_485_000, 15_000)
        .unwrap();
    assert_eq!(r1.value, r2.value);
    let Value::Matrix(m) = r2.value else {
        panic!("expected a matrix")
    };
    // At the last step the window (1425 s, 1485 s] holds 4 samples 15 s apart, rising by
    // 3*(i+1) over 45 s, extrapolated to 60 s: 4*(i+1); the sum over i is 4 * 45150.
    let last = m[0].samples.last().unwrap().1;
    assert!((last - 4.0 * 45150.0).abs() < 1e-6, "{last}");
}

#[test]
fn malformed_trees_give_errors_not_panics() {
    let db = db();
    let e = Engine::new(EngineOptions::default());
    for f in [
        "rate",
        "abs",
        "clamp",
        "label_replace",
        "predict_linear",
        "absent",
    ] {
        let call = Expr::Call(tsq_parser::Call {
            func: f.into(),
            args: vec![],
            matching: None,
        });
        assert!(e.instant_query_expr(&db, &call, 60_000).is_err(), "{f}");
    }
    let unknown = Expr::Call(tsq_parser::Call {
        func: "no_such_function".into(),
        args: vec![selector("up")],
        matching: None,
    });
    assert!(matches!(
        e.instant_query_expr(&db, &unknown, 60_000),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn shared_subexpressions_give_the_same_answers() {
    let db = db();
    let e = Engine::new(EngineOptions::default());
    let queries = [
        "sum by (job) (rate(up[5m]))",
        "max(rate(up[5m])) / sum(rate(up[5m]))",
        "rate(up[5m]) > 0.05",
    ];
    let keep = ["rate(up[5m])".to_string()];
    let shared = tsq_exec::SharedSubexpressions::new(keep);
    for _ in 0..2 {
        for q in queries {
            let expr = tsq_parser::parse(q).unwrap();
            let plain = e
                .range_query_expr(&db, &expr, 300_000, 600_000, 60_000)
                .unwrap();
            let cached = e
                .range_query_shared(&db, &expr, 300_000, 600_000, 60_000, Some(&shared))
                .unwrap();
            assert_eq!(plain.value, cached.value, "{q}");
            assert_eq!(plain.warnings, cached.warnings, "{q}");
            assert_eq!(plain.infos, cached.infos, "{q}");
        }
    }
    // Another range gets its own entry, not the first one's values.
    let expr = tsq_parser::parse("rate(up[5m])").unwrap();
    let plain = e
        .range_query_expr(&db, &expr, 360_000, 540_000, 60_000)
        .unwrap();
    let cached = e
        .range_query_shared(&db, &expr, 360_000, 540_000, 60_000, Some(&shared))
        .unwrap();
    assert_eq!(plain.value, cached.value);
}

#[test]
fn shared_subexpressions_across_threads_and_failures() {
    let db = db();
    let e = Engine::new(EngineOptions::default());
    // A failing shared subexpression releases its claim: the next query evaluates it again
    // (and fails the same way) instead of waiting for ever.
    let bad = tsq_parser::parse("up + on () up").unwrap().to_string();
    let rate = tsq_parser::parse("rate(up[5m])").unwrap().to_string();
    let shared = tsq_exec::SharedSubexpressions::new([bad, rate]);
    for _ in 0..2 {
        let expr = tsq_parser::parse("sum(up + on () up)").unwrap();
        let r = e.range_query_shared(&db, &expr, 300_000, 600_000, 60_000, Some(&shared));
        assert!(matches!(r, Err(Error::Eval(_))), "{r:?}");
    }
    // Several threads needing the same value at once all get the plain answer.
    let queries = ["sum(rate(up[5m]))", "max(rate(up[5m]))", "rate(up[5m]) * 2"];
    let plain: Vec<_> = queries
        .iter()
        .map(|q| {
            let expr = tsq_parser::parse(q).unwrap();
            e.range_query_expr(&db, &expr, 300_000, 600_000, 60_000)
                .unwrap()
                .value
        })
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (e, db, shared, q) = (&e, &db, &shared, queries[i % 3]);
                s.spawn(move || {
                    let expr = tsq_parser::parse(q).unwrap();
                    e.range_query_shared(db, &expr, 300_000, 600_000, 60_000, Some(shared))
                        .unwrap()
                        .value
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), plain[i % 3], "{}", queries[i % 3]);
        }
    });
}
