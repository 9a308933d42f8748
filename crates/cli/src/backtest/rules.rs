//! Prometheus rule files: loading and validation with `file:line:column` errors.
//!
//! The accepted shape is Prometheus's `rulefmt`:
//!
//! ```yaml
//! groups:
//!   - name: api                # required, unique in the file
//!     interval: 1m             # optional (default: --interval)
//!     query_offset: 30s        # optional
//!     limit: 10                # optional, 0 = none
//!     labels: {team: web}      # optional (Prometheus 3), added to every rule
//!     rules:
//!       - record: job:errors:rate5m
//!         expr: sum by (job) (rate(errors_total[5m]))
//!       - alert: HighErrors
//!         expr: job:errors:rate5m > 1
//!         for: 5m
//!         keep_firing_for: 10m
//!         labels: {severity: page}
//!         annotations: {summary: "{{ $labels.job }}: {{ $value | humanize }}/s"}
//! ```

use std::collections::HashSet;

use saphyr_parser::ScalarStyle;
use tsq::parser::{Expr, ValueType};

use super::template::Template;
use super::yaml::{self, Kind, Node, Pos, Source};

/// What a rule produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// `alert: NAME`.
    Alert(String),
    /// `record: NAME`.
    Record(String),
}

/// A label or annotation value: its text and, when it holds actions, its template.
#[derive(Debug, Clone)]
pub struct TextTemplate {
    /// The label or annotation name.
    pub name: String,
    /// The raw text.
    pub text: String,
    /// The parsed template (`None` for plain text).
    pub template: Option<Template>,
}

impl TextTemplate {
    /// The expanded text.
    pub fn expand(&self, labels: &tsq::storage::Labels, value: f64) -> String {
        match &self.template {
            None => self.text.clone(),
            Some(t) => t.expand(&super::template::Data { labels, value }),
        }
    }

    /// True when the expansion depends on the sample value.
    pub fn uses_value(&self) -> bool {
        self.template.as_ref().is_some_and(Template::uses_value)
    }
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Alert or record, with the name.
    pub kind: RuleKind,
    /// The expression text.
    pub expr_text: String,
    /// The parsed expression.
    pub expr: Expr,
    /// `for` (ms).
    pub for_ms: i64,
    /// `keep_firing_for` (ms).
    pub keep_firing_for_ms: i64,
    /// Labels (group labels first, overridden by the rule's), in name order.
    pub labels: Vec<TextTemplate>,
    /// Annotations, in name order.
    pub annotations: Vec<TextTemplate>,
    /// Where the rule starts in its file.
    pub pos: Pos,
}

impl Rule {
    /// The alert or record name.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Alert(n) | RuleKind::Record(n) => n,
        }
    }
}

/// One rule group.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group name.
    pub name: String,
    /// `interval` (ms), if set.
    pub interval_ms: Option<i64>,
    /// `query_offset` (ms).
    pub query_offset_ms: i64,
    /// `limit` (0 = none).
    pub limit: usize,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

/// A loaded rule file.
#[derive(Debug, Clone)]
pub struct RuleFile {
    /// The path as given.
    pub path: String,
    /// The groups, in file order.
    pub groups: Vec<Group>,
}

/// Parses a Prometheus duration (`0`, `90s`, `1h30m`, `1d`, `500ms`; units y w d h m s ms in
/// that order, integers only), in ms.
pub fn parse_prom_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let b = s.as_bytes();
    let mut i = 0;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: i64 = s[start..i].parse().ok()?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let idx = UNITS.iter().position(|(u, _)| *u == unit)?;
        if idx < next_unit {
            return None;
        }
        next_unit = idx + 1;
        total = total.checked_add(n.checked_mul(UNITS[idx].1)?)?;
    }
    Some(total)
}

struct Ctx<'a> {
    file: &'a str,
    src: Source,
    errors: Vec<String>,
}

