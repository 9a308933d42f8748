//! Series identity: label sets, label matchers and metric metadata.

use std::fmt;

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value (UTF-8).
    pub value: String,
}

/// A series identity: label pairs sorted by name, unique names, no empty values. The metric
/// name is the `__name__` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set from pairs: sorts by name, keeps the last of duplicate names and
    /// drops empty values (Prometheus treats an empty value as an absent label).
    pub fn new<N: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut v: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label {
                name: n.into(),
                value: v.into(),
            })
            .collect();
        // Stable sort keeps input order among equal names, so "last wins" below.
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(v.len());
        for l in v {
            if let Some(last) = out.last_mut() {
                if last.name == l.name {
                    *last = l;
                    continue;
                }
            }
            out.push(l);
        }
        out.retain(|l| !l.value.is_empty());
        Labels(out)
    }

    /// A label set from pairs that are already sorted, unique and non-empty. Checked in debug
    /// builds only.
    pub fn from_sorted(v: Vec<Label>) -> Self {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
        Labels(v)
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// The pairs, sorted by name.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Iterates over the pairs in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no label at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets (or with an empty value removes) one label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].value = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(
                i,
                Label {
                    name: name.to_string(),
                    value: value.to_string(),
                },
            ),
        }
    }

    /// Removes one label.
    pub fn remove(&mut self, name: &str) {
        self.set(name, "");
    }

    /// A copy without `__name__`.
    pub fn without_metric_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }

    /// Consumes the set, returning the pairs.
    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Writes `value` as a double-quoted string with `\\`, `\"` and `\n` escaped, as the
/// Prometheus text formats do.
pub fn write_escaped(f: &mut impl fmt::Write, value: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in value.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// True when `s` is a valid Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// True when `s` is a valid legacy label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for Labels {
    /// `name{a="b", c="d"}` as Prometheus prints series; names that are not legacy identifiers
    /// are quoted (`{"my.metric", a="b"}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        let plain_name = name.filter(|n| is_valid_metric_name(n));
        if let Some(n) = plain_name {
            f.write_str(n)?;
        }
        let rest: Vec<&Label> = self
            .0
            .iter()
            .filter(|l| !(plain_name.is_some() && l.name == METRIC_NAME))
            .collect();
        if rest.is_empty() && plain_name.is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, l) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if l.name == METRIC_NAME {
                write_escaped(f, &l.value)?;
                continue;
            }
            if is_valid_label_name(&l.name) {
                f.write_str(&l.name)?;
            } else {
                write_escaped(f, &l.name)?;
            }
            f.write_str("=")?;
            write_escaped(f, &l.value)?;
        }
        f.write_str("}")
    }
}

/// Label matcher operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

/// A compiled label matcher. Regexes are fully anchored, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator.
    pub op: MatchOp,
    /// Value or regex source.
    pub value: String,
    re: Option<regex::Regex>,
}

impl Matcher {
    /// Builds a matcher. `dot_matches_newline` selects Prometheus 3.x regex semantics (`.`
    /// matches `\n`); Prometheus 2.x did not.
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
        dot_matches_newline: bool,
    ) -> Result<Matcher, regex::Error> {
        let value = value.into();
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .dot_matches_new_line(dot_matches_newline)
                    .size_limit(1 << 22)
                    .build()?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            re,
        })
    }

    /// `name = value`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
        }
    }

    /// Does `value` (empty when the label is absent) satisfy the matcher?
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => self.value == value,
            MatchOp::NotEqual => self.value != value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// True when the matcher accepts the empty string, i.e. also series without the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Does the label set satisfy the matcher?
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

/// The type of a metric, as OpenMetrics declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Classic histogram (bucket series).
    Histogram,
    /// Summary.
    Summary,
    /// Not declared.
    #[default]
    Unknown,
}

impl MetricType {
    /// The OpenMetrics spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Unknown => "unknown",
        }
    }

    /// Parses the OpenMetrics spelling (`untyped` is Prometheus text 0.0.4's `unknown`).
    pub fn parse(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" | "gaugehistogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "unknown" | "untyped" | "info" | "stateset" => MetricType::Unknown,
            _ => return None,
        })
    }
}

/// Whether a metric measures an outcome (KPI) or the health of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricKind {
    /// An outcome users care about.
    Kpi,
    /// A health signal (the default).
    #[default]
    Health,
}

impl MetricKind {
    /// `kpi` or `health`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Kpi => "kpi",
            MetricKind::Health => "health",
        }
    }
}

/// Metadata of one metric name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricMeta {
    /// Declared type.
    pub metric_type: MetricType,
    /// Unit (`seconds`, `bytes`, ...), empty when unknown.
    pub unit: String,
    /// Help text.
    pub help: String,
    /// KPI or health.
    pub kind: MetricKind,
}

impl MetricMeta {
    /// True when every field has its default (type unknown, no unit, no help, health):
    /// metadata equal to the default is the same as none, and is not stored.
    pub fn is_default(&self) -> bool {
        *self == MetricMeta::default()
    }
}

/// The Prometheus staleness marker: a NaN with a fixed payload that ends a series.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True when `v` is the staleness marker (compared by bits: ordinary NaNs are not markers).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One series and its samples in a time range, decoded into plain columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeriesData {
    /// The series identity.
    pub labels: Labels,
    /// Timestamps in milliseconds, strictly increasing.
    pub timestamps: Vec<i64>,
    /// Values, bit-exact as written; same length as `timestamps`.
    pub values: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_dedup_and_drop_empty() {
        let l = Labels::new([("b", "1"), ("a", "x"), ("b", "2"), ("c", "")]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("a"), Some("x"));
        assert_eq!(l.get("b"), Some("2"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn display_like_prometheus() {
        let l = Labels::new([("__name__", "up"), ("job", "a\"b")]);
        assert_eq!(l.to_string(), r#"up{job="a\"b"}"#);
        let l = Labels::new([("__name__", "my.metric"), ("job", "x")]);
        assert_eq!(l.to_string(), r#"{"my.metric", job="x"}"#);
        assert_eq!(Labels::new([("__name__", "up")]).to_string(), "up");
        assert_eq!(Labels::default().to_string(), "{}");
    }

    #[test]
    fn regex_matchers_are_anchored() {
        let m = Matcher::new(MatchOp::Regex, "job", "a.c", true).unwrap();
        assert!(m.matches("abc"));
        assert!(!m.matches("xabc"));
        assert!(m.matches("a\nc"));
        let m2 = Matcher::new(MatchOp::Regex, "job", "a.c", false).unwrap();
        assert!(!m2.matches("a\nc"));
        let m3 = Matcher::new(MatchOp::NotRegex, "job", "", true).unwrap();
        assert!(m3.matches("x"));
        assert!(!m3.matches(""));
    }

    #[test]
    fn stale_marker_is_a_specific_nan() {
        assert!(is_stale_nan(f64::from_bits(STALE_NAN_BITS)));
        assert!(!is_stale_nan(f64::NAN));
    }
}
