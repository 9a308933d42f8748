//! Summaries of a replay and their output as table, JSON or markdown, plus the side-by-side
//! comparison of `tsq backtest diff`.

use std::fmt::Write as _;

use serde_json::{json, Value as Json};

use super::incidents::{self, Incident, Score};
use super::replay::{AlertHistory, RuleOutcome};
use super::rules::RuleKind;

/// Output formats of `tsq backtest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Machine-readable JSON (stable field names).
    Json,
    /// Markdown tables.
    Md,
}

/// The median of sorted values (for an even count, the mean of the two middle values, rounded
/// down).
pub fn median(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]).div_euclid(2)),
    }
}

/// The per-rule summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Label sets that fired.
    pub alerts: usize,
    /// Firing episodes overlapping the range.
    pub firings: usize,
    /// Firing time within `[from, to]` (ms).
    pub firing_ms: i64,
    /// Median episode duration (ms).
    pub median_ms: Option<i64>,
    /// Re-firings of the same labels soon after resolving (see [`FLAP_INTERVALS`]).
    pub flaps: usize,
    /// Alerts that became pending and were dropped without firing.
    pub pending_never_fired: usize,
    /// Failed evaluations.
    pub errors: usize,
    /// Scores against incidents, when given.
    pub score: Option<Score>,
}

/// A firing is a flap when it starts at most `for` + this many evaluation intervals after the
/// previous episode of the same label set resolved.
pub const FLAP_INTERVALS: i64 = 5;

/// Context of a report.
pub struct Ctx<'a> {
    /// Rule file path(s).
    pub files: Vec<String>,
    /// Range start (ms).
    pub from: i64,
    /// Range end (ms).
    pub to: i64,
    /// Incidents, if given.
    pub incidents: Option<&'a [Incident]>,
    /// Detection slack (ms); `None` = the rule's `for` + its interval.
    pub slack: Option<i64>,
}

/// End of an episode for durations: its resolution, or `to` while ongoing.
fn ep_end(e: &super::replay::Episode, to: i64) -> i64 {
    e.end.unwrap_or(to.max(e.fired_at))
}

/// Summarises one rule.
pub fn summarize(o: &RuleOutcome, cx: &Ctx<'_>) -> Summary {
    let mut durations = Vec::new();
    let mut s = Summary {
        alerts: o.alerts.len(),
        pending_never_fired: o.pending_never_fired,
        errors: o.errors.len(),
        ..Summary::default()
    };
    let flap_gap = o.rule.for_ms + FLAP_INTERVALS * o.interval_ms;
    for a in &o.alerts {
        for (i, e) in a.episodes.iter().enumerate() {
            let end = ep_end(e, cx.to);
            s.firings += 1;
            durations.push(end - e.fired_at);
            s.firing_ms += (end.min(cx.to) - e.fired_at.max(cx.from)).max(0);
            if i > 0 {
                if let Some(prev_end) = a.episodes[i - 1].end {
                    if e.fired_at - prev_end <= flap_gap {
                        s.flaps += 1;
                    }
                }
            }
        }
    }
    durations.sort_unstable();
    s.median_ms = median(&durations);
    if let (Some(incs), RuleKind::Alert(_)) = (cx.incidents, &o.rule.kind) {
        let slack = cx.slack.unwrap_or(o.rule.for_ms + o.interval_ms);
        s.score = Some(incidents::score(incs, &o.alerts, cx.from, cx.to, slack));
    }
    s
}

/// A duration as `1d2h3m4s` (zero units left out; `0s`; sub-second as `250ms`).
pub fn dur(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", dur(-ms));
    }
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if rest >= len {
            let _ = write!(out, "{}{unit}", rest / len);
            rest %= len;
        }
    }
    if rest > 0 {
        let _ = write!(out, "{rest}ms");
    }
    out
}

/// A time in RFC 3339, without milliseconds when they are zero.
pub fn time(ms: i64) -> String {
    let s = crate::timearg::fmt_time(ms);
    s.strip_suffix(".000Z")
        .map_or(s.clone(), |p| format!("{p}Z"))
}

fn num(v: f64) -> String {
    crate::output::prom_float(v)
}