impl Ctx<'_> {
    fn err(&mut self, pos: Pos, msg: impl std::fmt::Display) {
        self.errors
            .push(format!("{}:{}:{}: {msg}", self.file, pos.line, pos.col));
    }

    /// The entries of a mapping, with unknown and repeated keys reported.
    fn map<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&str],
    ) -> Option<Vec<(&'n str, &'n Node, &'n Node)>> {
        let Kind::Map(items) = &node.kind else {
            self.err(
                node.pos,
                format!("expected a mapping for {what}, got {}", node.describe()),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (k, v) in items {
            let Kind::Scalar(key, _) = &k.kind else {
                self.err(k.pos, format!("expected a string key in {what}"));
                continue;
            };
            if !known.is_empty() && !known.contains(&key.as_str()) {
                self.err(
                    k.pos,
                    format!(
                        "unknown key {key:?} in {what} (expected one of: {})",
                        known.join(", ")
                    ),
                );
                continue;
            }
            if !seen.insert(key.as_str()) {
                self.err(k.pos, format!("key {key:?} repeated in {what}"));
                continue;
            }
            out.push((key.as_str(), k, v));
        }
        Some(out)
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            _ if node.is_null() => None,
            Kind::Scalar(s, _) => Some(s.clone()),
            _ => {
                self.err(
                    node.pos,
                    format!("expected a string for {what}, got {}", node.describe()),
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> i64 {
        let Some(s) = self.string(node, what) else {
            return 0;
        };
        match parse_prom_duration(&s) {
            Some(d) => d,
            None => {
                self.err(
                    node.pos,
                    format!(
                        "invalid duration {s:?} for {what}: expected a Prometheus duration such as 30s, 5m, 1h30m or 0"
                    ),
                );
                0
            }
        }
    }

    /// Where character `i` of the scalar `value` held by `node` is in the file.
    fn pos_in(&self, node: &Node, value: &str, i: usize) -> Pos {
        self.src
            .pos(yaml::value_to_source(&self.src, node, value, i))
    }

    fn templates(&mut self, node: &Node, what: &str, check: bool) -> Vec<TextTemplate> {
        if node.is_null() {
            return Vec::new();
        }
        let Some(items) = self.map(node, what, &[]) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, k, v) in items {
            if !tsq::storage::labels::is_valid_label_name(name) || name == "__name__" {
                self.err(k.pos, format!("invalid {what} name {name:?}"));
                continue;
            }
            let text = match &v.kind {
                _ if v.is_null() => String::new(),
                Kind::Scalar(s, _) => s.clone(),
                _ => {
                    self.err(
                        v.pos,
                        format!(
                            "expected a string for {what} {name:?}, got {}",
                            v.describe()
                        ),
                    );
                    continue;
                }
            };
            let template = if check && super::template::has_actions(&text) {
                match Template::parse(&text) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        let p = self.pos_in(v, &text, e.offset);
                        self.err(p, format!("template of {what} {name:?}: {}", e.message));
                        continue;
                    }
                }
            } else {
                None
            };
            out.push(TextTemplate {
                name: name.to_string(),
                text,
                template,
            });
        }
        out
    }
}

const GROUP_KEYS: [&str; 6] = [
    "name",
    "interval",
    "query_offset",
    "limit",
    "labels",
    "rules",
];
const RULE_KEYS: [&str; 7] = [
    "record",
    "alert",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];

/// Loads and validates a rule file; every problem is reported as `file:line:column: what`.
pub fn load(path: &std::path::Path) -> anyhow::Result<RuleFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    parse_str(&path.display().to_string(), &text).map_err(|errs| {
        anyhow::anyhow!(
            "{} error{} in rule file:\n{}",
            errs.len(),
            if errs.len() == 1 { "" } else { "s" },
            errs.join("\n")
        )
    })
}

