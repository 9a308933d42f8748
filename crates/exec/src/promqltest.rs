//! Runner for query test scripts in Prometheus's `promqltest` format.
//!
//! Commands (one per line; `#` starts a comment line; a blank line ends a block):
//!
//! * `load <interval>` followed by indented series lines `metric{l="v"} <values>`, where the
//!   values use the series notation: `1 2 3`, `0+10x5` (6 values), `10-2x3`, `7x2` (3 values),
//!   `_` (no sample), `_x3` (3 missing samples), `stale` (a staleness marker), `Inf`, `NaN`.
//!   The i-th value is written at `i * interval`.
//! * `clear`: drops all series.
//! * `profile <promql3|prometheus-2.42>` (tsq): the engine profile for the following
//!   commands (a file starts in `promql3`).
//! * `eval instant at <time> <expr>` with expected lines `{labels} <value>` (or a bare number
//!   for a scalar, or a quoted string; for episodes, `{labels} <start> <end>` followed by the
//!   flags that are set, `ongoing` and `truncated_start`, and any `measure=value` to check); `eval range from <t0> to <t1> step <d> <expr>` with
//!   `{labels} <values>` in the series notation (`_` where no point is expected).
//! * Modifiers, as lines after the eval line: `expect fail`, `expect fail msg: <text>`,
//!   `expect fail regex: <re>`, `expect ordered`, `expect warn [msg: <text>|regex: <re>]`,
//!   `expect no_warn`, `expect info [msg: ...|regex: ...]`, `expect no_info`,
//!   `expect range vector from <t0> to <t1> step <d>` (instant queries returning a matrix);
//!   and the older forms `eval_fail`, `eval_ordered`, `eval_warn`, `eval_info` with
//!   `expected_fail_message <text>` / `expected_fail_regexp <re>`.
//!
//! As in Prometheus's runner, a plain `eval` fails on unexpected warnings (infos are allowed
//! unless `expect no_info`), floats compare with relative tolerance 1e-6 and NaN equals NaN,
//! and each instant case is re-run (1) as a range query from t-1m to t+1m step 1m, checking
//! the point at t (skipped for `ordered` cases and non-vector results), and (2) with `@ t`
//! pinned on every selector and subquery not below one that has `@`, at the evaluation times
//! -10t, 0, t/5, t, 10t (0, 1m, 5m, 10m when t = 0), unless the query uses a function whose
//! value depends on the evaluation time itself (time, timestamp, predict_linear, the
//! calendar functions).

use std::collections::HashMap;
use std::path::Path;

use tsq_parser::{AtModifier, Expr};
use tsq_storage::{Labels, STALE_NAN_BITS};

use crate::{Engine, EngineOptions, Error, MemStorage, Profile, QueryResult, Value};

/// The outcome of a script.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// Number of `eval` commands.
    pub cases: usize,
    /// How many passed.
    pub passed: usize,
    /// `file:line: message` for each failure.
    pub failures: Vec<String>,
}

impl TestReport {
    /// Adds another report's counts and failures.
    pub fn merge(&mut self, other: TestReport) {
        self.cases += other.cases;
        self.passed += other.passed;
        self.failures.extend(other.failures);
    }
}

/// Runs the script in `path` with the default options.
pub fn run_file(path: impl AsRef<Path>) -> std::io::Result<TestReport> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(run_script(&name, &text, &EngineOptions::default()))
}

