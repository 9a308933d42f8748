//! End-to-end tests of `tsq backtest`: a small hand-written history with known behaviour,
//! replayed through the binary. Every expected episode below is derived by hand in the
//! comment next to it (evaluations every minute, on the minute).

use std::path::Path;
use std::process::Output;

use serde_json::Value;

mod common;
use common::{ok_as, stderr, stdout, tsq};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// The standard output of a run that must succeed.
fn ok(o: Output) -> String {
    stdout(&ok_as(o, "tsq"))
}

/// `00:MM` of 2026-01-01 as RFC 3339.
fn at(min: i64) -> String {
    format!("2026-01-01T00:{min:02}:00Z")
}

/// One sample per minute for minutes 0..=40 of each series:
/// * `lat{svc="a"}`: 1.0 at minutes 10..=14, else 0.1;
/// * `lat2{svc="a"}`: 1.0 at minutes 12 and 25, else 0.1;
/// * `err{svc="a"}`: 1.0 at minutes 5, 6, 9, 10, else 0;
/// * `up{inst="1"|"2"}`: 0 at minutes 10..=19, else 1; `up{inst="3"}`: 0 at 14..=19, else 1.
fn history() -> String {
    let mut s = String::new();
    for m in 0..=40i64 {
        let t = T0 + m * 60_000;
        let lat = if (10..=14).contains(&m) { 1.0 } else { 0.1 };
        let lat2 = if m == 12 || m == 25 { 1.0 } else { 0.1 };
        let err = if [5, 6, 9, 10].contains(&m) { 1.0 } else { 0.0 };
        s += &format!("lat{{svc=\"a\"}} {lat} {t}\n");
        s += &format!("lat2{{svc=\"a\"}} {lat2} {t}\n");
        s += &format!("err{{svc=\"a\"}} {err} {t}\n");
        for inst in 1..=3 {
            let down = if inst == 3 { 14..=19 } else { 10..=19 };
            let up = if down.contains(&m) { 0 } else { 1 };
            s += &format!("up{{inst=\"{inst}\"}} {up} {t}\n");
        }
    }
    s
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("h.prom");
    std::fs::write(&file, history()).unwrap();
    let db = dir.path().join("db");
    ok(tsq(
        &db,
        &["ingest", "--format", "prometheus", file.to_str().unwrap()],
    ));
    dir
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

fn backtest_json(dir: &Path, rules: &str, extra: &[&str]) -> Value {
    let r = write(dir, "rules.yml", rules);
    let mut args = vec![
        "backtest",
        "--rules",
        &r,
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "2026-01-01T00:40:00Z",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = ok(tsq(&dir.join("db"), &args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn rule<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no rule {name} in {v:#}"))
}

/// `(start, end)` of every episode of a rule, per alert in label order.
fn episodes(v: &Value, name: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for a in rule(v, name)["alerts"].as_array().unwrap() {
        for e in a["episodes"].as_array().unwrap() {
            out.push((
                e["start"].as_str().unwrap().to_string(),
                e["end"].as_str().map(str::to_string),
            ));
        }
    }
    out
}

fn ep(start: i64, end: i64) -> (String, Option<String>) {
    (at(start), Some(at(end)))
}

#[test]
fn for_keep_firing_for_and_annotations() {
    let dir = setup();
    let v = backtest_json(
        dir.path(),
        r#"groups:
- name: g
  rules:
  - alert: HighLat
    expr: lat > 0.5
    for: 2m
    labels:
      severity: page
      team: "{{ $labels.svc }}-team"
    annotations:
      summary: "{{ $labels.svc }} latency {{ $value | humanize }}s ({{ .Labels.__name__ }})"
      pct: '{{ $value | humanizePercentage }} {{ printf "%.2f" $value }}'
  - alert: Sticky
    expr: lat > 0.5
    keep_firing_for: 3m
"#,
        &[],
    );
    // lat > 0.5 holds at 10..=14: pending at 10, 11; fires at 12 (12 - 10 >= 2m); absent at
    // 15, resolved there.
    assert_eq!(episodes(&v, "HighLat"), vec![ep(12, 15)]);
    let a = &rule(&v, "HighLat")["alerts"][0];
    assert_eq!(
        a["labels"],
        serde_json::json!({"alertname": "HighLat", "severity": "page", "svc": "a", "team": "a-team"})
    );
    let e = &a["episodes"][0];
    assert_eq!(e["active_at"], at(10));
    assert_eq!(e["pending_seconds"], 120.0);
    assert_eq!(e["duration_seconds"], 180.0);
    assert_eq!(e["peak"], 1.0);
    assert_eq!(e["truncated"], false);
    assert_eq!(e["annotations"]["summary"], "a latency 1s (lat)");
    assert_eq!(e["annotations"]["pct"], "100% 1.00");
    let s = &rule(&v, "HighLat")["summary"];
    assert_eq!(s["firings"], 1);
    assert_eq!(s["firing_seconds"], 180.0);
    assert_eq!(s["pending_never_fired"], 0);
    // for 0 fires at 10; absent from 15: kept firing at 15, 16, 17 (15 + 3m not reached),
    // resolved at 18.
    assert_eq!(episodes(&v, "Sticky"), vec![ep(10, 18)]);
}

#[test]
fn replay_starts_early_and_flags_truncated_episodes() {
    let dir = setup();
    let r = write(
        dir.path(),
        "rules.yml",
        "groups:\n- name: g\n  rules:\n  - alert: HighLat\n    expr: lat > 0.5\n    for: 2m\n",
    );
    let out = ok(tsq(
        &dir.path().join("db"),
        &[
            "backtest",
            "--rules",
            &r,
            "--from",
            &at(12),
            "--to",
            &at(40),
            "--format",
            "json",
        ],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    // Replay starts 2m early (00:10): pending there at the first evaluation, so the firing at
    // 12 is right but flagged as possibly truncated.
    assert_eq!(episodes(&v, "HighLat"), vec![ep(12, 15)]);
    assert_eq!(
        rule(&v, "HighLat")["alerts"][0]["episodes"][0]["truncated"],
        true
    );
    assert_eq!(rule(&v, "HighLat")["evaluations"], 29);
    // From 00:13 the replay starts at 00:11: pending from 11, fires at 13 instead.
    let out = ok(tsq(
        &dir.path().join("db"),
        &[
            "backtest",
            "--rules",
            &r,
            "--from",
            &at(13),
            "--to",
            &at(40),
            "--format",
            "json",
        ],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(episodes(&v, "HighLat"), vec![ep(13, 15)]);
}

#[test]
fn limit_resets_the_rules_alerts() {
    let dir = setup();
    let v = backtest_json(
        dir.path(),
        "groups:\n- name: g\n  limit: 2\n  rules:\n  - alert: Down\n    expr: up == 0\n",
        &[],
    );
    // inst 1 and 2 fire at 10; at 14 inst 3 joins: 3 alerts > limit 2, the evaluation fails
    // and every alert is reset, and again at each of 15..=19 (all three stay down).
    let r = rule(&v, "Down");
    assert_eq!(episodes(&v, "Down"), vec![ep(10, 14), ep(10, 14)]);
    assert_eq!(r["alerts"][0]["episodes"][0]["end_reason"], "limit");
    assert_eq!(r["errors_total"], 6);
    assert_eq!(r["errors"][0]["at"], at(14));
    assert_eq!(
        r["errors"][0]["message"],
        "exceeded limit of 2 with 3 alerts"
    );
}

#[test]
fn query_offset_shifts_the_query_time() {
    let dir = setup();
    let v = backtest_json(
        dir.path(),
        "groups:\n- name: g\n  query_offset: 2m\n  rules:\n  - alert: Late\n    expr: lat > 0.5\n",
        &[],
    );
    // Evaluation at t queries t - 2m: lat is high for queries 10..=14, so evaluations
    // 12..=16 see it; resolved at 17.
    assert_eq!(episodes(&v, "Late"), vec![ep(12, 17)]);
}

#[test]
fn recording_rules_feed_later_rules_with_staleness() {
    let dir = setup();
    let v = backtest_json(
        dir.path(),
        r#"groups:
- name: g
  rules:
  - record: svc:lat:max
    expr: max by (svc) (lat)
  - record: hot
    expr: lat > 0.5
  - alert: ViaRecorded
    expr: svc:lat:max > 0.5
    for: 1m
  - alert: Hot
    expr: hot
"#,
        &[],
    );
    // svc:lat:max is recorded at every evaluation; the alert sees the value recorded at the
    // same time: pending 10, fires 11, resolved 15.
    assert_eq!(episodes(&v, "ViaRecorded"), vec![ep(11, 15)]);
    // `hot` is written at 10..=14 only and marked stale at 15: the alert resolves at 15
    // (without the staleness marker the 5m lookback would keep it until 20).
    assert_eq!(episodes(&v, "Hot"), vec![ep(10, 15)]);
    assert_eq!(rule(&v, "hot")["series"], 1);
}

#[test]
fn groups_in_parallel_or_in_order() {
    let dir = setup();
    // Independent groups (replayed concurrently): results as if alone, in file order.
    let v = backtest_json(
        dir.path(),
        "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: lat > 0.5\n- name: b\n  rules:\n  - alert: B\n    expr: err > 0.5\n",
        &[],
    );
    let names: Vec<&str> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(episodes(&v, "A"), vec![ep(10, 15)]);
    assert_eq!(episodes(&v, "B"), vec![ep(5, 7), ep(9, 11)]);
    // Group b reads what group a records: replayed after it, it sees the recording.
    let v = backtest_json(
        dir.path(),
        "groups:\n- name: a\n  rules:\n  - record: hot\n    expr: lat > 0.5\n- name: b\n  rules:\n  - alert: Hot\n    expr: hot\n",
        &[],
    );
    assert_eq!(episodes(&v, "Hot"), vec![ep(10, 15)]);
}

#[test]
fn duplicate_alert_labels_fail_that_evaluation_only() {
    let dir = setup();
    let v = backtest_json(
        dir.path(),
        "groups:\n- name: g\n  rules:\n  - alert: Dup\n    expr: '{__name__=~\"lat|lat2\"} > 0.5'\n",
        &[],
    );
    // lat fires at 10; at 12 lat and lat2 both give {svc="a"}: that evaluation fails and the
    // state is kept; resolved at 15; lat2 alone fires at 25, resolved at 26.
    assert_eq!(episodes(&v, "Dup"), vec![ep(10, 15), ep(25, 26)]);
    let r = rule(&v, "Dup");
    assert_eq!(r["errors_total"], 1);
    assert_eq!(r["errors"][0]["at"], at(12));
    assert!(r["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("same labelset"));
    assert_eq!(r["summary"]["flaps"], 0);
}

#[test]
fn flaps_and_incident_scores() {
    let dir = setup();
    let inc = write(
        dir.path(),
        "incidents.txt",
        "# matchers start end\n{svc=\"a\"} 2026-01-01T00:09:00Z 2026-01-01T00:16:00Z\n{svc=\"b\"}, 2026-01-01T00:20:00Z, 2026-01-01T00:25:00Z\n",
    );
    let v = backtest_json(
        dir.path(),
        "groups:\n- name: g\n  rules:\n  - alert: Err\n    expr: err > 0.5\n  - alert: HighLat\n    expr: lat > 0.5\n    for: 2m\n",
        &["--incidents", &inc],
    );
    // err fires at 5 (resolved 7) and at 9 (resolved 11): the second starts 2m after the first
    // resolved, within for (0) + 5 intervals: one flap.
    assert_eq!(episodes(&v, "Err"), vec![ep(5, 7), ep(9, 11)]);
    let s = &rule(&v, "Err")["summary"];
    assert_eq!(s["flaps"], 1);
    // Incident a [9, 16): the firing at 9 detects it (TTD 0); the one at 5 ended before it:
    // a false positive. Incident b matches no alert (svc differs): missed.
    let i = &s["incidents"];
    assert_eq!(i["incidents"], 2);
    assert_eq!(i["detected"], 1);
    assert_eq!(i["true_positives"], 1);
    assert_eq!(i["false_positives"], 1);
    assert_eq!(i["missed"], 1);
    assert_eq!(i["precision"], 0.5);
    assert_eq!(i["recall"], 0.5);
    assert_eq!(i["ttd_median_seconds"], 0.0);
    // HighLat fires at 12: detects incident a 3m after it began.
    let i = &rule(&v, "HighLat")["summary"]["incidents"];
    assert_eq!(i["precision"], 1.0);
    assert_eq!(i["recall"], 0.5);
    assert_eq!(i["ttd_median_seconds"], 180.0);
    assert_eq!(i["ttd_max_seconds"], 180.0);
}

#[test]
fn truth_sidecar_incidents_with_kind_filter() {
    let dir = setup();
    let truth = write(
        dir.path(),
        "truth.json",
        &format!(
            r#"{{"dataset": "x", "events": [
  {{"kind": "latency_shift", "labels": {{"__name__": "lat", "svc": "a"}}, "start_ms": {}, "end_ms": {}}},
  {{"kind": "restart", "labels": {{"svc": "a"}}, "start_ms": {}, "end_ms": {}}}
]}}"#,
            T0 + 11 * 60_000,
            T0 + 14 * 60_000,
            T0 + 30 * 60_000,
            T0 + 31 * 60_000
        ),
    );
    let rules =
        "groups:\n- name: g\n  rules:\n  - alert: HighLat\n    expr: lat > 0.5\n    for: 2m\n";
    let v = backtest_json(dir.path(), rules, &["--incidents", &truth]);
    // Both events match svc="a" (__name__ is not an alert label): the restart is missed.
    let i = &rule(&v, "HighLat")["summary"]["incidents"];
    assert_eq!(
        (i["incidents"].clone(), i["detected"].clone()),
        (2.into(), 1.into())
    );
    assert_eq!(i["ttd_median_seconds"], 60.0);
    let v = backtest_json(
        dir.path(),
        rules,
        &[
            "--incidents",
            &truth,
            "--incident-kinds",
            "latency_shift,error_burst",
        ],
    );
    let i = &rule(&v, "HighLat")["summary"]["incidents"];
    assert_eq!(
        (i["incidents"].clone(), i["recall"].clone()),
        (1.into(), 1.0.into())
    );
}

#[test]
fn table_and_markdown_output() {
    let dir = setup();
    let r = write(
        dir.path(),
        "rules.yml",
        "groups:\n- name: g\n  rules:\n  - alert: HighLat\n    expr: lat > 0.5\n    for: 2m\n    annotations:\n      summary: 'lat {{ $value }}'\n",
    );
    let db = dir.path().join("db");
    let args = ["backtest", "--rules", &r, "--from", &at(0), "--to", &at(40)];
    let out = ok(tsq(&db, &args));
    assert!(out.contains("RULE     GROUP  FOR  KEEP  EVALS"), "{out}");
    assert!(
        out.contains("HighLat  g      2m   0s    41     1       1        3m"),
        "{out}"
    );
    assert!(
        out.contains("    2026-01-01T00:12:00Z  2026-01-01T00:15:00Z  3m        2026-01-01T00:10:00Z  2m       1"),
        "{out}"
    );
    assert!(out.contains("      summary: lat 1\n"), "{out}");
    let mut md = args.to_vec();
    md.extend(["--format", "md"]);
    let out = ok(tsq(&db, &md));
    assert!(
        out.contains("| HighLat | g | 2m | 0s | 41 | 1 | 1 | 3m |"),
        "{out}"
    );
    assert!(out.contains("| --- |"), "{out}");
}

#[test]
fn diff_compares_two_rule_files() {
    let dir = setup();
    let old = write(
        dir.path(),
        "old.yml",
        "groups:\n- name: g\n  rules:\n  - alert: HighLat\n    expr: lat > 0.5\n    for: 2m\n",
    );
    let new = write(
        dir.path(),
        "new.yml",
        "groups:\n- name: g\n  rules:\n  - alert: HighLat\n    expr: lat > 0.5\n  - alert: Err\n    expr: err > 0.5\n",
    );
    let inc = write(
        dir.path(),
        "inc.txt",
        "{svc=\"a\"} 2026-01-01T00:09:00Z 2026-01-01T00:16:00Z\n",
    );
    let db = dir.path().join("db");
    let base = [
        "backtest",
        "diff",
        &old,
        &new,
        "--from",
        &at(0),
        "--to",
        &at(40),
        "--incidents",
        &inc,
    ];
    let out = ok(tsq(&db, &base));
    // Old: fires 12..15 (3m), TTD 3m; new (for 0): 10..15 (5m), TTD 1m.
    let line = out.lines().find(|l| l.starts_with("HighLat")).unwrap();
    assert!(line.contains("1 -> 1 (=)"), "{out}");
    assert!(line.contains("3m -> 5m (+2m)"), "{out}");
    assert!(line.contains("3m -> 1m (-2m)"), "{out}");
    let line = out.lines().find(|l| l.starts_with("Err")).unwrap();
    assert!(line.contains("(new) -> 2"), "{out}");
    let mut js = base.to_vec();
    js.extend(["--format", "json"]);
    let v: Value = serde_json::from_str(&ok(tsq(&db, &js))).unwrap();
    let h = &v["alerts"][0];
    assert_eq!(h["alert"], "HighLat");
    assert_eq!(h["delta"]["firing_seconds"], 120.0);
    assert_eq!(h["delta"]["ttd_median_seconds"], -120.0);
    assert_eq!(v["alerts"][1]["old"], Value::Null);
}

#[test]
fn malformed_rule_files_report_file_line_column() {
    let dir = setup();
    let db = dir.path().join("db");
    let cases: [(&str, &str); 6] = [
        (
            "groups:\n- name: g\n  rules:\n  - alert: X\n    expr: sum(rate(lat[5m])) by (\n",
            // The value starts at column 11 and is 23 characters long: the error is at its end.
            ":5:34: invalid expression: unexpected end of input",
        ),
        (
            "groups:\n- name: g\n  rules:\n  - alert: X\n    expr: |\n      sum(lat)\n        >> 1\n",
            // A literal block: line 7, the second `>` after 8 spaces.
            ":7:10: invalid expression",
        ),
        (
            "groups:\n- name: g\n  rules:\n  - alert: X\n    expr: lat\n    for: 5 minutes\n",
            ":6:10: invalid duration \"5 minutes\"",
        ),
        (
            "groups:\n- name: g\n  rules:\n  - alert: X\n    expr: lat\n    severity: page\n",
            ":6:5: unknown key \"severity\" in a rule",
        ),
        (
            "groups:\n- name: g\n  rules:\n  - alert: X\n    expr: lat\n    annotations:\n      s: '{{ if $value }}hot{{ end }}'\n",
            ":7:14: template of annotation \"s\": unsupported template action \"if\"",
        ),
        (
            "groups:\n- name: g\n  rules: []\n- name: g\n  rules:\n  - record: x\n    alert: y\n    expr: up\n",
            ":4:3: group name \"g\" is repeated",
        ),
    ];
    for (body, want) in cases {
        let r = write(dir.path(), "bad.yml", body);
        let o = tsq(
            &db,
            &["backtest", "--rules", &r, "--from", &at(0), "--to", &at(40)],
        );
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(
            err.contains(&format!("{r}{want}")),
            "want {want:?} in:\n{err}"
        );
    }
}

/// The baseline recipe of docs/baselines.md ("Finding the injected anomalies"), run as a user
/// would: generate the workload dataset with its ground truth, ingest it, replay the rule file
/// shipped in docs/examples and score it against the injected latency anomalies. Three days
/// keep the debug-build test short; the document's figures are for eight.
#[test]
fn baseline_recipe_finds_the_injected_latency_anomalies() {
    let dir = tempfile::tempdir().unwrap();
    let (om, truth) = (dir.path().join("w.om"), dir.path().join("truth.json"));
    let db = dir.path().join("db");
    ok(tsq(
        &db,
        &[
            "gen",
            "--dataset",
            "workload",
            "--days",
            "3",
            "--out",
            om.to_str().unwrap(),
            "--truth",
            truth.to_str().unwrap(),
        ],
    ));
    ok(tsq(&db, &["ingest", "--no-progress", om.to_str().unwrap()]));
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/latency-anomalies.yml"
    );
    let out = ok(tsq(
        &db,
        &[
            "backtest",
            "--rules",
            rules,
            "--from",
            "2026-01-02T00:00:00Z",
            "--to",
            "2026-01-04T00:00:00Z",
            "--incidents",
            truth.to_str().unwrap(),
            "--incident-kinds",
            "latency_spike,latency_shift,latency_level_shift",
            "--format",
            "json",
        ],
    ));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let s = &rule(&v, "LatencyAnomaly")["summary"];
    let i = &s["incidents"];
    let incidents = i["incidents"].as_u64().unwrap();
    let detected = i["detected"].as_u64().unwrap();
    // The sidecar lists dozens of latency anomalies over these two days (spikes of x3 to x8,
    // deploy shifts of x1.4 to x2, service-wide shifts of x1.3 to x1.8).
    assert!(incidents >= 20, "{i}");
    // What docs/baselines.md claims for the recipe: it finds at least 90 % of them and raises
    // at most one false alarm per day (here: two days).
    assert!(detected * 10 >= incidents * 9, "{i}");
    assert!(i["false_positives"].as_u64().unwrap() <= 2, "{s}");
}
