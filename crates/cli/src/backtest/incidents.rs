//! Incidents (the ground truth a backtest is scored against) and the scoring.
//!
//! Accepted files:
//! * the sidecar JSON of `tsq gen --truth` (`{"events": [{"kind", "labels", "start_ms",
//!   "end_ms", ...}]}`), optionally filtered by kind;
//! * YAML: a list (or `incidents:` holding a list) of `{matchers, start, end[, name]}` where
//!   `matchers` is a selector such as `{service="api"}`;
//! * text (any other file): one incident per line, `SELECTOR START END`, separated by spaces
//!   or commas; `#` starts a comment.
//!
//! Times are RFC 3339 or Unix seconds.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tsq::storage::{Labels, Matcher};

use super::replay::AlertHistory;
use super::yaml::{self, Kind};
use crate::timearg::parse_time;

/// One incident.
#[derive(Debug, Clone)]
pub struct Incident {
    /// A name for output (the kind, or the selector).
    pub name: String,
    /// Which alerts it concerns.
    pub matchers: Vec<Matcher>,
    /// Start (ms).
    pub start: i64,
    /// End, exclusive (ms).
    pub end: i64,
}

impl Incident {
    /// An alert matches when every matcher whose label the alert has accepts its value
    /// (labels the alert lacks, `__name__` always, are not compared).
    pub fn matches(&self, alert: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| alert.get(&m.name).is_none_or(|v| m.matches(v)))
    }
}

fn matchers_of(sel: &str) -> Result<Vec<Matcher>> {
    crate::inspect::matchers(sel)
}

fn time(s: &str, what: &str) -> Result<i64> {
    parse_time(s).with_context(|| format!("incident {what}"))
}

/// Loads an incidents file; `kinds` (non-empty) keeps only incidents of these kinds.
pub fn load(path: &Path, kinds: &[String]) -> Result<Vec<Incident>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let trimmed = text.trim_start();
    let mut out = if ext == "json" || (trimmed.starts_with('{') && trimmed.contains("\"events\"")) {
        from_json(&text).with_context(|| format!("{}", path.display()))?
    } else if ext == "yml" || ext == "yaml" {
        from_yaml(&text).with_context(|| format!("{}", path.display()))?
    } else {
        from_lines(&text, &path.display().to_string())?
    };
    if !kinds.is_empty() {
        out.retain(|(kind, _)| kind.as_ref().is_some_and(|k| kinds.contains(k)));
    }
    Ok(out.into_iter().map(|(_, i)| i).collect())
}

type Loaded = Vec<(Option<String>, Incident)>;

/// The incidents of a `tsq gen --truth` sidecar given as JSON text, kept to `kinds`.
pub fn from_truth_json(text: &str, kinds: &[&str]) -> Result<Vec<Incident>> {
    Ok(from_json(text)?
        .into_iter()
        .filter(|(k, _)| k.as_deref().is_some_and(|k| kinds.contains(&k)))
        .map(|(_, i)| i)
        .collect())
}

fn from_json(text: &str) -> Result<Loaded> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    let events = v.get("events").and_then(|e| e.as_array()).ok_or_else(|| {
        anyhow!("expected the `tsq gen --truth` sidecar: an object with \"events\"")
    })?;
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let kind = e.get("kind").and_then(|k| k.as_str()).map(str::to_string);
        let labels = e
            .get("labels")
            .and_then(|l| l.as_object())
            .ok_or_else(|| anyhow!("event {i}: missing \"labels\""))?;
        let matchers = labels
            .iter()
            .map(|(k, v)| Matcher::equal(k.clone(), v.as_str().unwrap_or_default()))
            .collect();
        let ms = |k: &str| e.get(k).and_then(serde_json::Value::as_i64);
        let (start, end) = match (ms("start_ms"), ms("end_ms")) {
            (Some(s), Some(e)) => (s, e),
            _ => bail!("event {i}: missing \"start_ms\" / \"end_ms\""),
        };
        let name = e
            .get("selector")
            .and_then(|s| s.as_str())
            .map_or_else(|| format!("event {i}"), str::to_string);
        out.push((
            kind.clone(),
            Incident {
                name: match &kind {
                    Some(k) => format!("{k} {name}"),
                    None => name,
                },
                matchers,
                start,
                end,
            },
        ));
    }
    Ok(out)
}