/// Runs a script. `opts` gives the starting options; `profile` lines change the profile.
pub fn run_script(name: &str, text: &str, opts: &EngineOptions) -> TestReport {
    let mut report = TestReport::default();
    let mut storage = MemStorage::new();
    let mut opts = opts.clone();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let lineno = i + 1;
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |report: &mut TestReport, msg: String| {
            report.failures.push(format!("{name}:{lineno}: {msg}"));
        };
        // One-line commands: the next line is a command of its own.
        if line == "clear" {
            storage.clear();
            continue;
        }
        if let Some(rest) = line.strip_prefix("profile ") {
            match rest.parse::<Profile>() {
                Ok(p) => opts.profile = p,
                Err(e) => fail(&mut report, e),
            }
            continue;
        }
        // The block of lines after the command, up to a blank line.
        let mut block: Vec<(usize, &str)> = Vec::new();
        while i < lines.len() {
            let l = lines[i].trim();
            if l.is_empty() {
                break;
            }
            if !l.starts_with('#') {
                block.push((i + 1, l));
            }
            i += 1;
        }
        if let Some(rest) = line.strip_prefix("load ") {
            let interval = match parse_time(rest.trim()) {
                Ok(d) if d > 0 => d,
                _ => {
                    fail(&mut report, format!("invalid load interval {rest:?}"));
                    continue;
                }
            };
            for (ln, def) in block {
                match parse_series(def) {
                    Ok((labels, vals)) => {
                        for (k, v) in vals.into_iter().enumerate() {
                            if let Some(v) = v {
                                storage.add(labels.clone(), k as i64 * interval, v);
                            }
                        }
                    }
                    Err(e) => report.failures.push(format!("{name}:{ln}: {e}")),
                }
            }
            continue;
        }
        if line.starts_with("eval") {
            report.cases += 1;
            match parse_eval(line, &block) {
                Ok(cmd) => match run_eval(&cmd, &storage, &opts) {
                    Ok(()) => report.passed += 1,
                    Err(e) => fail(&mut report, format!("{e} [{}]", cmd.expr)),
                },
                Err(e) => fail(&mut report, e),
            }
            continue;
        }
        fail(&mut report, format!("unknown command {line:?}"));
    }
    report
}

/// A duration (`5m`, `1h30m`, `-10s`) or a number of seconds, in ms.
fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return Ok((v * 1000.0).round() as i64);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let mut total: i64 = 0;
    let mut num = String::new();
    let chars: Vec<char> = body.chars().collect();
    let mut k = 0;
    if chars.is_empty() {
        return Err(format!("invalid duration {s:?}"));
    }
    while k < chars.len() {
        let c = chars[k];
        if c.is_ascii_digit() {
            num.push(c);
            k += 1;
            continue;
        }
        let mut unit = String::new();
        while k < chars.len() && chars[k].is_ascii_alphabetic() {
            unit.push(chars[k]);
            k += 1;
        }
        let n: i64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        num.clear();
        let mult = match unit.as_str() {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return Err(format!("invalid duration {s:?}")),
        };
        total += n * mult;
    }
    if !num.is_empty() {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(if neg { -total } else { total })
}

fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    match t {
        "Inf" | "+Inf" | "inf" | "+inf" => return Some(f64::INFINITY),
        "-Inf" | "-inf" => return Some(f64::NEG_INFINITY),
        "NaN" | "nan" => return Some(f64::NAN),
        "stale" => return Some(f64::from_bits(STALE_NAN_BITS)),
        _ => {}
    }
    if t.chars()
        .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    t.parse::<f64>().ok()
}

/// Expands one value token of the series notation; `None` entries are missing samples.
fn expand_token(tok: &str) -> Result<Vec<Option<f64>>, String> {
    let bad = || format!("invalid series value {tok:?}");
    if tok == "_" {
        return Ok(vec![None]);
    }
    if let Some(n) = tok.strip_prefix("_x") {
        let n: usize = n.parse().map_err(|_| bad())?;
        return Ok(vec![None; n]);
    }
    if let Some(v) = parse_number(tok) {
        return Ok(vec![Some(v)]);
    }
    let (base, times) = tok.rsplit_once('x').ok_or_else(bad)?;
    let times: usize = times.parse().map_err(|_| bad())?;
    // base is `a` or `a+b` / `a-b` (the sign not right after an exponent marker).
    let bytes = base.as_bytes();
    let mut split = None;
    for k in 1..bytes.len() {
        if (bytes[k] == b'+' || bytes[k] == b'-') && !matches!(bytes[k - 1], b'e' | b'E') {
            split = Some(k);
        }
    }
    let (a, b) = match split {
        Some(k) => (
            parse_number(&base[..k]).ok_or_else(bad)?,
            parse_number(&base[k..]).ok_or_else(bad)?,
        ),
        None => (parse_number(base).ok_or_else(bad)?, 0.0),
    };
    let mut out = Vec::with_capacity(times + 1);
    let mut v = a;
    for _ in 0..=times {
        out.push(Some(v));
        v += b;
    }
    Ok(out)
}

