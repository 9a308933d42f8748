//! Writers -> parsers round trips (property tests).

use proptest::prelude::*;
use std::convert::Infallible;
use tsq_formats::{
    parse, parse_series_key, Event, Format, InfluxWriter, OpenMetricsWriter, ParseOptions,
    MAX_TIMESTAMP_MS,
};
use tsq_storage::{Labels, MetricMeta, MetricType};

fn legacy_metric() -> impl Strategy<Value = String> {
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}"
}

fn legacy_label() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,8}".prop_filter("reserved", |s| s != "__name__")
}

fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => legacy_metric(), 1 => "\\PC{1,8}", 1 => "[a-z.\"\\\\ \n=,{}é]{1,6}"]
}

fn any_label_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => legacy_label(), 1 => "[a-z.\"\\\\ \n=,{}é]{1,6}"]
        .prop_filter("reserved", |s| s != "__name__")
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9]{1,6}", "\\PC{0,8}", "[\"\\\\\n ,=}{#é]{1,6}"]
}

fn series(
    name: impl Strategy<Value = String>,
    label: impl Strategy<Value = String>,
) -> impl Strategy<Value = Labels> {
    (name, prop::collection::vec((label, label_value()), 0..4))
        .prop_map(|(n, ls)| Labels::new(std::iter::once(("__name__".to_string(), n)).chain(ls)))
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        any::<f64>(),
        (-1_000_000i64..1_000_000).prop_map(|v| v as f64),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        Just(5e-324),
        Just(f64::MAX),
    ]
}

fn samples() -> impl Strategy<Value = Vec<(i64, f64)>> {
    prop::collection::vec((0..=MAX_TIMESTAMP_MS, value()), 1..5)
}

fn meta() -> impl Strategy<Value = Option<MetricMeta>> {
    let t = prop_oneof![
        Just(MetricType::Counter),
        Just(MetricType::Gauge),
        Just(MetricType::Histogram),
        Just(MetricType::Summary),
        Just(MetricType::Unknown)
    ];
    prop::option::of(
        (t, "[a-z]{0,6}", "\\PC{0,12}").prop_map(|(metric_type, unit, help)| MetricMeta {
            metric_type,
            unit,
            help: help.trim_end().to_string(),
            ..MetricMeta::default()
        }),
    )
}

fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

type Parsed = (Vec<(Labels, i64, f64)>, Vec<(String, MetricMeta)>);

fn read_back(format: Format, text: &[u8]) -> Parsed {
    let mut out = Vec::new();
    let mut metas = Vec::new();
    parse(text, &ParseOptions::new(format), |ev| {
        match ev {
            Event::Sample(r) => out.push((
                parse_series_key(r.series_key).unwrap(),
                r.timestamp_ms,
                r.value,
            )),
            Event::Metadata { metric, meta } => metas.push((metric.to_string(), meta.clone())),
        }
        Ok::<(), Infallible>(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(text)));
    (out, metas)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn openmetrics_round_trip(data in prop::collection::vec((series(any_name(), any_label_name()), meta(), samples()), 1..5)) {
        // One family per metric name (the writer refuses a second): the first entry of a
        // name gives its metadata, and all its series follow that family line.
        let mut names: Vec<&str> = Vec::new();
        for (labels, _, _) in &data {
            let n = labels.metric_name().unwrap();
            if !names.contains(&n) {
                names.push(n);
            }
        }
        // Counter `foo_total` and another metric `foo` would share family `foo`: the writer
        // refuses that (tested in write.rs); such inputs are not round-trip material.
        let fams: Vec<String> = names
            .iter()
            .map(|n| {
                let meta = data.iter().find(|d| d.0.metric_name() == Some(n)).and_then(|d| d.1.clone());
                match meta {
                    Some(m) if m.metric_type == MetricType::Counter => {
                        n.strip_suffix("_total").filter(|f| !f.is_empty()).unwrap_or(n).to_string()
                    }
                    _ => n.to_string(),
                }
            })
            .collect();
        let distinct: std::collections::HashSet<&String> = fams.iter().collect();
        prop_assume!(distinct.len() == fams.len());
        let mut w = OpenMetricsWriter::new(Vec::new());
        let mut want = Vec::new();
        let mut want_meta = Vec::new();
        for name in &names {
            let mut first = true;
            for (labels, meta, samples) in data.iter().filter(|d| d.0.metric_name() == Some(name)) {
                if first {
                    w.family(name, meta.as_ref()).unwrap();
                    want_meta.push((name.to_string(), meta.clone().unwrap_or_default()));
                    first = false;
                }
                for &(t, v) in samples {
                    w.sample(labels, t, v).unwrap();
                    want.push((labels.clone(), t, v));
                }
            }
        }
        let text = w.finish().unwrap();
        let (got, metas) = read_back(Format::OpenMetrics, &text);
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(&g.0, &w.0);
            prop_assert_eq!(g.1, w.1);
            prop_assert!(same_value(g.2, w.2), "{} vs {}", g.2, w.2);
        }
        // Every metric's metadata comes back under its own name.
        for (name, want) in want_meta {
            let got = metas.iter().rev().find(|(m, _)| *m == name).map(|(_, m)| m.clone());
            prop_assert_eq!(got, Some(want), "metadata of {:?}", name);
        }
    }

    #[test]
    fn influx_round_trip(data in prop::collection::vec((series(legacy_metric(), legacy_label()), samples()), 1..5)) {
        let mut w = InfluxWriter::new(Vec::new());
        let mut want = Vec::new();
        for (labels, samples) in &data {
            for &(t, v) in samples {
                let r = w.sample(labels, t, v);
                let representable = v.is_finite() && !labels.iter().any(|l| l.value.contains(['\n', '\r']));
                prop_assert_eq!(r.is_ok(), representable);
                if representable {
                    want.push((labels.clone(), t, v));
                }
            }
        }
        let text = w.finish().unwrap();
        let (got, _) = read_back(Format::Influx, &text);
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(&g.0, &w.0);
            prop_assert_eq!(g.1, w.1);
            prop_assert!(same_value(g.2, w.2));
        }
    }

    #[test]
    fn parsers_never_panic(input in prop::collection::vec(any::<u8>(), 0..300)) {
        for f in [Format::OpenMetrics, Format::Prometheus, Format::Influx, Format::Csv] {
            let mut opts = ParseOptions::new(f);
            opts.skip_invalid = true;
            let _ = parse(&input, &opts, |ev| {
                if let Event::Sample(r) = ev {
                    parse_series_key(r.series_key).unwrap();
                }
                Ok::<(), Infallible>(())
            });
        }
    }

    #[test]
    fn parsers_never_panic_on_near_valid_text(input in "[a-z_{}=\",. #\\\\\n0-9eEi+-]{0,200}") {
        for f in [Format::OpenMetrics, Format::Prometheus, Format::Influx, Format::Csv] {
            let mut opts = ParseOptions::new(f);
            opts.skip_invalid = true;
            let _ = parse(input.as_bytes(), &opts, |ev| {
                if let Event::Sample(r) = ev {
                    // Whatever a parser accepts, its key must be a valid series key.
                    parse_series_key(r.series_key).unwrap();
                }
                Ok::<(), Infallible>(())
            });
        }
    }
}