fn json_num(v: f64) -> Json {
    if v.is_finite() {
        json!(v)
    } else {
        json!(num(v))
    }
}

fn labels_str(l: &tsq::storage::Labels) -> String {
    let items: Vec<String> = l
        .iter()
        .map(|x| format!("{}={:?}", x.name, x.value))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn labels_json(l: &tsq::storage::Labels) -> Json {
    Json::Object(l.iter().map(|x| (x.name.clone(), json!(x.value))).collect())
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |p| format!("{:.1}%", p * 100.0))
}

fn opt_dur(v: Option<i64>) -> String {
    v.map_or("-".into(), dur)
}

/// Aligned columns (first row = header); `md` gives a markdown table instead.
pub fn table(rows: &[Vec<String>], indent: &str, md: bool) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    if md {
        for (i, r) in rows.iter().enumerate() {
            let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
            if i == 0 {
                let _ = writeln!(out, "|{}", " --- |".repeat(r.len()));
            }
        }
        return out;
    }
    let ncol = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = vec![0; ncol];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::from(indent);
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(w[i] - c.chars().count() + 2));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The per-rule summary table of the alerting rules: header row, then one row per rule.
pub fn summary_rows(
    outcomes: &[RuleOutcome],
    summaries: &[Summary],
    with_score: bool,
) -> Vec<Vec<String>> {
    let mut rows = vec![summary_header(with_score)];
    for (o, s) in outcomes.iter().zip(summaries) {
        if matches!(o.rule.kind, RuleKind::Alert(_)) {
            rows.push(summary_row(o, s, with_score));
        }
    }
    rows
}

fn summary_header(with_score: bool) -> Vec<String> {
    let mut h: Vec<String> = [
        "RULE",
        "GROUP",
        "FOR",
        "KEEP",
        "EVALS",
        "ALERTS",
        "FIRINGS",
        "FIRING TIME",
        "MEDIAN",
        "FLAPS",
        "PENDING ONLY",
        "ERRORS",
    ]
    .map(String::from)
    .to_vec();
    if with_score {
        h.extend(
            [
                "TP",
                "FP",
                "MISSED",
                "PRECISION",
                "RECALL",
                "TTD MEDIAN",
                "TTD MAX",
            ]
            .map(String::from),
        );
    }
    h
}

fn summary_row(o: &RuleOutcome, s: &Summary, with_score: bool) -> Vec<String> {
    let mut r = vec![
        o.rule.name().to_string(),
        o.group.clone(),
        dur(o.rule.for_ms),
        dur(o.rule.keep_firing_for_ms),
        o.evaluations.to_string(),
        s.alerts.to_string(),
        s.firings.to_string(),
        dur(s.firing_ms),
        opt_dur(s.median_ms),
        s.flaps.to_string(),
        s.pending_never_fired.to_string(),
        s.errors.to_string(),
    ];
    if with_score {
        let sc = s.score.clone().unwrap_or_default();
        r.extend([
            format!("{}/{}", sc.detected, sc.incidents),
            sc.false_positives.to_string(),
            sc.missed.to_string(),
            pct(sc.precision),
            pct(sc.recall),
            opt_dur(sc.ttd_median_ms),
            opt_dur(sc.ttd_max_ms),
        ]);
    }
    r
}

fn flags(e: &super::replay::Episode) -> String {
    let mut f = Vec::new();
    if e.end.is_none() {
        f.push("ongoing");
    }
    if e.end_reason == "limit" {
        f.push("limit");
    }
    if e.truncated {
        f.push("truncated");
    }
    f.join(",")
}

fn episodes_rows(a: &AlertHistory, to: i64) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "FIRED",
        "RESOLVED",
        "DURATION",
        "ACTIVE AT",
        "PENDING",
        "PEAK",
        "FLAGS",
    ]
    .map(String::from)
    .to_vec()];
    for e in &a.episodes {
        rows.push(vec![
            time(e.fired_at),
            e.end.map_or("ongoing".into(), time),
            dur(ep_end(e, to) - e.fired_at),
            time(e.active_at),
            dur(e.fired_at - e.active_at),
            super::template::go_float(e.peak, Some(6)),
            flags(e),
        ]);
    }
    rows
}