/// Splits `metric{a="b"} rest` into its labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let s = s.trim_start();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    if name_end > 0 {
        pairs.push(("__name__".into(), s[..name_end].to_string()));
    }
    let mut rest = &s[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let chars: Vec<char> = body.chars().collect();
        let mut k = 0;
        let read_quoted = |k: &mut usize| -> Result<String, String> {
            let q = chars[*k];
            *k += 1;
            let mut out = String::new();
            while *k < chars.len() && chars[*k] != q {
                if chars[*k] == '\\' && *k + 1 < chars.len() {
                    *k += 1;
                    out.push(match chars[*k] {
                        'n' => '\n',
                        't' => '\t',
                        c => c,
                    });
                } else {
                    out.push(chars[*k]);
                }
                *k += 1;
            }
            if *k >= chars.len() {
                return Err("unterminated string in labels".into());
            }
            *k += 1;
            Ok(out)
        };
        loop {
            while k < chars.len() && (chars[k].is_whitespace() || chars[k] == ',') {
                k += 1;
            }
            if k >= chars.len() {
                return Err(format!("unterminated label set in {s:?}"));
            }
            if chars[k] == '}' {
                k += 1;
                break;
            }
            let lname = if chars[k] == '"' {
                read_quoted(&mut k)?
            } else {
                let st = k;
                while k < chars.len() && (chars[k].is_alphanumeric() || chars[k] == '_') {
                    k += 1;
                }
                chars[st..k].iter().collect()
            };
            while k < chars.len() && chars[k].is_whitespace() {
                k += 1;
            }
            if k < chars.len() && chars[k] == '=' {
                k += 1;
                while k < chars.len() && chars[k].is_whitespace() {
                    k += 1;
                }
                if k >= chars.len() || (chars[k] != '"' && chars[k] != '\'') {
                    return Err(format!("expected quoted label value in {s:?}"));
                }
                let v = read_quoted(&mut k)?;
                pairs.push((lname, v));
            } else {
                // A bare quoted name is the metric name.
                pairs.push(("__name__".into(), lname));
            }
        }
        let consumed: usize = chars[..k].iter().map(|c| c.len_utf8()).sum();
        rest = &body[consumed..];
    } else if name_end == 0 {
        return Err(format!("expected a series description in {s:?}"));
    }
    Ok((Labels::new(pairs), rest))
}

fn parse_series(def: &str) -> Result<(Labels, Vec<Option<f64>>), String> {
    let (labels, rest) = parse_labels(def)?;
    let mut vals = Vec::new();
    for tok in rest.split_whitespace() {
        if tok.starts_with("{{") {
            return Err("native histogram samples are not supported".into());
        }
        vals.extend(expand_token(tok)?);
    }
    Ok((labels, vals))
}

#[derive(Debug)]
enum Expected {
    Scalar(f64),
    String(String),
    Series(Labels, Vec<Option<f64>>),
    /// `{labels} <start> <end> [ongoing] [truncated_start] [measure=value ...]`.
    Episode(ExpectedEpisode),
}

#[derive(Debug, Clone, PartialEq)]
struct ExpectedEpisode {
    labels: Labels,
    start: i64,
    end: i64,
    ongoing: bool,
    truncated_start: bool,
    measures: Vec<(String, f64)>,
}

/// An episodes row: labels, start and end times, then flags and `name=value` measures.
fn parse_episode_row(l: &str) -> Result<ExpectedEpisode, String> {
    let (labels, rest) = parse_labels(l)?;
    let mut toks = rest.split_whitespace();
    let start = parse_time(toks.next().ok_or("episode row needs <start> <end>")?)?;
    let end = parse_time(toks.next().ok_or("episode row needs <start> <end>")?)?;
    let mut e = ExpectedEpisode {
        labels,
        start,
        end,
        ongoing: false,
        truncated_start: false,
        measures: Vec::new(),
    };
    for t in toks {
        match t {
            "ongoing" => e.ongoing = true,
            "truncated_start" => e.truncated_start = true,
            _ => {
                let (k, v) = t
                    .split_once('=')
                    .ok_or_else(|| format!("expected a flag or name=value, got {t:?}"))?;
                let v = parse_number(v).ok_or_else(|| format!("bad measure value {v:?}"))?;
                e.measures.push((k.to_string(), v));
            }
        }
    }
    Ok(e)
}

#[derive(Debug, Default)]
struct AnnoExpect {
    /// None: not mentioned; Some(true): expected; Some(false): forbidden.
    want: Option<bool>,
    msg: Option<String>,
    regex: Option<String>,
}

#[derive(Debug)]
struct EvalCmd {
    expr: String,
    line_kind_range: bool,
    start: i64,
    end: i64,
    step: i64,
    fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    ordered: bool,
    warn: AnnoExpect,
    info: AnnoExpect,
    expected: Vec<Expected>,
    matrix_range: Option<(i64, i64, i64)>,
}