type Outcome = (
    Vec<(String, i64, u64)>,
    Vec<String>,
    Result<tsq_formats::ParseSummary, String>,
);

fn whole(format: Format, input: &[u8]) -> Outcome {
    let mut opts = ParseOptions::new(format);
    opts.skip_invalid = true;
    opts.now_ms = 7;
    let mut s = Vec::new();
    let mut m = Vec::new();
    let r = parse(input, &opts, |ev| {
        match ev {
            Event::Sample(r) => {
                s.push((r.series_key.to_string(), r.timestamp_ms, r.value.to_bits()))
            }
            Event::Metadata { metric, .. } => m.push(metric.to_string()),
        }
        Ok::<(), Infallible>(())
    })
    .map_err(|e| e.to_string());
    (s, m, r)
}

fn chunked(format: Format, input: &[u8], cuts: &[usize]) -> Outcome {
    let mut opts = ParseOptions::new(format);
    opts.skip_invalid = true;
    opts.now_ms = 7;
    let mut s = Vec::new();
    let mut m = Vec::new();
    let mut p = tsq_formats::Parser::new(&opts);
    let mut buf: Vec<u8> = Vec::new();
    let mut at = 0;
    let mut f = |ev: Event<'_>| {
        match ev {
            Event::Sample(r) => {
                s.push((r.series_key.to_string(), r.timestamp_ms, r.value.to_bits()))
            }
            Event::Metadata { metric, .. } => m.push(metric.to_string()),
        }
        Ok::<(), Infallible>(())
    };
    for &c in cuts {
        let c = c.min(input.len()).max(at);
        buf.extend_from_slice(&input[at..c]);
        at = c;
        let used = p.feed(&buf, &mut f).unwrap();
        buf.drain(..used);
    }
    buf.extend_from_slice(&input[at..]);
    let r = p.finish(&buf, &mut f).map_err(|e| e.to_string());
    (s, m, r)
}

proptest! {
    #[test]
    fn chunked_feeding_equals_whole_input(
        input in "([a-z_]{1,4}(\\{[a-z]{1,2}=\"[a-zé]{0,3}\"\\})? [0-9x.]{1,4}( [0-9]{1,5})?\n|# (TYPE|HELP|EOF) [a-z_]{1,4} [a-z]{0,6}\n|[a-z,=\" 0-9é]{0,12}\n){0,12}",
        mut cuts in prop::collection::vec(0usize..400, 0..6),
    ) {
        cuts.sort_unstable();
        for f in [Format::OpenMetrics, Format::Prometheus, Format::Influx, Format::Csv] {
            prop_assert_eq!(whole(f, input.as_bytes()), chunked(f, input.as_bytes(), &cuts));
        }
    }
}
