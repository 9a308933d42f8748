//! Hostile input (issue #9, campaign 4): malformed and adversarial files for every ingest
//! format and adversarial queries. Every case runs the real binary with a wall-clock
//! timeout and an address-space limit (`ulimit -v`), and must end in a clean outcome: exit
//! 0, or exit 1 with a message; never a panic (exit 101), a signal (stack overflow, abort
//! on allocation failure), or a hang.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Address-space limit for each run, in KiB (1 GiB: far above what these inputs need).
const VMEM_KB: u64 = 1 << 20;
/// Wall-clock limit of each run.
const TIMEOUT: Duration = Duration::from_secs(30);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `tsq --db <db> <args>` under the limits.
fn run(db: &Path, args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {VMEM_KB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_tsq"))
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tsq");
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            child.wait().unwrap();
            panic!("tsq {args:?} hung: killed after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    Run {
        code: status.code(),
        stdout,
        stderr,
        took: started.elapsed(),
    }
}

/// A clean outcome: exit 0 or 1, no panic, no signal.
fn clean(r: &Run, what: &str) {
    let cut = |s: &str| s.chars().take(600).collect::<String>();
    assert!(
        matches!(r.code, Some(0) | Some(1) | Some(2)) && !r.stderr.contains("panicked"),
        "{what}: not a clean outcome: exit {:?} after {:?}\nstderr: {}\nstdout: {}",
        r.code,
        r.took,
        cut(&r.stderr),
        cut(&r.stdout)
    );
}

/// A clean refusal: exit non-zero with a message.
fn refused(r: &Run, what: &str) {
    clean(r, what);
    assert!(
        r.code != Some(0) && !r.stderr.trim().is_empty(),
        "{what}: expected a clean error, got exit {:?}\nstdout: {}",
        r.code,
        r.stdout.chars().take(600).collect::<String>()
    );
}

fn ingest(dir: &Path, db: &Path, name: &str, fmt: &str, data: &[u8]) -> Run {
    let f = dir.join(name);
    std::fs::write(&f, data).unwrap();
    let r = run(db, &["ingest", "--format", fmt, f.to_str().unwrap()]);
    std::fs::remove_file(&f).unwrap();
    r
}

/// One line of `fmt` with the given metric name, label value, timestamp (format's own unit)
/// and value text.
fn line(fmt: &str, name: &str, label: &str, ts: &str, v: &str) -> String {
    match fmt {
        "prometheus" | "openmetrics" => format!("{name}{{l=\"{label}\"}} {v} {ts}\n"),
        "influx" => format!("{name},l={label} value={v} {ts}\n"),
        "csv" => format!("{ts},{name},{v},{label}\n"),
        _ => unreachable!(),
    }
}

fn header(fmt: &str) -> &'static str {
    if fmt == "csv" {
        "timestamp_ms,metric,value,l\n"
    } else {
        ""
    }
}

fn footer(fmt: &str) -> &'static str {
    if fmt == "openmetrics" {
        "# EOF\n"
    } else {
        ""
    }
}

fn doc(fmt: &str, body: &str) -> Vec<u8> {
    format!("{}{}{}", header(fmt), body, footer(fmt)).into_bytes()
}

const FORMATS: [&str; 4] = ["openmetrics", "prometheus", "influx", "csv"];