fn parse_msg(rest: &str) -> (Option<String>, Option<String>) {
    let rest = rest.trim();
    if let Some(m) = rest.strip_prefix("msg:") {
        (Some(m.trim().to_string()), None)
    } else if let Some(m) = rest.strip_prefix("regex:") {
        (None, Some(m.trim().to_string()))
    } else {
        (None, None)
    }
}

fn parse_eval(line: &str, block: &[(usize, &str)]) -> Result<EvalCmd, String> {
    let (head, rest) = line
        .split_once(char::is_whitespace)
        .ok_or("incomplete eval")?;
    let mut cmd = EvalCmd {
        expr: String::new(),
        line_kind_range: false,
        start: 0,
        end: 0,
        step: 0,
        fail: false,
        fail_msg: None,
        fail_regex: None,
        ordered: false,
        warn: AnnoExpect::default(),
        info: AnnoExpect::default(),
        expected: Vec::new(),
        matrix_range: None,
    };
    match head {
        "eval" => {}
        "eval_fail" => cmd.fail = true,
        "eval_ordered" => cmd.ordered = true,
        "eval_warn" => cmd.warn.want = Some(true),
        "eval_info" => cmd.info.want = Some(true),
        _ => return Err(format!("unknown command {head:?}")),
    }
    let rest = rest.trim_start();
    if let Some(r) = rest.strip_prefix("instant") {
        let r = r.trim_start();
        let r = r.strip_prefix("at").ok_or("expected \"at\"")?.trim_start();
        let (t, expr) = r
            .split_once(char::is_whitespace)
            .ok_or("missing expression")?;
        cmd.start = parse_time(t)?;
        cmd.end = cmd.start;
        cmd.expr = expr.trim().to_string();
    } else if let Some(r) = rest.strip_prefix("range") {
        let r = r
            .trim_start()
            .strip_prefix("from")
            .ok_or("expected \"from\"")?;
        let (t0, r) = r.trim_start().split_once(" to ").ok_or("expected \"to\"")?;
        let (t1, r) = r
            .trim_start()
            .split_once(" step ")
            .ok_or("expected \"step\"")?;
        let (st, expr) = r
            .trim_start()
            .split_once(char::is_whitespace)
            .ok_or("missing expression")?;
        cmd.line_kind_range = true;
        cmd.start = parse_time(t0)?;
        cmd.end = parse_time(t1)?;
        cmd.step = parse_time(st)?;
        cmd.expr = expr.trim().to_string();
    } else {
        return Err("expected \"instant\" or \"range\"".into());
    }
    for &(ln, l) in block {
        let at = |e: String| format!("line {ln}: {e}");
        if let Some(r) = l.strip_prefix("expected_fail_message") {
            cmd.fail_msg = Some(r.trim().to_string());
            continue;
        }
        if let Some(r) = l.strip_prefix("expected_fail_regexp") {
            cmd.fail_regex = Some(r.trim().to_string());
            continue;
        }
        if let Some(r) = l.strip_prefix("expect ") {
            let r = r.trim();
            if let Some(m) = r.strip_prefix("fail") {
                cmd.fail = true;
                let (msg, re) = parse_msg(m);
                cmd.fail_msg = msg.or(cmd.fail_msg.take());
                cmd.fail_regex = re.or(cmd.fail_regex.take());
            } else if r == "ordered" {
                cmd.ordered = true;
            } else if r == "no_warn" {
                cmd.warn.want = Some(false);
            } else if r == "no_info" {
                cmd.info.want = Some(false);
            } else if let Some(m) = r.strip_prefix("warn") {
                cmd.warn.want = Some(true);
                (cmd.warn.msg, cmd.warn.regex) = parse_msg(m);
            } else if let Some(m) = r.strip_prefix("info") {
                cmd.info.want = Some(true);
                (cmd.info.msg, cmd.info.regex) = parse_msg(m);
            } else if let Some(m) = r.strip_prefix("range vector from") {
                let (t0, m) = m
                    .trim()
                    .split_once(" to ")
                    .ok_or_else(|| at("bad range".into()))?;
                let (t1, st) = m
                    .split_once(" step ")
                    .ok_or_else(|| at("bad range".into()))?;
                cmd.matrix_range = Some((
                    parse_time(t0).map_err(at)?,
                    parse_time(t1).map_err(at)?,
                    parse_time(st).map_err(at)?,
                ));
            } else {
                return Err(at(format!("unknown expectation {r:?}")));
            }
            continue;
        }
        if l.starts_with('"') {
            let s = l.trim();
            cmd.expected.push(Expected::String(
                s[1..s.len().saturating_sub(1)].to_string(),
            ));
            continue;
        }
        if let Some(v) = parse_number(l) {
            cmd.expected.push(Expected::Scalar(v));
            continue;
        }
        match parse_series(l) {
            Ok((labels, vals)) => cmd.expected.push(Expected::Series(labels, vals)),
            Err(series_err) => match parse_episode_row(l) {
                Ok(e) => cmd.expected.push(Expected::Episode(e)),
                Err(_) => return Err(at(series_err)),
            },
        }
    }
    Ok(cmd)
}