/// Parses rule-file text; `file` names it in errors.
pub fn parse_str(file: &str, text: &str) -> Result<RuleFile, Vec<String>> {
    let mut cx = Ctx {
        file,
        src: Source::new(text),
        errors: Vec::new(),
    };
    let root = match yaml::parse(text) {
        Ok(r) => r,
        Err(e) => {
            cx.err(e.pos, format!("YAML syntax error: {}", e.message));
            return Err(cx.errors);
        }
    };
    let mut groups = Vec::new();
    if let Some(root) = root.filter(|r| !r.is_null()) {
        if let Some(top) = cx.map(&root, "the rule file", &["groups"]) {
            for (_, _, gnode) in top {
                if gnode.is_null() {
                    continue;
                }
                let Kind::Seq(items) = &gnode.kind else {
                    cx.err(
                        gnode.pos,
                        format!(
                            "expected a sequence of groups for \"groups\", got {}",
                            gnode.describe()
                        ),
                    );
                    continue;
                };
                let mut names: Vec<(String, Pos)> = Vec::new();
                for g in items {
                    if let Some(group) = parse_group(&mut cx, g) {
                        if let Some((_, first)) = names.iter().find(|(n, _)| *n == group.name) {
                            let msg = format!(
                                "group name {:?} is repeated in the same file (first at line {})",
                                group.name, first.line
                            );
                            cx.err(g.pos, msg);
                        }
                        names.push((group.name.clone(), g.pos));
                        groups.push(group);
                    }
                }
            }
        }
    }
    if cx.errors.is_empty() {
        Ok(RuleFile {
            path: file.to_string(),
            groups,
        })
    } else {
        Err(cx.errors)
    }
}

fn parse_group(cx: &mut Ctx<'_>, g: &Node) -> Option<Group> {
    let items = cx.map(g, "a group", &GROUP_KEYS)?;
    let mut name = None;
    let mut interval_ms = None;
    let mut query_offset_ms = 0;
    let mut limit = 0;
    let mut labels = Vec::new();
    let mut rules = Vec::new();
    let mut rule_nodes = None;
    for (key, _, v) in items {
        match key {
            "name" => name = cx.string(v, "the group name").filter(|s| !s.is_empty()),
            "interval" => {
                let d = cx.duration(v, "the group interval");
                if d > 0 {
                    interval_ms = Some(d);
                }
            }
            "query_offset" => query_offset_ms = cx.duration(v, "query_offset"),
            "limit" => match &v.kind {
                _ if v.is_null() => {}
                Kind::Scalar(s, ScalarStyle::Plain) if s.parse::<usize>().is_ok() => {
                    limit = s.parse().unwrap_or(0);
                }
                _ => cx.err(
                    v.pos,
                    format!(
                        "expected a non-negative integer for limit, got {}",
                        match &v.kind {
                            Kind::Scalar(s, _) => format!("{s:?}"),
                            _ => v.describe().to_string(),
                        }
                    ),
                ),
            },
            "labels" => labels = cx.templates(v, "group label", false),
            "rules" => rule_nodes = Some(v),
            _ => {}
        }
    }
    let Some(name) = name else {
        cx.err(g.pos, "missing group name: expected \"name: ...\"");
        return None;
    };
    if let Some(rn) = rule_nodes.filter(|n| !n.is_null()) {
        match &rn.kind {
            Kind::Seq(items) => {
                for r in items {
                    if let Some(rule) = parse_rule(cx, r, &labels) {
                        rules.push(rule);
                    }
                }
            }
            _ => cx.err(
                rn.pos,
                format!(
                    "expected a sequence of rules for \"rules\", got {}",
                    rn.describe()
                ),
            ),
        }
    }
    Some(Group {
        name,
        interval_ms,
        query_offset_ms,
        limit,
        rules,
    })
}