/// Renders a report in `fmt`.
pub fn render(outcomes: &[RuleOutcome], cx: &Ctx<'_>, fmt: Format) -> String {
    let summaries: Vec<Summary> = outcomes.iter().map(|o| summarize(o, cx)).collect();
    match fmt {
        Format::Json => {
            serde_json::to_string_pretty(&report_json(outcomes, &summaries, cx))
                .expect("json serializes")
                + "\n"
        }
        Format::Table | Format::Md => render_text(outcomes, &summaries, cx, fmt == Format::Md),
    }
}

fn render_text(outcomes: &[RuleOutcome], summaries: &[Summary], cx: &Ctx<'_>, md: bool) -> String {
    let with_score = cx.incidents.is_some();
    let mut out = String::new();
    let h = |out: &mut String, level: usize, text: &str| {
        if md {
            let _ = writeln!(out, "{} {text}\n", "#".repeat(level));
        } else {
            let _ = writeln!(out, "{text}");
        }
    };
    h(
        &mut out,
        1,
        &format!(
            "Backtest of {} from {} to {}",
            cx.files.join(", "),
            time(cx.from),
            time(cx.to)
        ),
    );
    if !md {
        out.push('\n');
    }
    out.push_str(&table(
        &summary_rows(outcomes, summaries, with_score),
        "",
        md,
    ));
    let recs: Vec<&RuleOutcome> = outcomes
        .iter()
        .filter(|o| matches!(o.rule.kind, RuleKind::Record(_)))
        .collect();
    if !recs.is_empty() {
        out.push('\n');
        let mut rows = vec![["RECORD", "GROUP", "EVALS", "SERIES", "ERRORS"]
            .map(String::from)
            .to_vec()];
        for o in recs {
            rows.push(vec![
                o.rule.name().to_string(),
                o.group.clone(),
                o.evaluations.to_string(),
                o.series.to_string(),
                o.errors.len().to_string(),
            ]);
        }
        out.push_str(&table(&rows, "", md));
    }
    for o in outcomes {
        if o.alerts.is_empty() && o.errors.is_empty() {
            continue;
        }
        out.push('\n');
        h(
            &mut out,
            2,
            &format!(
                "{} {} (group {}, for {}, keep_firing_for {}, every {}{})",
                if matches!(o.rule.kind, RuleKind::Alert(_)) {
                    "alert"
                } else {
                    "record"
                },
                o.rule.name(),
                o.group,
                dur(o.rule.for_ms),
                dur(o.rule.keep_firing_for_ms),
                dur(o.interval_ms),
                if o.query_offset_ms > 0 {
                    format!(", query_offset {}", dur(o.query_offset_ms))
                } else {
                    String::new()
                }
            ),
        );
        for a in &o.alerts {
            if md {
                let _ = writeln!(out, "`{}`\n", labels_str(&a.labels));
            } else {
                let _ = writeln!(out, "  {}", labels_str(&a.labels));
            }
            let rows = episodes_rows(a, cx.to);
            if md {
                out.push_str(&table(&rows, "", true));
                for e in &a.episodes {
                    for (k, v) in &e.annotations {
                        let _ = writeln!(out, "- {} {k}: {v}", time(e.fired_at));
                    }
                }
                out.push('\n');
            } else {
                // Annotations go under each episode.
                let t = table(&rows, "    ", false);
                let mut lines = t.lines();
                if let Some(head) = lines.next() {
                    let _ = writeln!(out, "{head}");
                }
                for (line, e) in lines.zip(&a.episodes) {
                    let _ = writeln!(out, "{line}");
                    for (k, v) in &e.annotations {
                        let _ = writeln!(out, "      {k}: {}", v.replace('\n', "\n        "));
                    }
                }
            }
        }
        if !o.errors.is_empty() {
            let first = &o.errors[0];
            let line = format!(
                "{} failed evaluation{}; first at {}: {}",
                o.errors.len(),
                if o.errors.len() == 1 { "" } else { "s" },
                time(first.at),
                first.message
            );
            if md {
                let _ = writeln!(out, "**Errors:** {line}\n");
            } else {
                let _ = writeln!(out, "  errors: {line}");
            }
        }
    }
    out
}