fn almost_equal(a: f64, b: f64) -> bool {
    const EPS: f64 = 1e-6;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < EPS * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < EPS
}

fn check_failure(cmd: &EvalCmd, e: &Error) -> Result<(), String> {
    let full = e.to_string();
    let inner = match e {
        Error::Parse(p) => p.message.clone(),
        _ => full.clone(),
    };
    if let Some(m) = &cmd.fail_msg {
        if *m != full && *m != inner {
            return Err(format!("expected error {m:?}, got {full:?}"));
        }
    }
    if let Some(re) = &cmd.fail_regex {
        let r = regex::Regex::new(re).map_err(|e| format!("bad regex {re:?}: {e}"))?;
        if !r.is_match(&full) {
            return Err(format!("expected error matching {re:?}, got {full:?}"));
        }
    }
    Ok(())
}

fn check_annos(kind: &str, want: &AnnoExpect, got: &[String], strict: bool) -> Result<(), String> {
    match want.want {
        Some(true) => {
            if got.is_empty() {
                return Err(format!("expected {kind} annotations but got none"));
            }
            if let Some(m) = &want.msg {
                if !got.iter().any(|g| g == m) {
                    return Err(format!("expected {kind} {m:?}, got {got:?}"));
                }
            }
            if let Some(re) = &want.regex {
                let r = regex::Regex::new(re).map_err(|e| format!("bad regex: {e}"))?;
                if !got.iter().any(|g| r.is_match(g)) {
                    return Err(format!("expected {kind} matching {re:?}, got {got:?}"));
                }
            }
        }
        Some(false) => {
            if !got.is_empty() {
                return Err(format!("unexpected {kind} annotations: {got:?}"));
            }
        }
        None => {
            if strict && !got.is_empty() {
                return Err(format!("unexpected {kind} annotations: {got:?}"));
            }
        }
    }
    Ok(())
}

fn fmt_vals(v: &[(i64, f64)]) -> String {
    let parts: Vec<String> = v.iter().map(|(t, x)| format!("{x} @[{t}]")).collect();
    parts.join(", ")
}

/// Compares an instant-query result with the expectations.
fn compare_instant(cmd: &EvalCmd, v: &Value, ordered: bool) -> Result<(), String> {
    match v {
        Value::Scalar { v, .. } => {
            let exp = cmd.expected.iter().find_map(|e| match e {
                Expected::Scalar(x) => Some(*x),
                _ => None,
            });
            match exp {
                Some(x) if almost_equal(x, *v) => Ok(()),
                Some(x) => Err(format!("expected scalar {x} but got {v}")),
                None => Err(format!(
                    "expected vector or matrix result, but got scalar {v}"
                )),
            }
        }
        Value::String { s, .. } => match cmd.expected.first() {
            Some(Expected::String(x)) if x == s => Ok(()),
            _ => Err(format!("unexpected string result {s:?}")),
        },
        Value::Vector(samples) => {
            let mut exp: HashMap<&Labels, (usize, f64)> = HashMap::new();
            for (pos, e) in cmd.expected.iter().enumerate() {
                match e {
                    Expected::Series(l, vals) => {
                        let x = vals.first().copied().flatten().ok_or("expected a value")?;
                        exp.insert(l, (pos, x));
                    }
                    Expected::Scalar(x) => {
                        return Err(format!("expected scalar {x} but got a vector"));
                    }
                    Expected::String(_) => return Err("expected a string but got a vector".into()),
                    Expected::Episode(_) => return Err("expected episodes but got a vector".into()),
                }
            }
            let mut seen = std::collections::HashSet::new();
            for (pos, s) in samples.iter().enumerate() {
                let Some(&(epos, x)) = exp.get(&s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has value {}",
                        s.labels, s.v
                    ));
                };
                if ordered && epos != pos {
                    return Err(format!(
                        "expected metric {} with {x} at position {} but was at {}",
                        s.labels,
                        epos + 1,
                        pos + 1
                    ));
                }
                if !almost_equal(x, s.v) {
                    return Err(format!("expected {x} for {} but got {}", s.labels, s.v));
                }
                if !seen.insert(&s.labels) {
                    return Err(format!("duplicate metric {} in result", s.labels));
                }
            }
            for l in exp.keys() {
                if !seen.contains(*l) {
                    return Err(format!("expected metric {l} not found"));
                }
            }
            Ok(())
        }
        Value::Matrix(series) => {
            if ordered {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            compare_matrix(cmd, series, cmd.matrix_range)
        }
        Value::Episodes(got) => compare_episodes(cmd, got),
    }
}