#[test]
fn malformed_ingest_files_fail_cleanly_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    for fmt in FORMATS {
        let db = tmp.path().join(format!("db-{fmt}"));
        // Openmetrics timestamps are seconds; others as given (influx: ns by default).
        let ts = match fmt {
            "openmetrics" => "1767225600",
            "influx" => "1767225600000000000",
            _ => "1767225600000",
        };
        let good = line(fmt, "ok_metric", "x", ts, "1");

        // A line longer than the 1 MiB limit: refused, and (atomic per file) nothing written.
        let huge = line(fmt, "m", &"a".repeat(2 << 20), ts, "1");
        let r = ingest(
            tmp.path(),
            &db,
            "huge",
            fmt,
            &doc(fmt, &format!("{good}{huge}")),
        );
        refused(&r, &format!("{fmt}: 2 MiB line"));
        assert!(!db.exists(), "{fmt}: a refused file created the database");

        // Invalid UTF-8 in a label value and in a name.
        let mut bad = doc(fmt, &format!("{good}{}", line(fmt, "m", "ABC", ts, "1")));
        let at = bad.windows(3).position(|w| w == b"ABC").unwrap();
        bad[at] = 0xff;
        bad[at + 1] = 0xfe;
        refused(
            &ingest(tmp.path(), &db, "utf8", fmt, &bad),
            &format!("{fmt}: invalid UTF-8"),
        );

        // Binary garbage, NUL bytes, a lone CR, an empty file.
        let garbage: Vec<u8> = (0..50_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        clean(
            &ingest(tmp.path(), &db, "garbage", fmt, &garbage),
            &format!("{fmt}: garbage"),
        );
        clean(
            &ingest(
                tmp.path(),
                &db,
                "nul",
                fmt,
                &doc(fmt, &format!("{good}m\0{{l=\"\0\"}} 1\n")),
            ),
            &format!("{fmt}: NUL bytes"),
        );
        clean(
            &ingest(tmp.path(), &db, "empty", fmt, b""),
            &format!("{fmt}: empty file"),
        );

        // Absurd timestamps and values.
        for (t, v) in [
            ("9223372036854775807", "1"),
            ("-9223372036854775808", "1"),
            ("99999999999999999999999999", "1"),
            ("1e300", "1"),
            ("NaN", "1"),
            ("-1", "1"),
            (ts, "1e999"),
            (ts, "-nan"),
            (ts, "0x1p3"),
            (
                ts,
                "99999999999999999999999999999999999999999999999999999999",
            ),
        ] {
            let r = ingest(
                tmp.path(),
                &db,
                "ts",
                fmt,
                &doc(fmt, &line(fmt, "m_ts", "x", t, v)),
            );
            clean(&r, &format!("{fmt}: timestamp {t} value {v}"));
        }

        // A label explosion on one line: 20,000 labels (Prometheus and OpenMetrics).
        if fmt == "prometheus" || fmt == "openmetrics" {
            let labels: Vec<String> = (0..20_000).map(|i| format!("l{i}=\"v\"")).collect();
            let body = format!("many{{{}}} 1 {ts}\n", labels.join(","));
            clean(
                &ingest(tmp.path(), &db, "labels", fmt, &doc(fmt, &body)),
                &format!("{fmt}: 20k labels"),
            );
            // Duplicate label names.
            let body = format!("dup{{a=\"1\",a=\"2\"}} 1 {ts}\n");
            clean(
                &ingest(tmp.path(), &db, "dup", fmt, &doc(fmt, &body)),
                &format!("{fmt}: duplicate labels"),
            );
        }

        // Cardinality explosion: 30,000 distinct series in one file.
        let mut body = String::new();
        for i in 0..30_000 {
            body.push_str(&line(fmt, "card", &format!("v{i}"), ts, "1"));
        }
        clean(
            &ingest(tmp.path(), &db, "card", fmt, &doc(fmt, &body)),
            &format!("{fmt}: 30k series"),
        );
        if db.exists() {
            clean(&run(&db, &["check"]), &format!("{fmt}: check"));
        }
    }
}

