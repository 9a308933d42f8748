//! Parser tests: good lines, and bad lines with their exact `line:column: message`.

use super::*;
use tsq_storage::{Labels, MetricType};

type Got = (Vec<(String, i64, u64)>, Vec<(String, MetricMeta)>);

fn run(format: Format, input: &str) -> Result<Got, String> {
    let mut opts = ParseOptions::new(format);
    opts.now_ms = 1_000;
    let mut samples = Vec::new();
    let mut metas = Vec::new();
    parse(input.as_bytes(), &opts, |ev| {
        match ev {
            Event::Sample(r) => {
                samples.push((r.series_key.to_string(), r.timestamp_ms, r.value.to_bits()))
            }
            Event::Metadata { metric, meta } => metas.push((metric.to_string(), meta.clone())),
        }
        Ok::<(), std::convert::Infallible>(())
    })
    .map_err(|e| e.to_string())?;
    Ok((samples, metas))
}

fn err_of(format: Format, input: &str) -> String {
    match run(format, input) {
        Ok(got) => panic!("expected an error for {input:?}, got {got:?}"),
        Err(e) => e,
    }
}

fn one(format: Format, input: &str) -> (String, i64, f64) {
    let (s, _) = run(format, input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
    assert_eq!(s.len(), 1, "{input:?}");
    (s[0].0.clone(), s[0].1, f64::from_bits(s[0].2))
}

#[test]
fn prometheus_good_lines() {
    let p = Format::Prometheus;
    assert_eq!(one(p, "up 1\n"), ("up".into(), 1_000, 1.0));
    assert_eq!(
        one(p, "up{job=\"a\"} 2 1767225600000"),
        ("up{job=\"a\"}".into(), 1_767_225_600_000, 2.0)
    );
    assert_eq!(one(p, "up{job=\"a\",} 2 5\r\n").0, "up{job=\"a\",}");
    assert_eq!(one(p, "up { job = \"a\" }  3\t 7  ").1, 7);
    assert_eq!(one(p, "x:y_z{a=\"\\\\\\\"\\n\"} -1.5e3").2, -1500.0);
    assert!(one(p, "x NaN").2.is_nan());
    assert_eq!(one(p, "x +Inf").2, f64::INFINITY);
    assert_eq!(one(p, "x -Inf").2, f64::NEG_INFINITY);
    assert_eq!(one(p, "x -0").2.to_bits(), (-0.0f64).to_bits());
    assert_eq!(
        one(p, "{\"my.metric\", \"a.b\"=\"c\"} 1").0,
        "{\"my.metric\", \"a.b\"=\"c\"}"
    );
    assert_eq!(one(p, "x{} 1").0, "x{}");
    // Comments and blank lines.
    let (s, m) = run(
        p,
        "# a comment\n\n# HELP x Some \\\\ help\\n.\n# TYPE x counter\nx 1\n",
    )
    .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(m.last().unwrap().0, "x");
    assert_eq!(m.last().unwrap().1.metric_type, MetricType::Counter);
    assert_eq!(m.last().unwrap().1.help, "Some \\ help\n.");
}

#[test]
fn prometheus_bad_lines() {
    let p = Format::Prometheus;
    let cases: &[(&str, &str)] = &[
        ("up{job=\"a\" 1", "1:12: expected ',' or '}' after label value"),
        ("up{job \"a\"} 1", "1:8: expected '=' after label name"),
        ("up{job=a} 1", "1:8: expected '\"' to start the label value"),
        ("up{job=\"a} 1", "1:13: expected '\"' to end the label value"),
        ("up{job=\"a\\x\"} 1", "1:10: invalid escape sequence; expected '\\\\', '\\\"' or '\\n'"),
        ("up{a=\"1\",a=\"2\"} 1", "1:10: duplicate label name 'a'"),
        ("up{__name__=\"x\"} 1", "1:4: label name '__name__' is reserved; expected another label name"),
        ("up{1a=\"1\"} 1", "1:4: expected label name"),
        ("1up 1", "1:1: expected metric name"),
        ("up", "1:3: expected ' ' and a value after the series"),
        ("up-x 1", "1:3: expected '{' or ' ' after metric name"),
        ("up{a=\"b\"}1", "1:10: expected ' ' after '}'"),
        ("up abc", "1:4: invalid value 'abc'; expected a number, NaN, +Inf or -Inf"),
        ("up 1 1.5", "1:6: invalid timestamp '1.5'; expected integer milliseconds since the epoch"),
        ("up 1 -5", "1:6: timestamp out of range; expected a time between 1970-01-01T00:00:00Z and 2262-04-11T23:47:16.854Z"),
        ("up 1 9223372036855", "1:6: timestamp out of range; expected a time between 1970-01-01T00:00:00Z and 2262-04-11T23:47:16.854Z"),
        ("up 1 2 3", "1:8: expected end of line after timestamp"),
        ("up 1\nup{é=\"1\"} 1", "2:4: expected label name"),
        ("up{a=\"é\" b} 1", "1:10: expected ',' or '}' after label value"),
        ("# TYPE x countr", "1:10: expected metric type: counter, gauge, histogram, summary or untyped"),
        ("# TYPE 1x counter", "1:8: expected metric name"),
        (" up 1", "1:1: expected metric name at the start of the line"),
        ("{\"\"} 1", "1:2: expected non-empty metric name"),
        ("{a=\"b\"} 1", "1:1: expected metric name"),
    ];
    for (input, want) in cases {
        assert_eq!(&err_of(p, input), want, "input {input:?}");
    }
}

#[test]
fn invalid_utf8_and_long_lines() {
    let mut opts = ParseOptions::new(Format::Prometheus);
    let e = parse(b"up 1\nup{a=\"\xc3\xa9\xff\"} 1\n", &opts, |_| {
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "2:8: invalid UTF-8; expected UTF-8 text");
    opts.max_line_length = 10;
    let e = parse(b"up 1\nup{aaaaaaaaaa=\"1\"} 1\n", &opts, |_| {
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "2:11: line longer than 10 bytes; expected a line break"
    );
}

#[test]
fn skip_invalid_counts_and_keeps_first_errors() {
    let mut opts = ParseOptions::new(Format::Prometheus);
    opts.skip_invalid = true;
    opts.max_errors = 2;
    let mut n = 0;
    let input = b"a 1\nb x\nc 2\nd{ 1\ne\n\xff\nf 3\n";
    let s = parse(input, &opts, |_| {
        n += 1;
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap();
    assert_eq!(n, 3);
    assert_eq!(s.samples, 3);
    assert_eq!(s.lines, 7);
    assert_eq!(s.skipped_lines, 4);
    assert_eq!(s.error_count, 4);
    assert_eq!(s.errors.len(), 2);
    assert_eq!(
        s.errors[0].to_string(),
        "2:3: invalid value 'x'; expected a number, NaN, +Inf or -Inf"
    );
    assert_eq!(s.errors[1].line, 4);
}

#[test]
fn callback_errors_stop_parsing() {
    let opts = ParseOptions::new(Format::Prometheus);
    let mut n = 0;
    let e = parse(b"a 1\nb 2\nc 3\n", &opts, |_| {
        n += 1;
        if n == 2 {
            Err("full")
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert_eq!(e, ParseFailure::Callback("full"));
    assert_eq!(n, 2);
}

#[test]
fn openmetrics_good() {
    let om = Format::OpenMetrics;
    let input = "# TYPE foo counter\n# UNIT foo seconds\n# HELP foo Help \\\"q\\\" \\\\.\n\
                 foo_total{a=\"1\"} 10 1767225600.123 # {trace_id=\"x\"} 1 1767225600\n\
                 foo_created{a=\"1\"} 1767225000\n\
                 foo_total{a=\"2\"} 3 # {trace_id=\"y\"} 1\n\
                 # TYPE \"my.gauge\" gauge\n{\"my.gauge\",b=\"x\"} NaN 1.5\n\
                 # TYPE h histogram\nh_bucket{le=\"+Inf\"} 1 2\nh_count 1 2\nh_sum 0.5 2\nh_created 1 2\n# EOF\n";
    let (s, m) = run(om, input).unwrap();
    let keys: Vec<&str> = s.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(
        keys,
        [
            "foo_total{a=\"1\"}",
            "foo_total{a=\"2\"}",
            "{\"my.gauge\",b=\"x\"}",
            "h_bucket{le=\"+Inf\"}",
            "h_count",
            "h_sum"
        ]
    );
    assert_eq!(s[0].1, 1_767_225_600_123);
    assert_eq!(s[1].1, 1_000);
    assert_eq!(s[2].1, 1_500);
    let names: Vec<&str> = m.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(names, ["foo_total", "my.gauge", "h"]);
    assert_eq!(m[0].1.unit, "seconds");
    assert_eq!(m[0].1.help, "Help \"q\" \\.");
    assert_eq!(
        parse_series_key(keys[2]).unwrap(),
        Labels::new([("__name__", "my.gauge"), ("b", "x")])
    );
    // keep_created
    let mut opts = ParseOptions::new(om);
    opts.keep_created = true;
    let s = parse(input.as_bytes(), &opts, |_| {
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap();
    assert_eq!(s.samples, 8);
}

#[test]
fn openmetrics_bad() {
    let om = Format::OpenMetrics;
    let cases: &[(&str, &str)] = &[
        ("up 1\n", "2:1: expected '# EOF' at the end of OpenMetrics input"),
        ("up 1\n", "2:1: expected '# EOF' at the end of OpenMetrics input"),
        ("# EOF\nup 1\n", "2:1: unexpected content after '# EOF'"),
        ("#TYPE x gauge\n# EOF\n", "1:2: expected ' ' after '#'"),
        ("# FOO x\n# EOF\n", "1:3: expected TYPE, UNIT, HELP or EOF after '# '"),
        ("# TYPE x untyped\n# EOF\n", "1:10: expected metric type: counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown"),
        ("up 1 abc\n# EOF\n", "1:6: invalid timestamp 'abc'; expected seconds since the epoch"),
        ("up 1 1 x\n# EOF\n", "1:8: expected end of line after timestamp"),
        ("up 1 #x\n# EOF\n", "1:6: expected ' {' after '#' to start an exemplar"),
        ("up 1 -1\n# EOF\n", "1:6: timestamp out of range; expected a time between 1970-01-01T00:00:00Z and 2262-04-11T23:47:16.854Z"),
        ("# EOF x\n", "1:7: expected end of line after '# EOF'"),
    ];
    for (input, want) in cases {
        assert_eq!(&err_of(om, input), want, "input {input:?}");
    }
}

#[test]
fn influx_good() {
    let f = Format::Influx;
    let (s, _) = run(
        f,
        "# comment\ncpu,host=a,region=eu usage_user=1.5,usage_idle=10i,flag=t,u=7u 1767225600000000000\n\
         temp value=-3 \nweird\\ m\\,x,t\\ k=v\\,\\=1 f\\=k=1e3 5000000\n",
    )
    .unwrap();
    let got: Vec<(String, i64, f64)> = s
        .iter()
        .map(|x| (x.0.clone(), x.1, f64::from_bits(x.2)))
        .collect();
    assert_eq!(
        got,
        [
            (
                "cpu_usage_user{host=\"a\",region=\"eu\"}".to_string(),
                1_767_225_600_000,
                1.5
            ),
            (
                "cpu_usage_idle{host=\"a\",region=\"eu\"}".to_string(),
                1_767_225_600_000,
                10.0
            ),
            (
                "cpu_flag{host=\"a\",region=\"eu\"}".to_string(),
                1_767_225_600_000,
                1.0
            ),
            (
                "cpu_u{host=\"a\",region=\"eu\"}".to_string(),
                1_767_225_600_000,
                7.0
            ),
            ("temp".to_string(), 1_000, -3.0),
            ("weird_m_x_f_k{t_k=\"v,=1\"}".to_string(), 5, 1000.0),
        ]
    );
    for (p, ts, want) in [
        ("s", "5", 5000),
        ("ms", "5", 5),
        ("us", "5000", 5),
        ("ns", "5999999", 5),
    ] {
        let mut opts = ParseOptions::new(f);
        opts.precision = Precision::parse(p).unwrap();
        let mut got = 0;
        parse(format!("m v=1 {ts}").as_bytes(), &opts, |ev| {
            if let Event::Sample(r) = ev {
                got = r.timestamp_ms;
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
        assert_eq!(got, want, "{p}");
    }
}

#[test]
fn influx_bad() {
    let f = Format::Influx;
    let cases: &[(&str, &str)] = &[
        ("cpu", "1:4: expected ' ' and fields after the measurement and tags"),
        ("cpu,host a=1", "1:9: expected '=' after tag key"),
        ("cpu,=a a=1", "1:5: expected tag key"),
        ("cpu,host= a=1", "1:10: expected tag value"),
        ("cpu,a=1,a=2 f=1", "1:9: duplicate tag key 'a'"),
        ("cpu,__name__=x f=1", "1:5: tag key '__name__' is reserved; expected another tag key"),
        ("cpu f", "1:6: expected '=' after field key"),
        ("cpu =1", "1:5: expected field key"),
        ("cpu f=", "1:7: expected field value"),
        ("cpu f=\"s\"", "1:7: string field values are not supported; expected a float, integer (10i), unsigned (10u) or boolean"),
        ("cpu f=1x", "1:7: invalid field value '1x'; expected a float, integer (10i), unsigned (10u) or boolean"),
        ("cpu f=-1u", "1:7: invalid field value '-1u'; expected a float, integer (10i), unsigned (10u) or boolean"),
        ("cpu f=nan", "1:7: invalid field value 'nan'; expected a float, integer (10i), unsigned (10u) or boolean"),
        ("cpu f=1,f=2", "1:9: duplicate field key 'f'"),
        ("cpu f=1 12x", "1:9: invalid timestamp '12x'; expected an integer"),
        ("cpu f=1 -1", "1:9: timestamp out of range; expected a time between 1970-01-01T00:00:00Z and 2262-04-11T23:47:16.854Z"),
        ("cpu f=1 1 2", "1:11: expected end of line after timestamp"),
        ("cpu,t=é=x f=1", "1:8: expected ',' or ' ' after tag value (escape '=' as '\\=')"),
    ];
    for (input, want) in cases {
        assert_eq!(&err_of(f, input), want, "input {input:?}");
    }
}

#[test]
fn csv_good() {
    let f = Format::Csv;
    let (s, _) = run(
        f,
        "timestamp,metric,value,job,instance\n\
         2026-01-01T00:00:00Z,up,1,api,\"a,1\"\n\
         1767225600,up,0,api,\n\
         1767225600123, up ,NaN,\"q\"\"x\",b\n\
         \n",
    )
    .unwrap();
    let got: Vec<(String, i64)> = s.iter().map(|x| (x.0.clone(), x.1)).collect();
    assert_eq!(
        got,
        [
            (
                "up{job=\"api\",instance=\"a,1\"}".to_string(),
                1_767_225_600_000
            ),
            ("up{job=\"api\"}".to_string(), 1_767_225_600_000),
            (
                "up{job=\"q\\\"x\",instance=\"b\"}".to_string(),
                1_767_225_600_123
            ),
        ]
    );
    let (s, _) = run(f, "\u{feff}value,timestamp_ms,__name__\n2.5,5,x\n").unwrap();
    assert_eq!(s[0].1, 5);
    let (s, _) = run(f, "").unwrap();
    assert!(s.is_empty());
}

#[test]
fn csv_bad() {
    let f = Format::Csv;
    let cases: &[(&str, &str)] = &[
        ("timestamp,value\n", "1:1: expected a 'metric' column in the CSV header"),
        ("\u{feff}timestamp,metric,value,a.b\n", "1:25: invalid label name 'a.b' in the CSV header; expected [a-zA-Z_][a-zA-Z0-9_]* not starting with '__'"),
        ("timestamp,metric,value,a.b\n", "1:24: invalid label name 'a.b' in the CSV header; expected [a-zA-Z_][a-zA-Z0-9_]* not starting with '__'"),
        ("timestamp,metric,value,value\n", "1:24: duplicate column 'value' in the CSV header"),
        ("timestamp,metric,value\n1,up\n", "2:5: expected 3 cells, found 2"),
        ("timestamp,metric,value\n1,up,1,2\n", "2:8: expected 3 cells, found 4"),
        ("timestamp,metric,value\nyesterday,up,1\n", "2:1: invalid timestamp 'yesterday'; expected RFC 3339, Unix seconds or Unix milliseconds"),
        ("timestamp,metric,value\n1,up.x,1\n", "2:3: invalid metric name 'up.x'; expected [a-zA-Z_:][a-zA-Z0-9_:]*"),
        ("timestamp,metric,value\n1,up,\n", "2:6: invalid value ''; expected a number, NaN, +Inf or -Inf"),
        ("timestamp,metric,value\n1,\"up,1\n", "2:8: expected '\"' to end the quoted cell"),
        ("timestamp,metric,value\n1,\"up\"x,1\n", "2:7: expected ',' after the closing quote"),
        ("timestamp,metric,value\n-1,up,1\n", "2:1: timestamp out of range; expected a time between 1970-01-01T00:00:00Z and 2262-04-11T23:47:16.854Z"),
    ];
    for (input, want) in cases {
        assert_eq!(&err_of(f, input), want, "input {input:?}");
    }
}

#[test]
fn detection() {
    let d = |n: Option<&str>, s: &str| detect_format(n, s.as_bytes());
    assert_eq!(d(Some("a.om"), ""), Some(Format::OpenMetrics));
    assert_eq!(d(Some("a.prom"), "up 1\n"), Some(Format::Prometheus));
    assert_eq!(
        d(Some("a.prom"), "up 1\n# EOF\n"),
        Some(Format::OpenMetrics)
    );
    assert_eq!(d(Some("a.lp"), ""), Some(Format::Influx));
    assert_eq!(
        d(None, "# HELP x y\n# TYPE x gauge\nx 1\n"),
        Some(Format::Prometheus)
    );
    assert_eq!(
        d(None, "# TYPE x gauge\n# UNIT x seconds\n"),
        Some(Format::OpenMetrics)
    );
    assert_eq!(d(None, "x 1 1767225600.5\n"), Some(Format::OpenMetrics));
    assert_eq!(
        d(None, "x{a=\"b c\"} 1 1767225600000\n"),
        Some(Format::Prometheus)
    );
    assert_eq!(d(None, "cpu value=1\n"), Some(Format::Influx));
    assert_eq!(d(None, "cpu,host=a usage=1 1\n"), Some(Format::Influx));
    assert_eq!(d(None, "timestamp,metric,value\n"), Some(Format::Csv));
    assert_eq!(d(None, ""), None);
}

#[test]
fn influx_series_cache_gives_the_same_keys() {
    let input = "m,a=1,b=x\\ y v=1,w=2 1000000\nm,a=1,b=x\\ y v=3 2000000\nm,a=1,a=2 v=1\nm,a=1,b=x\\ y value=4 3000000\n";
    let mut opts = ParseOptions::new(Format::Influx);
    opts.skip_invalid = true;
    let mut keys = Vec::new();
    let s = parse(input.as_bytes(), &opts, |ev| {
        if let Event::Sample(r) = ev {
            keys.push(r.series_key.to_string());
        }
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap();
    assert_eq!(s.error_count, 1);
    assert_eq!(s.errors[0].to_string(), "3:7: duplicate tag key 'a'");
    assert_eq!(
        keys,
        [
            "m_v{a=\"1\",b=\"x y\"}",
            "m_w{a=\"1\",b=\"x y\"}",
            "m_v{a=\"1\",b=\"x y\"}",
            "m{a=\"1\",b=\"x y\"}"
        ]
    );
}

#[test]
fn series_cache_maps_keys_to_ids() {
    let mut c: SeriesCache<usize> = SeriesCache::new();
    let mut made = Vec::new();
    let mut get = |c: &mut SeriesCache<usize>, k: &str| {
        c.get_or_insert(k, |l| {
            made.push(l);
            Ok::<usize, ParseError>(made.len() - 1)
        })
    };
    assert_eq!(get(&mut c, "up{a=\"1\"}").unwrap(), 0);
    assert_eq!(get(&mut c, "up{a=\"1\"}").unwrap(), 0);
    assert_eq!(get(&mut c, "up{a=\"2\"}").unwrap(), 1);
    assert_eq!(get(&mut c, "up{a=\"1\"}").unwrap(), 0);
    assert_eq!(
        get(&mut c, "up{a=").unwrap_err().to_string(),
        "1:6: expected '\"' to start the label value"
    );
    assert_eq!(c.len(), 2);
    assert_eq!(made[1], Labels::new([("__name__", "up"), ("a", "2")]));
}

/// With `skip_invalid`, a file of good and bad lines gives exactly the samples of the good
/// lines, whatever the order.
#[test]
fn skip_invalid_keeps_exactly_the_good_lines() {
    let good = [
        "a{x=\"1\"} 1 1000",
        "b 2 2000",
        "a{x=\"1\"} 3 3000",
        "c{y=\"é\"} 4",
    ];
    let bad = [
        "a{x=\"1\" 1",
        "b x",
        "a{x=\"1\"} 3 3000 4",
        "{} 1",
        "a{x=\"1\",x=\"2\"} 1",
    ];
    let mut input = String::new();
    let mut want = Vec::new();
    for i in 0..good.len().max(bad.len()) * 2 {
        if i % 2 == 0 {
            if let Some(g) = good.get(i / 2) {
                input.push_str(g);
                want.push(*g);
            }
        } else if let Some(b) = bad.get(i / 2) {
            input.push_str(b);
        }
        input.push('\n');
    }
    let mut opts = ParseOptions::new(Format::Prometheus);
    opts.skip_invalid = true;
    opts.now_ms = 5;
    let mut got = Vec::new();
    let s = parse(input.as_bytes(), &opts, |ev| {
        if let Event::Sample(r) = ev {
            got.push((r.series_key.to_string(), r.timestamp_ms, r.value));
        }
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap();
    assert_eq!(s.error_count, bad.len() as u64);
    assert_eq!(got.len(), good.len());
    assert_eq!(got[3], ("c{y=\"é\"}".to_string(), 5, 4.0));
}

#[test]
fn feeding_an_over_long_line() {
    let mut opts = ParseOptions::new(Format::Prometheus);
    opts.max_line_length = 8;
    opts.skip_invalid = true;
    let mut n = 0;
    let mut f = |ev: Event<'_>| {
        if let Event::Sample(_) = ev {
            n += 1;
        }
        Ok::<(), std::convert::Infallible>(())
    };
    let mut p = Parser::new(&opts);
    assert_eq!(p.feed(b"a 1\nbbbbbbbbbbbb", &mut f).unwrap(), 4);
    assert_eq!(p.feed(b"bbbbbbbbbbbb", &mut f).unwrap(), 12); // reported, skipped
    assert_eq!(p.feed(b"bbb 1\nc 2", &mut f).unwrap(), 6);
    let s = p.finish(b"c 2", &mut f).unwrap();
    assert_eq!(n, 2);
    assert_eq!(s.lines, 3);
    assert_eq!(
        s.errors[0].to_string(),
        "2:9: line longer than 8 bytes; expected a line break"
    );
}

/// `can_continue_with`: wherever an input is cut, when the first half's parser says the
/// second half's fresh parser stands, the two report exactly the events of one pass
/// (metadata included, line numbers shifted by the first half's lines); and it says so for
/// cuts at a new family.
#[test]
fn two_halves_equal_one_pass_when_can_continue_with_says_so() {
    type Ev = (usize, String, i64, u64);
    fn sink(
        out: &mut Vec<Ev>,
        shift: usize,
    ) -> impl FnMut(Event<'_>) -> Result<(), std::convert::Infallible> + '_ {
        move |ev| {
            out.push(match ev {
                Event::Sample(r) => (
                    r.line + shift,
                    r.series_key.to_string(),
                    r.timestamp_ms,
                    r.value.to_bits(),
                ),
                Event::Metadata { metric, meta } => (
                    0,
                    format!("{metric} {:?} {}", meta.metric_type, meta.help),
                    0,
                    0,
                ),
            });
            Ok(())
        }
    }
    let om = "# TYPE a counter\na_total 1 1\na_created 5 1\na_total 2 2\n# TYPE b gauge\n# HELP b h\nb 1 1\n# HELP b later\nb 2 2\n# TYPE c summary\nc_count 1 1\nc_created 1 1\n# TYPE d gauge\nd 1 1\n# EOF\n";
    let prom = "# TYPE a counter\na 1 1\n# comment\n# HELP b x\nb 1 1\nb 2 2\n";
    let lp = "m,t=a f=1 1\nm f=2,g=3 2\n# c\nm,t=b f=4 3\n";
    for (format, text) in [
        (Format::OpenMetrics, om),
        (Format::Prometheus, prom),
        (Format::Influx, lp),
    ] {
        let opts = ParseOptions::new(format);
        let mut whole = Vec::new();
        parse(text.as_bytes(), &opts, sink(&mut whole, 0)).unwrap();
        let mut stood = 0;
        for (at, _) in text.match_indices('\n') {
            let at = at + 1;
            if at == text.len() {
                continue;
            }
            let mut p1 = Parser::new(&opts);
            let mut got = Vec::new();
            assert_eq!(
                p1.feed(&text.as_bytes()[..at], sink(&mut got, 0)).unwrap(),
                at
            );
            let mut p2 = Parser::new(&opts);
            let lines = p1.summary().lines;
            let rest = &text.as_bytes()[at..];
            let used = p2
                .feed(rest, |_| Ok::<(), std::convert::Infallible>(()))
                .unwrap();
            assert_eq!(used, rest.len());
            if p1.can_continue_with(&p2) {
                stood += 1;
                parse(rest, &opts, sink(&mut got, lines)).unwrap();
                assert_eq!(got, whole, "{format} cut at {at}");
            }
        }
        assert!(stood >= 2, "{format}: {stood}");
    }
    // Never across a CSV header, nor between parsers of different options.
    let csv = ParseOptions::new(Format::Csv);
    assert!(!Parser::new(&csv).can_continue_with(&Parser::new(&csv)));
    let om = ParseOptions::new(Format::OpenMetrics);
    let prom = ParseOptions::new(Format::Prometheus);
    assert!(!Parser::new(&om).can_continue_with(&Parser::new(&prom)));
}