fn parse_rule(cx: &mut Ctx<'_>, r: &Node, group_labels: &[TextTemplate]) -> Option<Rule> {
    let items = cx.map(r, "a rule", &RULE_KEYS)?;
    let mut alert = None;
    let mut record = None;
    let mut expr_node = None;
    let mut for_ms = 0;
    let mut kff = 0;
    let mut labels_node = None;
    let mut ann_node = None;
    let mut keys_at = Vec::new();
    for (key, k, v) in items {
        keys_at.push((key, k.pos));
        match key {
            "alert" => alert = Some((cx.string(v, "alert").unwrap_or_default(), v)),
            "record" => record = Some((cx.string(v, "record").unwrap_or_default(), v)),
            "expr" => expr_node = Some(v),
            "for" => for_ms = cx.duration(v, "for"),
            "keep_firing_for" => kff = cx.duration(v, "keep_firing_for"),
            "labels" => labels_node = Some(v),
            "annotations" => ann_node = Some(v),
            _ => {}
        }
    }
    let kind = match (alert, record) {
        (Some(_), Some((_, rv))) => {
            cx.err(
                rv.pos,
                "a rule has either \"alert\" or \"record\", not both",
            );
            return None;
        }
        (None, None) => {
            cx.err(
                r.pos,
                "a rule needs \"alert: NAME\" (alerting rule) or \"record: NAME\" (recording rule)",
            );
            return None;
        }
        (Some((name, v)), None) => {
            if name.is_empty() {
                cx.err(v.pos, "the alert name must not be empty");
                return None;
            }
            RuleKind::Alert(name)
        }
        (None, Some((name, v))) => {
            if !tsq::storage::labels::is_valid_metric_name(&name) {
                cx.err(
                    v.pos,
                    format!("invalid recording rule name {name:?}: expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
                );
                return None;
            }
            for (key, p) in &keys_at {
                if matches!(*key, "for" | "keep_firing_for" | "annotations") {
                    cx.err(*p, format!("invalid field {key:?} in a recording rule"));
                }
            }
            RuleKind::Record(name)
        }
    };
    let is_alert = matches!(kind, RuleKind::Alert(_));
    let mut labels: Vec<TextTemplate> = group_labels.to_vec();
    if let Some(ln) = labels_node {
        for l in cx.templates(ln, "label", is_alert) {
            labels.retain(|x| x.name != l.name);
            labels.push(l);
        }
    }
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    if is_alert {
        // Group labels are templates too in an alerting rule.
        for l in labels.iter_mut().filter(|l| l.template.is_none()) {
            if super::template::has_actions(&l.text) {
                l.template = Template::parse(&l.text).ok();
            }
        }
    }
    let mut annotations = match ann_node {
        Some(a) if is_alert => cx.templates(a, "annotation", true),
        _ => Vec::new(),
    };
    annotations.sort_by(|a, b| a.name.cmp(&b.name));
    let Some(en) = expr_node.filter(|n| !n.is_null()) else {
        cx.err(r.pos, "missing \"expr\": every rule needs an expression");
        return None;
    };
    let text = cx.string(en, "expr")?;
    let expr = match tsq::parser::parse(&text) {
        Ok(e) => e,
        Err(e) => {
            let ci = text[..e.offset.min(text.len())].chars().count();
            let p = cx.pos_in(en, &text, ci);
            cx.err(p, format!("invalid expression: {}", e.message));
            return None;
        }
    };
    let vt = expr.value_type();
    if !matches!(vt, ValueType::InstantVector | ValueType::Scalar) {
        cx.err(
            en.pos,
            format!("expr must be an instant vector or a scalar, got {vt:?}"),
        );
        return None;
    }
    Some(Rule {
        kind,
        expr_text: text,
        expr,
        for_ms,
        keep_firing_for_ms: kff,
        labels,
        annotations,
        pos: r.pos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        parse_str("r.yml", text).unwrap_err()
    }

    #[test]
    fn durations_follow_prometheus() {
        assert_eq!(parse_prom_duration("0"), Some(0));
        assert_eq!(parse_prom_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_prom_duration("500ms"), Some(500));
        assert_eq!(parse_prom_duration("1d"), Some(86_400_000));
        assert_eq!(parse_prom_duration("5"), None);
        assert_eq!(parse_prom_duration("1.5m"), None);
        assert_eq!(parse_prom_duration("30m1h"), None);
        assert_eq!(parse_prom_duration(""), None);
    }

    #[test]
    fn a_valid_file_loads() {
        let f = parse_str(
            "r.yml",
            "groups:\n- name: g\n  interval: 30s\n  limit: 3\n  rules:\n  - record: a:b\n    expr: sum(up)\n  - alert: X\n    expr: a:b > 1\n    for: 5m\n    labels: {sev: \"{{ $labels.job }}\"}\n    annotations:\n      summary: 'v={{ $value }}'\n",
        )
        .unwrap();
        let g = &f.groups[0];
        assert_eq!(g.interval_ms, Some(30_000));
        assert_eq!(g.limit, 3);
        assert_eq!(g.rules.len(), 2);
        assert_eq!(g.rules[1].for_ms, 300_000);
        assert!(g.rules[1].labels[0].template.is_some());
        assert_eq!(g.rules[1].annotations[0].name, "summary");
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = errs("groups:\n- name: g\n  rules:\n  - alert: X\n    expr: up\n    fro: 5m\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("r.yml:6:5: unknown key \"fro\""), "{e:?}");
        let e = errs("groups:\n- name: g\n  rules:\n  - alert: X\n    expr: rate(up)\n");
        assert!(e[0].starts_with("r.yml:5:16: invalid expression"), "{e:?}");
        let e = errs("groups:\n- name: g\n  rules:\n  - alert: X\n    expr: |\n      sum(up)\n        > > 1\n");
        assert!(e[0].starts_with("r.yml:7:11: invalid expression"), "{e:?}");
        let e = errs("groups:\n- name: g\n  rules:\n  - alert: X\n    for: 5x\n    expr: up\n");
        assert!(
            e[0].starts_with("r.yml:5:10: invalid duration \"5x\""),
            "{e:?}"
        );
        let e = errs("groups:\n- name: g\n  rules: []\n- name: g\n  rules: []\n");
        assert!(
            e[0].starts_with("r.yml:4:3: group name \"g\" is repeated"),
            "{e:?}"
        );
        let e = errs("groups:\n- name: g\n  rules:\n  - alert: X\n    record: y\n    expr: up\n");
        assert!(e[0].starts_with("r.yml:5:13: a rule has either"), "{e:?}");
        let e = errs("groups:\n- name: g\n  rules:\n  - expr: up\n");
        assert!(e[0].starts_with("r.yml:4:5: a rule needs"), "{e:?}");
        let e = errs("groups:\n- name: g\n  rules:\n  - alert: X\n");
        assert!(e[0].starts_with("r.yml:4:5: missing \"expr\""), "{e:?}");
        let e = errs("groups:\n- name: g\n  limit: many\n  rules: []\n");
        assert!(
            e[0].starts_with("r.yml:3:10: expected a non-negative integer"),
            "{e:?}"
        );
        let e = errs("groups:\n- name: g\n  rules:\n  - alert: X\n    expr: up\n    annotations:\n      s: \"a {{ $value | nope }}\"\n");
        assert!(
            e[0].starts_with("r.yml:7:25: template of annotation \"s\""),
            "{e:?}"
        );
        let e = errs("groups:\n- name: g\n  rules:\n  - record: x\n    expr: up\n    for: 1m\n");
        assert!(
            e[0].starts_with("r.yml:6:5: invalid field \"for\""),
            "{e:?}"
        );
        let e = errs("groups: {a: 1}\n");
        assert!(e[0].starts_with("r.yml:1:9: expected a sequence"), "{e:?}");
    }
}
