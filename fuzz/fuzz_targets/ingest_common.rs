//! Shared body of the `ingest_*` fuzz targets: arbitrary bytes into one parser. Errors are
//! fine; a panic is a bug. Every accepted sample must have a valid series key and an in-range
//! timestamp, and must survive a trip through the OpenMetrics writer and parser unchanged.
//!
//! The first byte picks the options (skip invalid lines, a small maximum line length, the
//! Influx precision), the rest is the input.

use tsq_formats::{
    parse, parse_series_key, timestamp_in_range, Event, Format, OpenMetricsWriter, ParseOptions,
    Precision,
};

/// Runs one input through the parser of `format`.
pub fn check(format: Format, data: &[u8]) {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let mut opts = ParseOptions::new(format);
    opts.now_ms = 1_767_225_600_000;
    opts.skip_invalid = flags & 1 != 0;
    if flags & 2 != 0 {
        opts.max_line_length = 64;
    }
    opts.precision = match (flags >> 2) & 3 {
        0 => Precision::Nanoseconds,
        1 => Precision::Microseconds,
        2 => Precision::Milliseconds,
        _ => Precision::Seconds,
    };
    let mut samples = Vec::new();
    let _ = parse(input, &opts, |ev| {
        if let Event::Sample(r) = ev {
            let labels = parse_series_key(r.series_key).expect("accepted keys parse");
            assert!(timestamp_in_range(r.timestamp_ms));
            samples.push((labels, r.timestamp_ms, r.value));
        }
        Ok::<(), std::convert::Infallible>(())
    });
    // One family per metric name (the writer refuses a second block for a name), its
    // samples in input order; families in order of first appearance.
    let mut names: Vec<&str> = Vec::new();
    for (labels, _, _) in &samples {
        let n = labels.metric_name().expect("a metric name");
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut w = OpenMetricsWriter::new(Vec::new());
    let mut grouped = Vec::with_capacity(samples.len());
    for name in &names {
        w.family(name, None).expect("write");
        for s in samples.iter().filter(|s| s.0.metric_name() == Some(name)) {
            w.sample(&s.0, s.1, s.2).expect("write");
            grouped.push(s);
        }
    }
    let text = w.finish().expect("write");
    let mut back = Vec::new();
    parse(&text, &ParseOptions::new(Format::OpenMetrics), |ev| {
        if let Event::Sample(r) = ev {
            back.push((
                parse_series_key(r.series_key).expect("key"),
                r.timestamp_ms,
                r.value,
            ));
        }
        Ok::<(), std::convert::Infallible>(())
    })
    .expect("writer output parses");
    assert_eq!(back.len(), grouped.len());
    for (a, b) in back.iter().zip(&grouped) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
        assert!(a.2.to_bits() == b.2.to_bits() || (a.2.is_nan() && b.2.is_nan()));
    }
}