/// Episodes compare as lists in the result's order (labels, then start); a row written as
/// a plain series (`{} 0 5`) is read as an episode row here.
fn compare_episodes(cmd: &EvalCmd, got: &[crate::Episode]) -> Result<(), String> {
    let mut want = Vec::new();
    for e in &cmd.expected {
        match e {
            Expected::Episode(x) => want.push(x.clone()),
            Expected::Series(labels, vals) if vals.len() == 2 => {
                let ms = |v: Option<f64>| v.map(|x| (x * 1000.0).round() as i64);
                let (Some(start), Some(end)) = (ms(vals[0]), ms(vals[1])) else {
                    return Err("episode row needs <start> <end>".into());
                };
                want.push(ExpectedEpisode {
                    labels: labels.clone(),
                    start,
                    end,
                    ongoing: false,
                    truncated_start: false,
                    measures: Vec::new(),
                });
            }
            _ => return Err("expected episode rows `{labels} <start> <end> [flags]`".into()),
        }
    }
    let show = |e: &crate::Episode| {
        format!(
            "{} {}s {}s {}",
            e.labels,
            e.start as f64 / 1000.0,
            e.end as f64 / 1000.0,
            e.flags().join(" ")
        )
    };
    if got.len() != want.len() {
        let all: Vec<String> = got.iter().map(show).collect();
        return Err(format!(
            "expected {} episodes, got {}: [{}]",
            want.len(),
            got.len(),
            all.join("; ")
        ));
    }
    for (g, w) in got.iter().zip(&want) {
        if g.labels != w.labels
            || g.start != w.start
            || g.end != w.end
            || g.ongoing != w.ongoing
            || g.truncated_start != w.truncated_start
        {
            return Err(format!(
                "expected episode {} {}s {}s{}{} but got {}",
                w.labels,
                w.start as f64 / 1000.0,
                w.end as f64 / 1000.0,
                if w.ongoing { " ongoing" } else { "" },
                if w.truncated_start {
                    " truncated_start"
                } else {
                    ""
                },
                show(g)
            ));
        }
        for (k, v) in &w.measures {
            match g.measure(k) {
                Some(x) if almost_equal(x, *v) => {}
                other => {
                    return Err(format!(
                        "episode {}: expected measure {k}={v}, got {other:?}",
                        show(g)
                    ))
                }
            }
        }
    }
    Ok(())
}

