//! End-to-end tests of the `tsq` binary: every command as a user runs it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{ok_as, stderr, stdout, tsq};

fn tsq_stdin(db: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsq"))
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tsq");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(o: Output) -> Output {
    ok_as(o, "tsq")
}

/// Every file of the database with its bytes (LOCK excluded: its content is the holder's pid).
fn snapshot(db: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![db.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != "LOCK" {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

const SMALL: &str = "# TYPE http_requests counter
# HELP http_requests Requests served.
http_requests_total{code=\"200\",job=\"api\"} 10 1700000000
http_requests_total{code=\"200\",job=\"api\"} 20 1700000015
http_requests_total{code=\"200\",job=\"api\"} 30 1700000030
http_requests_total{code=\"500\",job=\"api\"} 1 1700000000
http_requests_total{code=\"500\",job=\"api\"} 1 1700000015
http_requests_total{code=\"500\",job=\"api\"} 4 1700000030
# TYPE temp gauge
temp{room=\"a b\"} 21.5 1700000000.5
temp{room=\"a b\"} NaN 1700000015.5
# EOF
";

fn small_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("small.om");
    std::fs::write(&file, SMALL).unwrap();
    let o = ok(tsq(&db, &["ingest", file.to_str().unwrap()]));
    assert!(stderr(&o).contains("8 samples"), "{}", stderr(&o));
    (dir, db)
}

#[test]
fn ingest_then_query_in_every_format() {
    let (_dir, db) = small_db();
    let at = ["--time", "1700000030"];
    let o = ok(tsq(
        &db,
        &["query", at[0], at[1], "sum by (code) (http_requests_total)"],
    ));
    let out = stdout(&o);
    assert!(
        out.contains("{code=\"200\"}") && out.contains("30"),
        "{out}"
    );
    assert!(out.contains("{code=\"500\"}") && out.contains('4'), "{out}");

    let o = ok(tsq(
        &db,
        &[
            "query",
            at[0],
            at[1],
            "--format",
            "prom-json",
            "http_requests_total{code=\"500\"}",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "vector");
    let r = &v["data"]["result"][0];
    assert_eq!(r["metric"]["__name__"], "http_requests_total");
    assert_eq!(r["metric"]["code"], "500");
    assert_eq!(r["value"][0], serde_json::json!(1700000030));
    assert_eq!(r["value"][1], "4");

    let o = ok(tsq(
        &db,
        &[
            "query",
            "--start",
            "1700000000",
            "--end",
            "1700000030",
            "--step",
            "15s",
            "--format",
            "prom-json",
            "temp",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["data"]["resultType"], "matrix");
    let values = v["data"]["result"][0]["values"].as_array().unwrap();
    // 21.5 at 1700000000.5 is the latest sample at 1700000015; the NaN at 1700000015.5 is
    // the latest at 1700000030. Nothing is visible at 1700000000 (before the first sample).
    assert_eq!(values.len(), 2, "{values:?}");
    assert_eq!(values[0], serde_json::json!([1700000015, "21.5"]));
    assert_eq!(values[1], serde_json::json!([1700000030, "NaN"]));

    let o = ok(tsq(
        &db,
        &[
            "query",
            at[0],
            at[1],
            "--format",
            "csv",
            "http_requests_total",
        ],
    ));
    let out = stdout(&o);
    assert!(out.starts_with("series,timestamp,value\n"), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.contains("\"http_requests_total{code=\"\"200\"\", job=\"\"api\"\"}\""),
        "{out}"
    );

    let o = ok(tsq(
        &db,
        &[
            "query",
            at[0],
            at[1],
            "--format",
            "json",
            "scalar(sum(http_requests_total))",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["type"], "scalar");
    assert_eq!(v["result"]["v"], serde_json::json!(34.0));

    let svg = db.parent().unwrap().join("c.svg");
    let o = ok(tsq(
        &db,
        &[
            "query",
            "--start",
            "1700000000",
            "--end",
            "1700000030",
            "--step",
            "15s",
            "--format",
            "chart",
            "--out",
            svg.to_str().unwrap(),
            "http_requests_total",
        ],
    ));
    assert!(
        stdout(&o).contains("http_requests_total{code=\"200\""),
        "{}",
        stdout(&o)
    );
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.matches("<polyline").count() == 2,
        "{svg}"
    );
}

/// A gauge `lat` every minute for an hour from `EP_BASE` (minute-aligned): `job="a"` is 5 at
/// minutes 20..=29, `job="b"` from minute 50 to the end, `job="c"` at minutes 0..=10; 1
/// otherwise.
const EP_BASE: i64 = 1_699_999_980;

fn episodes_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("lat.om");
    let mut text = String::from("# TYPE lat gauge\n");
    for (job, high) in [("a", 20..=29), ("b", 50..=60), ("c", 0..=10)] {
        for k in 0..=60 {
            let v = if high.contains(&k) { 5 } else { 1 };
            text.push_str(&format!("lat{{job=\"{job}\"}} {v} {}\n", EP_BASE + k * 60));
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(&file, text).unwrap();
    ok(tsq(&db, &["ingest", file.to_str().unwrap()]));
    (dir, db)
}

#[test]
fn episodes_as_prom_json_and_charts() {
    let (dir, db) = episodes_db();
    let end = (EP_BASE + 3600).to_string();
    let q = "episodes((lat > 3)[1h:1m], 5m)";
    let o = ok(tsq(
        &db,
        &["query", "--time", &end, "--format", "prom-json", q],
    ));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "episodes");
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 3, "{v}");
    let get = |job: &str| r.iter().find(|e| e["metric"]["job"] == job).unwrap();
    // Minutes 20..=29: the end is the step after the last one that held.
    let a = get("a");
    assert_eq!(a["start"], serde_json::json!(EP_BASE + 20 * 60));
    assert_eq!(a["end"], serde_json::json!(EP_BASE + 30 * 60));
    assert_eq!(a["flags"], serde_json::json!([]));
    assert_eq!(
        a["measures"]["held_since"],
        format!("{}", EP_BASE + 25 * 60)
    );
    // Still holding at the evaluation time.
    let b = get("b");
    assert_eq!(b["start"], serde_json::json!(EP_BASE + 50 * 60));
    assert_eq!(b["end"], serde_json::json!(EP_BASE + 3600));
    assert_eq!(b["flags"], serde_json::json!(["ongoing"]));
    // Holding at the first step of the window (minute 1; minute 0 is outside (t-1h, t]).
    let c = get("c");
    assert_eq!(c["start"], serde_json::json!(EP_BASE + 60));
    assert_eq!(c["end"], serde_json::json!(EP_BASE + 11 * 60));
    assert_eq!(c["flags"], serde_json::json!(["truncated_start"]));

    // The timeline: one row per job; b reaches the right edge, c starts truncated.
    let svg = dir.path().join("e.svg");
    let o = Command::new(env!("CARGO_BIN_EXE_tsq"))
        .env("COLUMNS", "100")
        .args(["--db", db.to_str().unwrap(), "query", "--time", &end])
        .args(["--format", "chart", "--svg", svg.to_str().unwrap(), q])
        .output()
        .unwrap();
    let o = ok(o);
    let out = stdout(&o);
    let row = |job: &str| -> Vec<char> {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{{job=\"{job}\"}}")))
            .unwrap_or_else(|| panic!("no row for {job}: {out}"));
        line.split_once('│').unwrap().1.chars().collect()
    };
    let (ra, rb, rc) = (row("a"), row("b"), row("c"));
    let w = ra.len();
    // The axis runs from c's start (minute 1) to b's end (minute 60): 59 minutes.
    let col = |m: f64| ((m - 1.0) / 59.0 * (w - 1) as f64).round() as usize;
    assert_eq!(rc[0], '◀', "{out}");
    assert_eq!(rb[w - 1], '▶', "{out}");
    assert_eq!(ra[col(20.0)], '█', "{out}");
    assert_eq!(ra[col(20.0) - 1], ' ', "{out}");
    assert_eq!(ra[col(31.0)], ' ', "{out}");
    assert_eq!(rb[col(49.0)], ' ', "{out}");
    assert_eq!(rb[col(50.0)], '█', "{out}");
    assert!(out.contains("3 episodes in 3 series"), "{out}");
    let svg = std::fs::read_to_string(svg).unwrap();
    assert_eq!(svg.matches(r#"class="episode""#).count(), 3, "{svg}");

    // Shaded over the series: the episodes of a and b at the end of the range.
    let svg = dir.path().join("s.svg");
    let o = ok(tsq(
        &db,
        &[
            "query",
            "--start",
            &EP_BASE.to_string(),
            "--end",
            &end,
            "--step",
            "1m",
            "--format",
            "chart",
            "--shade",
            "episodes((lat{job!=\"c\"} > 3)[1h:1m], 5m)",
            "--svg",
            svg.to_str().unwrap(),
            "lat",
        ],
    ));
    let out = stdout(&o);
    assert!(out.contains("episodes1: {job=\"a\"} (1 episode)"), "{out}");
    assert!(out.contains("episodes2: {job=\"b\"} (1 episode)"), "{out}");
    let svg = std::fs::read_to_string(svg).unwrap();
    assert_eq!(svg.matches(r#"class="episode""#).count(), 2, "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");

    // --shade needs episodes, and a chart.
    let o = tsq(
        &db,
        &[
            "query", "--time", &end, "--format", "chart", "--shade", "lat", "lat",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--shade needs a query that returns episodes"),
        "{}",
        stderr(&o)
    );
    let o = tsq(&db, &["query", "--time", &end, "--shade", q, "lat"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--format chart"), "{}", stderr(&o));
}

#[test]
fn query_errors_point_at_the_column() {
    let (_dir, db) = small_db();
    let o = tsq(&db, &["query", "sum(rate(http_requests_total[5m])"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("1:"), "{err}");
    assert!(err.contains('^'), "{err}");
    let o = tsq(&db, &["query", "--format", "prom-json", "rate(x)"]);
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    assert!(v["error"].as_str().unwrap().contains("range vector"), "{v}");
}

#[test]
fn malformed_files_are_rejected_with_position_and_leave_the_database_unchanged() {
    let (dir, db) = small_db();
    let before = snapshot(&db);
    let cases: &[(&str, &str, &str)] = &[
        (
            "bad_value.om",
            "a 1 1700000000\na x 1700000001\n# EOF\n",
            ":2:3:",
        ),
        ("bad_label.om", "a{b=\"1\" 1 1700000000\n# EOF\n", ":1:"),
        ("no_eof.om", "# TYPE a gauge\na 1 1700000000\n", ":3:"),
        ("bad.prom", "up 1\nup{job=\"x\",} 2\nup{job=} 3\n", ":3:"),
        (
            "bad.lp",
            "cpu,host=a usage=1 1700000000000000000\ncpu,host=a usage=\"str\" 1\n",
            ":2:",
        ),
    ];
    for (name, text, pos) in cases {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        let fmt = if name.ends_with(".lp") {
            "influx"
        } else if name.ends_with(".prom") {
            "prometheus"
        } else {
            "openmetrics"
        };
        let o = tsq(&db, &["ingest", "--format", fmt, f.to_str().unwrap()]);
        assert!(!o.status.success(), "{name} was accepted");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("{}{pos}", f.display())),
            "{name}: {err}"
        );
        assert_eq!(snapshot(&db), before, "{name}: the database changed");
    }
    // A bad file never creates a database either.
    let fresh = dir.path().join("fresh");
    let f = dir.path().join("bad_value.om");
    assert!(!tsq(&fresh, &["ingest", f.to_str().unwrap()])
        .status
        .success());
    assert!(
        !fresh.exists(),
        "a rejected file created the database directory"
    );
    // Nothing of the bad files is visible.
    let o = ok(tsq(&db, &["series"]));
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
}

#[test]
fn skip_invalid_imports_the_good_lines_and_counts_the_bad() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let f = dir.path().join("mixed.prom");
    std::fs::write(
        &f,
        "a 1 1700000000000\nbroken line\na 2 1700000015000\nb{ 3\nb 4 1700000015000\n",
    )
    .unwrap();
    let o = tsq(
        &db,
        &[
            "ingest",
            "--format",
            "prometheus",
            "--skip-invalid",
            f.to_str().unwrap(),
        ],
    );
    let err = stderr(&o);
    assert!(err.contains("skipping 2 invalid lines"), "{err}");
    assert!(err.contains(":2:") && err.contains(":4:"), "{err}");
    assert!(err.contains("3 samples"), "{err}");
}

#[test]
fn stdin_dump_and_reingest_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    ok(tsq_stdin(
        &db,
        &["ingest", "--format", "openmetrics", "-"],
        SMALL,
    ));
    let dump = stdout(&ok(tsq(&db, &["dump"])));
    assert!(dump.trim_end().ends_with("# EOF"), "{dump}");
    let db2 = dir.path().join("db2");
    ok(tsq_stdin(
        &db2,
        &["ingest", "--format", "openmetrics", "-"],
        &dump,
    ));
    assert_eq!(stdout(&ok(tsq(&db2, &["dump"]))), dump);
    let labels = stdout(&ok(tsq(&db2, &["labels"])));
    assert_eq!(
        labels.lines().collect::<Vec<_>>(),
        vec!["__name__", "code", "job", "room"]
    );
    let values = stdout(&ok(tsq(&db2, &["labels", "room"])));
    assert_eq!(values.trim(), "a b");
    let meta = stdout(&ok(tsq(&db2, &["meta"])));
    assert!(meta.contains("temp") && meta.contains("gauge"), "{meta}");
}

#[test]
fn compact_delete_check_and_corruption() {
    let (_dir, db) = small_db();
    ok(tsq(&db, &["compact"]));
    let o = ok(tsq(&db, &["check"]));
    assert!(stdout(&o).starts_with("ok:"), "{}", stdout(&o));
    ok(tsq(&db, &["delete", "{code=\"500\"}"]));
    let o = ok(tsq(&db, &["series", "http_requests_total"]));
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
    ok(tsq(&db, &["compact"]));
    assert!(stdout(&ok(tsq(&db, &["inspect"]))).contains("blocks (1)"));
    // Damage a chunk: check fails and names the file; queries touching it fail.
    let block = std::fs::read_dir(db.join("blocks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&block).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(&block, bytes).unwrap();
    let o = tsq(&db, &["check"]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains(&block.display().to_string()),
        "{}",
        stdout(&o)
    );
    // A query that reads the damaged chunk fails and says why.
    let o = tsq(
        &db,
        &[
            "query",
            "--time",
            "1700000030",
            "sum_over_time(http_requests_total[1m])",
        ],
    );
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("checksum"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&block.display().to_string()),
        "{}",
        stderr(&o)
    );
    // An instant selector takes the last sample from the chunk's statistics, which live
    // in the block index under its own checksum: it does not read the damaged bytes, and
    // its answer is the stored one.
    let o = ok(tsq(
        &db,
        &["query", "--time", "1700000030", "http_requests_total"],
    ));
    let out = stdout(&o);
    assert!(
        out.contains("{code=\"200\", job=\"api\"}") && out.contains(" 30"),
        "{out}"
    );
}

#[test]
fn repair_rebuilds_a_damaged_manifest() {
    let (_dir, db) = small_db();
    ok(tsq(&db, &["compact"]));
    let query = [
        "query",
        "--time",
        "1700000030",
        "--format",
        "csv",
        "http_requests_total",
    ];
    let before = stdout(&ok(tsq(&db, &query)));
    // Nothing to do on an intact database.
    let o = ok(tsq(&db, &["repair"]));
    assert!(stdout(&o).contains("nothing to repair"), "{}", stdout(&o));
    // A damaged manifest: the database refuses to open, check points at repair.
    let m = db.join("MANIFEST");
    let mut bytes = std::fs::read(&m).unwrap();
    bytes[5] ^= 0x01;
    std::fs::write(&m, bytes).unwrap();
    let o = tsq(&db, &["check"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("tsq repair"), "{}", stderr(&o));
    let o = ok(tsq(&db, &["repair"]));
    assert!(
        stdout(&o).contains("1 blocks listed (8 samples)"),
        "{}",
        stdout(&o)
    );
    assert!(db.join("MANIFEST.damaged").exists());
    assert!(stdout(&ok(tsq(&db, &["check"]))).starts_with("ok:"));
    assert_eq!(stdout(&ok(tsq(&db, &query))), before);
}

#[test]
fn gen_is_deterministic_and_ingests() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.om");
    let b = dir.path().join("b.lp");
    ok(tsq(
        dir.path(),
        &[
            "gen",
            "--dataset",
            "devops",
            "--hosts",
            "2",
            "--days",
            "1",
            "--out",
            a.to_str().unwrap(),
        ],
    ));
    let first = std::fs::read(&a).unwrap();
    ok(tsq(
        dir.path(),
        &[
            "gen",
            "--dataset",
            "devops",
            "--hosts",
            "2",
            "--days",
            "1",
            "--out",
            a.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read(&a).unwrap(), first, "same seed, same bytes");
    ok(tsq(
        dir.path(),
        &[
            "gen",
            "--dataset",
            "devops",
            "--hosts",
            "2",
            "--format",
            "influx",
            "--out",
            b.to_str().unwrap(),
        ],
    ));
    let db1 = dir.path().join("db1");
    let db2 = dir.path().join("db2");
    ok(tsq(&db1, &["ingest", a.to_str().unwrap()]));
    ok(tsq(
        &db2,
        &["ingest", "--precision", "ns", b.to_str().unwrap()],
    ));
    // The same samples through both formats.
    let q = [
        "query",
        "--time",
        "2026-01-01T12:00:00Z",
        "--format",
        "csv",
        "sum(count_over_time({__name__=~\"cpu_.*\"}[1d]))",
    ];
    let n1 = stdout(&ok(tsq(&db1, &q)));
    assert_eq!(n1, stdout(&ok(tsq(&db2, &q))));
    assert!(
        n1.contains(",86240\n") || n1.contains(",86220\n") || n1.lines().nth(1).is_some(),
        "{n1}"
    );
}

#[test]
fn repl_answers_and_knows_its_commands() {
    let (_dir, db) = small_db();
    let o = ok(tsq_stdin(
        &db,
        &["repl"],
        ".help\n.time 1700000030\n.format csv\ncount(\\\nhttp_requests_total)\n.quit\n",
    ));
    let out = stdout(&o);
    assert!(out.contains(".format FMT"), "{out}");
    assert!(out.contains("scalar") || out.contains(",2\n"), "{out}");
}

#[test]
fn a_second_writer_is_refused_while_readers_work() {
    let (_dir, db) = small_db();
    let _held = tsq::storage::Db::open(&db).unwrap();
    let o = tsq(&db, &["compact"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    ok(tsq(
        &db,
        &[
            "query",
            "--time",
            "1700000030",
            "count(http_requests_total)",
        ],
    ));
}

/// Files of 16 MiB or more are read on two threads (docs/cli.md): the same guarantees as
/// small files. A bad line in the second half is reported at its exact line and column and
/// leaves the database byte-identical; a bad line in the first half likewise; standard input
/// is read the same way; a good file imports every sample, with its metadata, also when the
/// cut falls inside a counter family whose `_created` samples are skipped.
#[test]
fn large_files_read_on_two_threads_keep_every_guarantee() {
    let (dir, db) = small_db();
    // About 20 MiB: two families, the second (a counter with `_created` samples) across the
    // middle of the file.
    let mut body = String::from("# TYPE g gauge\n# HELP g a gauge\n");
    let mut samples = 0u64;
    let mut lines = 2usize;
    for i in 0..60_000u64 {
        body.push_str(&format!(
            "g{{host=\"h{}\",pad=\"{}\"}} {}.25 {}\n",
            i % 50,
            "p".repeat(40),
            i,
            1_700_000_000 + i
        ));
        samples += 1;
        lines += 1;
    }
    body.push_str("# TYPE c counter\n# HELP c a counter\n");
    lines += 2;
    let mut bad_second_half = None;
    let mut i = 0u64;
    while body.len() < 20 << 20 {
        let host = i % 50;
        body.push_str(&format!(
            "c_total{{host=\"h{host}\",pad=\"{}\"}} {i} {}\n",
            "q".repeat(40),
            1_700_000_000 + i / 50
        ));
        body.push_str(&format!("c_created{{host=\"h{host}\"}} 1 1700000000\n"));
        samples += 1;
        lines += 2;
        if bad_second_half.is_none() && body.len() > 15 << 20 {
            bad_second_half = Some((body.len(), lines + 1));
        }
        i += 1;
    }
    body.push_str("# EOF\n");
    let (cut, bad_line) = bad_second_half.unwrap();
    let before = snapshot(&db);
    let check_rejected = |name: &str, text: &str, line: usize, col: usize, stdin: bool| {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        let o = if stdin {
            tsq_stdin(&db, &["ingest", "--format", "openmetrics", "-"], text)
        } else {
            tsq(&db, &["ingest", f.to_str().unwrap()])
        };
        assert!(!o.status.success(), "{name} was accepted");
        let err = stderr(&o);
        let prefix = if stdin {
            "<stdin>".to_string()
        } else {
            f.display().to_string()
        };
        assert!(
            err.contains(&format!("{prefix}:{line}:{col}: ")),
            "{name}: expected {line}:{col} in {err}"
        );
        assert_eq!(snapshot(&db), before, "{name}: the database changed");
    };
    // Second half: a bad value (column 3 of `c_total{...} x`).
    let mut bad = body.clone();
    bad.insert_str(cut, "c_total{host=\"h1\"} x 1700000000\n");
    let col = "c_total{host=\"h1\"} ".chars().count() + 1;
    check_rejected("bad_second.om", &bad, bad_line, col, false);
    check_rejected("bad_second_stdin.om", &bad, bad_line, col, true);
    // First half: a bad label.
    let mut bad = body.clone();
    let at = body.find("g{host=\"h7\"").unwrap();
    bad.insert_str(at, "g{host=\"h7\" 1 1\n");
    let line = body[..at].matches('\n').count() + 1;
    check_rejected("bad_first.om", &bad, line, 13, false);
    // No `# EOF`.
    let cut_eof = &body[..body.len() - "# EOF\n".len()];
    check_rejected("no_eof.om", cut_eof, lines + 1, 1, false);
    // The good file: every sample (not the `_created` ones), both families' metadata.
    let f = dir.path().join("good.om");
    std::fs::write(&f, &body).unwrap();
    let o = ok(tsq(&db, &["ingest", f.to_str().unwrap()]));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(": {samples} samples, 100 series")),
        "{samples}: {err}"
    );
    let o = ok(tsq(&db, &["series", "{__name__=~\"c_created|g|c_total\"}"]));
    assert_eq!(stdout(&o).lines().count(), 100, "{}", stdout(&o));
    let o = ok(tsq(
        &db,
        &["query", "--time", "1700000000", "count(c_total)"],
    ));
    assert!(stdout(&o).contains("50"), "{}", stdout(&o));
    let o = ok(tsq(&db, &["dump", "c_total{host=\"h3\"}"]));
    let dump = stdout(&o);
    assert!(dump.contains("# TYPE c counter"), "{dump}");
    assert!(dump.contains("# HELP c a counter"), "{dump}");
    // Without `_created` lines the second half's parse stands (two halves staged): the same
    // samples, read back through standard input too.
    let plain: String = body
        .lines()
        .filter(|l| !l.starts_with("c_created"))
        .map(|l| format!("{l}\n"))
        .collect();
    for stdin in [false, true] {
        let fresh = dir.path().join(format!("plain-{stdin}"));
        let f = dir.path().join("plain.om");
        std::fs::write(&f, &plain).unwrap();
        let o = if stdin {
            tsq_stdin(&fresh, &["ingest", "--format", "openmetrics", "-"], &plain)
        } else {
            tsq(&fresh, &["ingest", f.to_str().unwrap()])
        };
        let err = stderr(&ok(o));
        assert!(
            err.contains(&format!(": {samples} samples, 100 series")),
            "{samples}: {err}"
        );
        let o = ok(tsq(&fresh, &["dump", "c_total{host=\"h3\"}"]));
        assert_eq!(stdout(&o), dump, "stdin {stdin}");
    }
}