#[test]
fn adversarial_queries_end_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    // A few series, one with a 200 KB label value for the regex cases.
    let long = "a".repeat(200_000);
    let mut body = String::new();
    for i in 0..200 {
        let t = 1_767_225_600_000i64 + i * 15_000;
        body.push_str(&format!(
            "m{{l=\"x\"}} {i} {t}\nlongval{{v=\"{long}\"}} 1 {t}\n"
        ));
    }
    let f = tmp.path().join("in.prom");
    std::fs::write(&f, body).unwrap();
    let r = run(
        &db,
        &["ingest", "--format", "prometheus", f.to_str().unwrap()],
    );
    clean(&r, "setup ingest");
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    let at = ["--time", "2026-01-01T00:30:00Z"];
    // Queries are arguments: each stays under Linux's 128 KiB limit for one argument.
    let deep_parens = format!("{}m{}", "(".repeat(60_000), ")".repeat(60_000));
    let deep_unary = format!("0{}m", " -".repeat(50_000));
    let deep_funcs = format!("{}m{}", "abs(".repeat(20_000), ")".repeat(20_000));
    let deep_aggr = format!("{}m{}", "sum(".repeat(20_000), ")".repeat(20_000));
    let long_chain = vec!["m"; 30_000].join(" + ");
    let long_chain_pow = vec!["2"; 30_000].join(" ^ ");
    let deep_sub = format!(
        "{}m{}",
        "max_over_time((".repeat(2_000),
        ")[5m:1m])".repeat(2_000)
    );
    let cases: Vec<(String, Vec<&str>)> = vec![
        (deep_parens, at.to_vec()),
        (deep_unary, at.to_vec()),
        (deep_funcs, at.to_vec()),
        (deep_aggr, at.to_vec()),
        (long_chain, at.to_vec()),
        (long_chain_pow, at.to_vec()),
        (deep_sub, at.to_vec()),
        // Pathological regexes on a 200 KB value (Rust's regex is linear; this proves it).
        ("count(longval{v=~\"(a*)*b\"})".into(), at.to_vec()),
        ("count(longval{v=~\"(a|a)*(a|aa)*c\"})".into(), at.to_vec()),
        ("count({v=~\"(.*a){20}\"})".into(), at.to_vec()),
        // A regex that compiles to something enormous.
        ("m{l=~\"(((a{100}){100}){100}){100}\"}".into(), at.to_vec()),
        ("m{l=~\"(\"}".into(), at.to_vec()),
        // Enormous ranges and tiny steps.
        (
            "m".into(),
            vec![
                "--start",
                "2025-01-01T00:00:00Z",
                "--end",
                "2026-01-01T00:00:00Z",
                "--step",
                "1ms",
            ],
        ),
        (
            "rate(m[1y])".into(),
            vec![
                "--start",
                "2025-01-01T00:00:00Z",
                "--end",
                "2026-01-01T00:00:00Z",
                "--step",
                "1h",
            ],
        ),
        ("max_over_time(m[1y:1ms])".into(), at.to_vec()),
        (
            "max_over_time(max_over_time(m[1d:1ms])[1d:1ms])".into(),
            at.to_vec(),
        ),
        ("m offset 10000y".into(), at.to_vec()),
        ("m[9999999y]".into(), at.to_vec()),
        ("m @ 1e300".into(), at.to_vec()),
        (
            "m".into(),
            vec![
                "--start",
                "2026-01-02T00:00:00Z",
                "--end",
                "2026-01-01T00:00:00Z",
                "--step",
                "1m",
            ],
        ),
        (
            "m".into(),
            vec![
                "--start",
                "2026-01-01T00:00:00Z",
                "--end",
                "2026-01-02T00:00:00Z",
                "--step",
                "0s",
            ],
        ),
        (
            "m".into(),
            vec![
                "--start",
                "2026-01-01T00:00:00Z",
                "--end",
                "2026-01-02T00:00:00Z",
                "--step",
                "-1m",
            ],
        ),
        ("m".into(), vec!["--time", "99999999999999999999"]),
        (
            "count_values(\"l\", m) * on() group_left count_values(\"l\", m)".into(),
            at.to_vec(),
        ),
        (
            "label_replace(m, \"x\", \"$1$1$1$1$1$1$1$1\", \"l\", \"(.*)\")".into(),
            at.to_vec(),
        ),
        ("topk(9223372036854775807, m)".into(), at.to_vec()),
        ("quantile(NaN, m)".into(), at.to_vec()),
        ("\u{1}\u{ffff}\u{202e}{".into(), at.to_vec()),
    ];
    for (q, extra) in &cases {
        let mut args = vec!["query", q.as_str()];
        args.extend(extra.iter().copied());
        let r = run(&db, &args);
        let shown: String = q.chars().take(80).collect();
        clean(&r, &format!("query {shown:?} {extra:?}"));
        let said = r
            .stderr
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(100)
            .collect::<String>();
        eprintln!(
            "{:40} exit {:?} in {:?}: {said}",
            shown.chars().take(40).collect::<String>(),
            r.code,
            r.took
        );
    }
    // The step limit is a clean refusal, not an attempt.
    let r = run(
        &db,
        &[
            "query",
            "m",
            "--start",
            "2025-01-01T00:00:00Z",
            "--end",
            "2026-01-01T00:00:00Z",
            "--step",
            "1ms",
        ],
    );
    refused(&r, "a year at 1 ms steps");
}