fn compare_matrix(
    cmd: &EvalCmd,
    series: &[crate::Series],
    grid: Option<(i64, i64, i64)>,
) -> Result<(), String> {
    let mut exp: HashMap<&Labels, &Vec<Option<f64>>> = HashMap::new();
    for e in &cmd.expected {
        match e {
            Expected::Series(l, v) => {
                exp.insert(l, v);
            }
            Expected::Episode(_) => return Err("expected episodes but got a matrix".into()),
            Expected::Scalar(x) => {
                // A range query over a scalar: one series without labels.
                return match series {
                    [s] if s.labels.is_empty()
                        && s.samples.iter().all(|p| almost_equal(p.1, *x)) =>
                    {
                        Ok(())
                    }
                    _ => Err(format!("expected scalar {x}")),
                };
            }
            Expected::String(_) => return Err("expected a string but got a matrix".into()),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for s in series {
        let Some(vals) = exp.get(&s.labels) else {
            return Err(format!(
                "unexpected metric {} in result, has {}",
                s.labels,
                fmt_vals(&s.samples)
            ));
        };
        seen.insert(&s.labels);
        let want: Vec<(Option<i64>, f64)> = match grid {
            Some((start, end, step)) => {
                let mut w = Vec::new();
                for (i, v) in vals.iter().enumerate() {
                    let t = start + i as i64 * step;
                    if t > end {
                        return Err(format!(
                            "expected {} points for {}, but the query time range cannot return this many",
                            vals.len(),
                            s.labels
                        ));
                    }
                    if let Some(v) = v {
                        w.push((Some(t), *v));
                    }
                }
                w
            }
            None => vals.iter().flatten().map(|v| (None, *v)).collect(),
        };
        if want.len() != s.samples.len() {
            return Err(format!(
                "expected {} points for {}, but got {}",
                want.len(),
                s.labels,
                fmt_vals(&s.samples)
            ));
        }
        for (k, ((wt, wv), (gt, gv))) in want.iter().zip(&s.samples).enumerate() {
            if let Some(wt) = wt {
                if wt != gt {
                    return Err(format!(
                        "expected point {k} of {} at t={wt}, got t={gt} (result has {})",
                        s.labels,
                        fmt_vals(&s.samples)
                    ));
                }
            }
            if !almost_equal(*wv, *gv) {
                return Err(format!(
                    "expected point {k} (t={gt}) of {} to be {wv}, got {gv} (result has {})",
                    s.labels,
                    fmt_vals(&s.samples)
                ));
            }
        }
    }
    for l in exp.keys() {
        if !seen.contains(*l) {
            return Err(format!("expected metric {l} not found"));
        }
    }
    Ok(())
}

/// Functions whose value depends on the evaluation time even with `@` pinned.
const AT_UNSAFE: &[&str] = &[
    "episodes_to_series",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

fn has_pattern(e: &Expr) -> bool {
    let mut found = false;
    e.visit(&mut |x| {
        if matches!(x, Expr::Pattern(_) | Expr::Sequence(_)) {
            found = true;
        }
    });
    found
}

fn uses_at_unsafe(e: &Expr) -> bool {
    let mut found = false;
    e.visit(&mut |x| {
        if let Expr::Call(c) = x {
            if AT_UNSAFE.contains(&c.func.as_str()) {
                found = true;
            }
        }
    });
    found
}

/// Sets `@ t` on every selector and subquery that has none, not descending below a node that
/// has one.
fn pin_at(e: &mut Expr, t_secs: f64) {
    match e {
        Expr::VectorSelector(vs) if vs.at.is_none() => vs.at = Some(AtModifier::Time(t_secs)),
        Expr::MatrixSelector(ms) if ms.selector.at.is_none() => {
            ms.selector.at = Some(AtModifier::Time(t_secs))
        }
        Expr::Subquery(s) if s.at.is_none() => s.at = Some(AtModifier::Time(t_secs)),
        Expr::Paren(x) | Expr::Unary(_, x) => pin_at(x, t_secs),
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, t_secs);
            pin_at(&mut b.rhs, t_secs);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &mut a.param {
                pin_at(p, t_secs);
            }
            pin_at(&mut a.expr, t_secs);
        }
        Expr::Call(c) => c.args.iter_mut().for_each(|a| pin_at(a, t_secs)),
        _ => {}
    }
}

fn run_eval(cmd: &EvalCmd, storage: &MemStorage, opts: &EngineOptions) -> Result<(), String> {
    let engine = Engine::new(opts.clone());
    let expr = match tsq_parser::parse(&cmd.expr) {
        Ok(e) => e,
        Err(e) => {
            if cmd.fail {
                return check_failure(cmd, &Error::Parse(e));
            }
            return Err(format!("parse error: {e}"));
        }
    };
    if cmd.line_kind_range {
        let res = engine.range_query_expr(storage, &expr, cmd.start, cmd.end, cmd.step);
        return match res {
            Err(e) if cmd.fail => check_failure(cmd, &e),
            Err(e) => Err(format!("error evaluating range query: {e}")),
            Ok(_) if cmd.fail => Err("expected an error but got none".into()),
            Ok(r) => {
                check_annos("warn", &cmd.warn, &r.warnings, true)?;
                check_annos("info", &cmd.info, &r.infos, false)?;
                if cmd.ordered {
                    return Err("expected ordered result, but query returned a matrix".into());
                }
                match &r.value {
                    Value::Matrix(m) => {
                        compare_matrix(cmd, m, Some((cmd.start, cmd.end, cmd.step)))
                    }
                    other => Err(format!("range query returned a {}", other.type_name())),
                }
            }
        };
    }
    let mut queries: Vec<(Expr, i64, &str)> = vec![(expr.clone(), cmd.start, "")];
    // A pattern's grid follows the evaluation time, not its selectors' `@`.
    if !uses_at_unsafe(&expr) && !has_pattern(&expr) {
        let ts = cmd.start;
        let mut pinned = expr.clone();
        pin_at(&mut pinned, ts as f64 / 1000.0);
        let times: Vec<i64> = if ts == 0 {
            vec![0, 60_000, 300_000, 600_000]
        } else {
            vec![-10 * ts, 0, ts / 5, ts, 10 * ts]
        };
        for t in times {
            queries.push((pinned.clone(), t, " (with @ pinned)"));
        }
    }
    for (q, t, what) in &queries {
        run_instant(cmd, &engine, storage, q, *t, what)?;
    }
    Ok(())
}

fn run_instant(
    cmd: &EvalCmd,
    engine: &Engine,
    storage: &MemStorage,
    q: &Expr,
    t: i64,
    what: &str,
) -> Result<(), String> {
    let res: Result<QueryResult, Error> = engine.instant_query_expr(storage, q, t);
    let r = match res {
        Err(e) if cmd.fail => return check_failure(cmd, &e),
        Err(e) => return Err(format!("error evaluating query at {t}{what}: {e}")),
        Ok(_) if cmd.fail => return Err(format!("expected an error at {t}{what} but got none")),
        Ok(r) => r,
    };
    let ctx = |e: String| format!("{e} (instant at {t}{what})");
    check_annos("warn", &cmd.warn, &r.warnings, true).map_err(ctx)?;
    check_annos("info", &cmd.info, &r.infos, false).map_err(ctx)?;
    compare_instant(cmd, &r.value, cmd.ordered).map_err(ctx)?;
    if cmd.ordered || !matches!(r.value, Value::Vector(_) | Value::Scalar { .. }) {
        return Ok(());
    }
    // The same answer in range mode, at the middle step.
    let rr = engine
        .range_query_expr(storage, q, t - 60_000, t + 60_000, 60_000)
        .map_err(|e| format!("error evaluating query in range mode at {t}{what}: {e}"))?;
    let Value::Matrix(m) = rr.value else {
        return Err("range query did not return a matrix".into());
    };
    let at_t: Value = if matches!(r.value, Value::Scalar { .. }) {
        let v = m
            .first()
            .and_then(|s| s.samples.iter().find(|p| p.0 == t))
            .map(|p| p.1)
            .unwrap_or(f64::NAN);
        Value::Scalar { t, v }
    } else {
        Value::Vector(
            m.iter()
                .filter_map(|s| {
                    s.samples.iter().find(|p| p.0 == t).map(|p| crate::Sample {
                        labels: s.labels.clone(),
                        t,
                        v: p.1,
                    })
                })
                .collect(),
        )
    };
    compare_instant(cmd, &at_t, false).map_err(|e| format!("{e} (range mode at {t}{what})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_commands_do_not_swallow_the_next_lines() {
        let script = "load 1m\n  a 1\n\n# comment\nclear\nload 1m\n  b 2\n\neval instant at 0 b\n  b 2\n\neval instant at 0 a\n";
        let r = run_script("t", script, &EngineOptions::default());
        assert_eq!((r.cases, r.passed), (2, 2), "{:?}", r.failures);
    }

    #[test]
    fn series_notation() {
        assert_eq!(
            expand_token("0+10x3").unwrap(),
            vec![Some(0.0), Some(10.0), Some(20.0), Some(30.0)]
        );
        assert_eq!(
            expand_token("1-1x2").unwrap(),
            vec![Some(1.0), Some(0.0), Some(-1.0)]
        );
        assert_eq!(expand_token("5x2").unwrap(), vec![Some(5.0); 3]);
        assert_eq!(expand_token("_x3").unwrap(), vec![None; 3]);
        assert_eq!(
            expand_token("-2+1e1x1").unwrap(),
            vec![Some(-2.0), Some(8.0)]
        );
        assert!(tsq_storage::is_stale_nan(
            expand_token("stale").unwrap()[0].unwrap()
        ));
        let (l, v) = parse_series(r#"m{a="b", c="d\"e"} 1 _ 3"#).unwrap();
        assert_eq!(l.to_string(), r#"m{a="b", c="d\"e"}"#);
        assert_eq!(v, vec![Some(1.0), None, Some(3.0)]);
        let (l, _) = parse_series(r#"{__name__="x"} 1"#).unwrap();
        assert_eq!(l.metric_name(), Some("x"));
        assert_eq!(parse_time("1h5m").unwrap(), 3_900_000);
        assert_eq!(parse_time("-10s").unwrap(), -10_000);
        assert_eq!(parse_time("90").unwrap(), 90_000);
    }
}