fn from_yaml(text: &str) -> Result<Loaded> {
    let err = |p: yaml::Pos, m: &str| anyhow!("{}:{}: {m}", p.line, p.col);
    let Some(root) = yaml::parse(text).map_err(|e| err(e.pos, &e.message))? else {
        return Ok(Vec::new());
    };
    let list = match &root.kind {
        Kind::Seq(items) => items,
        Kind::Map(items) => match items
            .iter()
            .find(|(k, _)| matches!(&k.kind, Kind::Scalar(s, _) if s == "incidents"))
        {
            Some((_, v)) => match &v.kind {
                Kind::Seq(items) => items,
                _ => return Err(err(v.pos, "expected a list of incidents")),
            },
            None => {
                return Err(err(
                    root.pos,
                    "expected a list of incidents or \"incidents:\"",
                ))
            }
        },
        _ => return Err(err(root.pos, "expected a list of incidents")),
    };
    let mut out = Vec::new();
    for item in list {
        let Kind::Map(fields) = &item.kind else {
            return Err(err(item.pos, "expected {matchers, start, end}"));
        };
        let get = |name: &str| -> Option<String> {
            fields.iter().find_map(|(k, v)| match (&k.kind, &v.kind) {
                (Kind::Scalar(kn, _), Kind::Scalar(val, _)) if kn == name => Some(val.clone()),
                _ => None,
            })
        };
        for (k, _) in fields {
            if !matches!(&k.kind, Kind::Scalar(s, _) if ["matchers", "start", "end", "name", "kind"].contains(&s.as_str()))
            {
                return Err(err(
                    k.pos,
                    "unknown key (expected matchers, start, end, name, kind)",
                ));
            }
        }
        let (Some(sel), Some(s), Some(e)) = (get("matchers"), get("start"), get("end")) else {
            return Err(err(item.pos, "an incident needs matchers, start and end"));
        };
        let matchers = matchers_of(&sel).map_err(|e| err(item.pos, &e.to_string()))?;
        let (start, end) = (
            time(&s, "start").map_err(|e| err(item.pos, &format!("{e:#}")))?,
            time(&e, "end").map_err(|e| err(item.pos, &format!("{e:#}")))?,
        );
        if end < start {
            return Err(err(item.pos, "end is before start"));
        }
        out.push((
            get("kind"),
            Incident {
                name: get("name").unwrap_or(sel),
                matchers,
                start,
                end,
            },
        ));
    }
    Ok(out)
}

fn from_lines(text: &str, file: &str) -> Result<Loaded> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with("matchers") {
            continue;
        }
        let ctx = |m: String| anyhow!("{file}:{}: {m}", n + 1);
        // The selector ends at its closing brace (outside quotes).
        let mut end = None;
        let mut quote = false;
        let mut esc = false;
        for (i, c) in line.char_indices() {
            match c {
                _ if esc => esc = false,
                '\\' if quote => esc = true,
                '"' => quote = !quote,
                '}' if !quote => {
                    end = Some(i + 1);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return Err(ctx("expected SELECTOR START END, e.g. {service=\"api\"} 2026-01-01T10:00:00Z 2026-01-01T10:30:00Z".into()));
        };
        let sel = line[..end].trim().trim_end_matches(',');
        let rest: Vec<&str> = line[end..]
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .collect();
        if rest.len() != 2 {
            return Err(ctx(format!(
                "expected a start and an end time after the selector, got {} field(s)",
                rest.len()
            )));
        }
        let matchers = matchers_of(sel).map_err(|e| ctx(e.to_string()))?;
        let start = time(rest[0], "start").map_err(|e| ctx(format!("{e:#}")))?;
        let stop = time(rest[1], "end").map_err(|e| ctx(format!("{e:#}")))?;
        if stop < start {
            return Err(ctx("end is before start".into()));
        }
        out.push((
            None,
            Incident {
                name: sel.to_string(),
                matchers,
                start,
                end: stop,
            },
        ));
    }
    Ok(out)
}