fn score_json(s: &Score) -> Json {
    json!({
        "incidents": s.incidents,
        "detected": s.detected,
        "true_positives": s.true_positive_firings,
        "false_positives": s.false_positives,
        "missed": s.missed,
        "precision": s.precision,
        "recall": s.recall,
        "ttd_median_seconds": s.ttd_median_ms.map(|v| v as f64 / 1000.0),
        "ttd_max_seconds": s.ttd_max_ms.map(|v| v as f64 / 1000.0),
        "missed_incidents": s.missed_incidents.iter().map(|(n, t)| json!({"incident": n, "start": time(*t)})).collect::<Vec<_>>(),
    })
}

fn summary_json(s: &Summary) -> Json {
    let mut m = json!({
        "alerts": s.alerts,
        "firings": s.firings,
        "firing_seconds": s.firing_ms as f64 / 1000.0,
        "median_firing_seconds": s.median_ms.map(|v| v as f64 / 1000.0),
        "flaps": s.flaps,
        "pending_never_fired": s.pending_never_fired,
        "errors": s.errors,
    });
    if let Some(sc) = &s.score {
        m["incidents"] = score_json(sc);
    }
    m
}

fn report_json(outcomes: &[RuleOutcome], summaries: &[Summary], cx: &Ctx<'_>) -> Json {
    let rules: Vec<Json> = outcomes
        .iter()
        .zip(summaries)
        .map(|(o, s)| {
            let (kind, name) = match &o.rule.kind {
                RuleKind::Alert(n) => ("alert", n),
                RuleKind::Record(n) => ("record", n),
            };
            let errors: Vec<Json> = o
                .errors
                .iter()
                .take(100)
                .map(|e| json!({"at": time(e.at), "at_ms": e.at, "message": e.message}))
                .collect();
            let mut r = json!({
                "kind": kind,
                "name": name,
                "group": o.group,
                "expr": o.rule.expr_text,
                "line": o.rule.pos.line,
                "interval_seconds": o.interval_ms as f64 / 1000.0,
                "query_offset_seconds": o.query_offset_ms as f64 / 1000.0,
                "limit": o.limit,
                "evaluations": o.evaluations,
                "errors_total": o.errors.len(),
                "errors": errors,
            });
            if kind == "record" {
                r["series"] = json!(o.series);
                return r;
            }
            r["for_seconds"] = json!(o.rule.for_ms as f64 / 1000.0);
            r["keep_firing_for_seconds"] = json!(o.rule.keep_firing_for_ms as f64 / 1000.0);
            r["summary"] = summary_json(s);
            r["alerts"] = Json::Array(
                o.alerts
                    .iter()
                    .map(|a| {
                        json!({
                            "labels": labels_json(&a.labels),
                            "episodes": a.episodes.iter().map(|e| json!({
                                "start": time(e.fired_at),
                                "start_ms": e.fired_at,
                                "end": e.end.map(time),
                                "end_ms": e.end,
                                "end_reason": e.end_reason,
                                "duration_seconds": (ep_end(e, cx.to) - e.fired_at) as f64 / 1000.0,
                                "active_at": time(e.active_at),
                                "active_at_ms": e.active_at,
                                "pending_seconds": (e.fired_at - e.active_at) as f64 / 1000.0,
                                "truncated": e.truncated,
                                "value_at_firing": json_num(e.value),
                                "peak": json_num(e.peak),
                                "annotations": Json::Object(e.annotations.iter().map(|(k, v)| (k.clone(), json!(v))).collect()),
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            );
            r
        })
        .collect();
    json!({
        "files": cx.files,
        "from": time(cx.from),
        "from_ms": cx.from,
        "to": time(cx.to),
        "to_ms": cx.to,
        "flap_definition": format!("a firing that starts at most for + {FLAP_INTERVALS} intervals after the previous episode of the same labels resolved"),
        "rules": rules,
    })
}

/// Alerting rules by name; a name used again gets `#2`, `#3`...
fn by_name(outcomes: &[RuleOutcome], cx: &Ctx<'_>) -> Vec<(String, Summary)> {
    let mut out: Vec<(String, Summary)> = Vec::new();
    for o in outcomes {
        if let RuleKind::Alert(n) = &o.rule.kind {
            let mut name = n.clone();
            let mut k = 1;
            while out.iter().any(|(x, _)| *x == name) {
                k += 1;
                name = format!("{n}#{k}");
            }
            out.push((name, summarize(o, cx)));
        }
    }
    out
}

fn delta_i(a: i64, b: i64, f: fn(i64) -> String) -> String {
    let d = b - a;
    if d == 0 {
        "=".into()
    } else if d > 0 {
        format!("+{}", f(d))
    } else {
        format!("-{}", f(-d))
    }
}

/// `tsq backtest diff`: the two versions side by side, per alert name.
pub fn render_diff(old: &[RuleOutcome], new: &[RuleOutcome], cx: &Ctx<'_>, fmt: Format) -> String {
    let (a, b) = (by_name(old, cx), by_name(new, cx));
    let mut names: Vec<String> = a.iter().map(|x| x.0.clone()).collect();
    for (n, _) in &b {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let find = |v: &[(String, Summary)], n: &str| v.iter().find(|x| x.0 == n).map(|x| x.1.clone());
    if fmt == Format::Json {
        let items: Vec<Json> = names
            .iter()
            .map(|n| {
                let (o, nw) = (find(&a, n), find(&b, n));
                let mut delta = json!({});
                if let (Some(o), Some(nw)) = (&o, &nw) {
                    delta = json!({
                        "firings": nw.firings as i64 - o.firings as i64,
                        "firing_seconds": (nw.firing_ms - o.firing_ms) as f64 / 1000.0,
                        "median_firing_seconds": match (o.median_ms, nw.median_ms) { (Some(x), Some(y)) => Some((y - x) as f64 / 1000.0), _ => None },
                        "flaps": nw.flaps as i64 - o.flaps as i64,
                        "pending_never_fired": nw.pending_never_fired as i64 - o.pending_never_fired as i64,
                        "errors": nw.errors as i64 - o.errors as i64,
                    });
                    if let (Some(x), Some(y)) = (&o.score, &nw.score) {
                        delta["precision"] = json!(x.precision.zip(y.precision).map(|(p, q)| q - p));
                        delta["recall"] = json!(x.recall.zip(y.recall).map(|(p, q)| q - p));
                        delta["ttd_median_seconds"] = json!(x.ttd_median_ms.zip(y.ttd_median_ms).map(|(p, q)| (q - p) as f64 / 1000.0));
                        delta["false_positives"] = json!(y.false_positives as i64 - x.false_positives as i64);
                    }
                }
                json!({
                    "alert": n,
                    "old": o.as_ref().map(summary_json),
                    "new": nw.as_ref().map(summary_json),
                    "delta": delta,
                })
            })
            .collect();
        return serde_json::to_string_pretty(&json!({
            "files": cx.files,
            "from": time(cx.from),
            "to": time(cx.to),
            "alerts": items,
        }))
        .expect("json serializes")
            + "\n";
    }
    let md = fmt == Format::Md;
    let with_score = cx.incidents.is_some();
    let mut head: Vec<String> = [
        "ALERT",
        "FIRINGS",
        "FIRING TIME",
        "MEDIAN",
        "FLAPS",
        "PENDING ONLY",
        "ERRORS",
    ]
    .map(String::from)
    .to_vec();
    if with_score {
        head.extend(["FP", "PRECISION", "RECALL", "TTD MEDIAN"].map(String::from));
    }
    let mut rows = vec![head];
    let side = |o: &Option<Summary>,
                nw: &Option<Summary>,
                get: &dyn Fn(&Summary) -> String,
                dlt: &dyn Fn(&Summary, &Summary) -> String|
     -> String {
        match (o, nw) {
            (Some(x), Some(y)) => {
                let (gx, gy) = (get(x), get(y));
                let d = dlt(x, y);
                if d == "=" {
                    format!("{gx} -> {gy} (=)")
                } else {
                    format!("{gx} -> {gy} ({d})")
                }
            }
            (Some(x), None) => format!("{} -> (removed)", get(x)),
            (None, Some(y)) => format!("(new) -> {}", get(y)),
            (None, None) => String::new(),
        }
    };
    let count = |f: fn(&Summary) -> usize| {
        move |x: &Summary, y: &Summary| delta_i(f(x) as i64, f(y) as i64, |d| d.to_string())
    };
    for n in &names {
        let (o, nw) = (find(&a, n), find(&b, n));
        let mut r = vec![
            n.clone(),
            side(&o, &nw, &|s| s.firings.to_string(), &count(|s| s.firings)),
            side(&o, &nw, &|s| dur(s.firing_ms), &|x, y| {
                delta_i(x.firing_ms, y.firing_ms, dur)
            }),
            side(
                &o,
                &nw,
                &|s| opt_dur(s.median_ms),
                &|x, y| match (x.median_ms, y.median_ms) {
                    (Some(p), Some(q)) => delta_i(p, q, dur),
                    _ => "n/a".into(),
                },
            ),
            side(&o, &nw, &|s| s.flaps.to_string(), &count(|s| s.flaps)),
            side(
                &o,
                &nw,
                &|s| s.pending_never_fired.to_string(),
                &count(|s| s.pending_never_fired),
            ),
            side(&o, &nw, &|s| s.errors.to_string(), &count(|s| s.errors)),
        ];
        if with_score {
            let sc = |s: &Summary| s.score.clone().unwrap_or_default();
            let fdelta = |p: Option<f64>, q: Option<f64>| match (p, q) {
                (Some(p), Some(q)) if (q - p).abs() < 1e-12 => "=".to_string(),
                (Some(p), Some(q)) => format!("{:+.1}pp", (q - p) * 100.0),
                _ => "n/a".into(),
            };
            r.push(side(
                &o,
                &nw,
                &|s| sc(s).false_positives.to_string(),
                &|x, y| {
                    delta_i(
                        sc(x).false_positives as i64,
                        sc(y).false_positives as i64,
                        |d| d.to_string(),
                    )
                },
            ));
            r.push(side(&o, &nw, &|s| pct(sc(s).precision), &|x, y| {
                fdelta(sc(x).precision, sc(y).precision)
            }));
            r.push(side(&o, &nw, &|s| pct(sc(s).recall), &|x, y| {
                fdelta(sc(x).recall, sc(y).recall)
            }));
            r.push(side(
                &o,
                &nw,
                &|s| opt_dur(sc(s).ttd_median_ms),
                &|x, y| match (sc(x).ttd_median_ms, sc(y).ttd_median_ms) {
                    (Some(p), Some(q)) => delta_i(p, q, dur),
                    _ => "n/a".into(),
                },
            ));
        }
        rows.push(r);
    }
    let mut out = String::new();
    let title = format!(
        "Backtest diff {} from {} to {}",
        cx.files.join(" -> "),
        time(cx.from),
        time(cx.to)
    );
    if md {
        let _ = writeln!(out, "# {title}\n");
    } else {
        let _ = writeln!(out, "{title}\n");
    }
    out.push_str(&table(&rows, "", md));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_medians() {
        assert_eq!(dur(0), "0s");
        assert_eq!(dur(90_000), "1m30s");
        assert_eq!(dur(86_400_000 + 3_600_000), "1d1h");
        assert_eq!(dur(250), "250ms");
        assert_eq!(dur(-60_000), "-1m");
        assert_eq!(median(&[1, 2, 10]), Some(2));
        assert_eq!(median(&[1, 3]), Some(2));
        assert_eq!(median(&[]), None);
        assert_eq!(time(60_000), "1970-01-01T00:01:00Z");
    }

    #[test]
    fn tables_align_and_markdown_escapes() {
        let rows = vec![
            vec!["A".to_string(), "BB".to_string()],
            vec!["ccc".to_string(), "d|e".to_string()],
        ];
        assert_eq!(table(&rows, "", false), "A    BB\nccc  d|e\n");
        assert_eq!(
            table(&rows, "", true),
            "| A | BB |\n| --- | --- |\n| ccc | d\\|e |\n"
        );
    }
}