/// How one rule did against the incidents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    /// Incidents considered (overlapping the replayed range).
    pub incidents: usize,
    /// Incidents detected by at least one firing.
    pub detected: usize,
    /// Firing episodes that match at least one incident.
    pub true_positive_firings: usize,
    /// Firing episodes that match no incident.
    pub false_positives: usize,
    /// Incidents no firing detected.
    pub missed: usize,
    /// `true_positive_firings / firings` (None without firings).
    pub precision: Option<f64>,
    /// `detected / incidents` (None without incidents).
    pub recall: Option<f64>,
    /// Median time to detect (ms).
    pub ttd_median_ms: Option<i64>,
    /// Largest time to detect (ms).
    pub ttd_max_ms: Option<i64>,
    /// The missed incidents: name and start (ms).
    pub missed_incidents: Vec<(String, i64)>,
}

/// Scores a rule's episodes. An episode (firing interval `[fired_at, end)`, `end` = `to` while
/// ongoing) matches an incident when its labels match and the interval overlaps
/// `[start, end + slack)`; time to detect = first matching `fired_at` - incident start
/// (0 when the alert was already firing).
pub fn score(
    incidents: &[Incident],
    alerts: &[AlertHistory],
    from: i64,
    to: i64,
    slack: i64,
) -> Score {
    let relevant: Vec<&Incident> = incidents
        .iter()
        .filter(|i| i.start <= to && i.end + slack > from)
        .collect();
    let mut first_detect: Vec<Option<i64>> = vec![None; relevant.len()];
    let (mut tp, mut fp) = (0, 0);
    for a in alerts {
        for e in &a.episodes {
            let end = e.end.unwrap_or(to.max(e.fired_at + 1));
            let mut hit = false;
            for (ii, inc) in relevant.iter().enumerate() {
                if e.fired_at < inc.end + slack && end > inc.start && inc.matches(&a.labels) {
                    hit = true;
                    let d = &mut first_detect[ii];
                    *d = Some(d.map_or(e.fired_at, |x| x.min(e.fired_at)));
                }
            }
            if hit {
                tp += 1;
            } else {
                fp += 1;
            }
        }
    }
    let mut ttd: Vec<i64> = first_detect
        .iter()
        .zip(&relevant)
        .filter_map(|(d, inc)| d.map(|t| (t - inc.start).max(0)))
        .collect();
    ttd.sort_unstable();
    let detected = ttd.len();
    Score {
        incidents: relevant.len(),
        detected,
        true_positive_firings: tp,
        false_positives: fp,
        missed: relevant.len() - detected,
        precision: (tp + fp > 0).then(|| tp as f64 / (tp + fp) as f64),
        recall: (!relevant.is_empty()).then(|| detected as f64 / relevant.len() as f64),
        ttd_median_ms: super::report::median(&ttd),
        ttd_max_ms: ttd.last().copied(),
        missed_incidents: first_detect
            .iter()
            .zip(&relevant)
            .filter(|(d, _)| d.is_none())
            .map(|(_, i)| (i.name.clone(), i.start))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format_parses() {
        let v = from_lines(
            "# matchers start end\n{service=\"a,b\"} 60 120\n{job=~\"x.*\"}, 1970-01-01T00:05:00Z, 1970-01-01T00:06:00Z\n",
            "f",
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].1.start, v[0].1.end), (60_000, 120_000));
        assert_eq!(v[0].1.matchers[0].value, "a,b");
        assert_eq!(v[1].1.start, 300_000);
        assert!(from_lines("{a=\"b\"} 60\n", "f")
            .unwrap_err()
            .to_string()
            .starts_with("f:1:"));
    }

    #[test]
    fn matching_compares_shared_labels_only() {
        let inc = Incident {
            name: String::new(),
            matchers: matchers_of("x{service=\"api\",instance=~\"api-1|api-2\"}").unwrap(),
            start: 0,
            end: 1,
        };
        assert!(inc.matches(&Labels::new([("service", "api"), ("instance", "api-1")])));
        assert!(inc.matches(&Labels::new([("service", "api")])));
        assert!(inc.matches(&Labels::new([("alertname", "X")])));
        assert!(!inc.matches(&Labels::new([("service", "web")])));
        assert!(!inc.matches(&Labels::new([("instance", "api-3")])));
    }
}
