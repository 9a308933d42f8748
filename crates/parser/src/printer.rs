//! The canonical printer: `Display` for the syntax tree, producing normalized tsq/PromQL that
//! parses back to the same tree.
//!
//! Canonical choices: keywords in lower case; `by`/`without` before the arguments of an
//! aggregation; strings double-quoted with escapes; durations as `1h30m`; numbers in their
//! shortest exact form (`Inf`, `NaN`); `offset` before `@`; one space around binary
//! operators. Parentheses are printed exactly where the tree has [`Expr::Paren`] nodes.

use std::fmt::{self, Display, Formatter, Write};

use crate::ast::*;
use crate::functions::{lookup_function, Trailing};
use crate::lexer::UNITS;
use crate::parser::{is_plain_label_name, is_plain_metric_name};

/// Formats a float so that the lexer reads back exactly the same value.
pub fn format_number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Inf".into() } else { "-Inf".into() };
    }
    let s = format!("{v}");
    if s.len() > 21 {
        format!("{v:e}")
    } else {
        s
    }
}

/// Formats milliseconds as a canonical duration literal (`1h30m`, `500ms`, `0s`).
pub fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    if ms < 0 {
        out.push('-');
    }
    let mut rest = ms.unsigned_abs();
    for (unit, size) in UNITS {
        let size = size.unsigned_abs();
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

/// Quotes a string with double quotes, escaping what must be escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn label(f: &mut Formatter<'_>, name: &str) -> fmt::Result {
    if is_plain_label_name(name) {
        f.write_str(name)
    } else {
        f.write_str(&quote(name))
    }
}

fn label_list(f: &mut Formatter<'_>, labels: &[String]) -> fmt::Result {
    f.write_char('(')?;
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        label(f, l)?;
    }
    f.write_char(')')
}

/// The spelling of a binary operator.
pub fn binary_op_str(op: BinaryOp) -> &'static str {
    use BinaryOp::*;
    match op {
        Add => "+",
        Sub => "-",
        Mul => "*",
        Div => "/",
        Mod => "%",
        Pow => "^",
        Atan2 => "atan2",
        Eq => "==",
        Ne => "!=",
        Gt => ">",
        Lt => "<",
        Ge => ">=",
        Le => "<=",
        And => "and",
        Or => "or",
        Unless => "unless",
        TrimUpper => "</",
        TrimLower => ">/",
    }
}

/// The spelling of an aggregation operator.
pub fn aggregate_op_str(op: AggregateOp) -> &'static str {
    use AggregateOp::*;
    match op {
        Sum => "sum",
        Min => "min",
        Max => "max",
        Avg => "avg",
        Group => "group",
        Stddev => "stddev",
        Stdvar => "stdvar",
        Count => "count",
        CountValues => "count_values",
        Bottomk => "bottomk",
        Topk => "topk",
        Quantile => "quantile",
        Limitk => "limitk",
        LimitRatio => "limit_ratio",
        OutliersMad => "outliers_mad",
    }
}

impl Display for MatchOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

impl Display for Matcher {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        label(f, &self.name)?;
        write!(f, "{}{}", self.op, quote(&self.value))
    }
}

impl Display for BinaryOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(binary_op_str(*self))
    }
}

impl Display for AggregateOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(aggregate_op_str(*self))
    }
}

impl Display for DurationOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DurationOp::Add => "+",
            DurationOp::Sub => "-",
            DurationOp::Mul => "*",
            DurationOp::Div => "/",
            DurationOp::Mod => "%",
            DurationOp::Pow => "^",
        })
    }
}

impl Display for DurationExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            DurationExpr::Literal(ms) => f.write_str(&format_duration(*ms)),
            // `Inf` is not a duration token: an overflowing literal (`58e4404`) prints as one
            // that overflows again.
            DurationExpr::Number(v) if v.is_infinite() => {
                f.write_str(if *v > 0.0 { "1e999" } else { "-1e999" })
            }
            DurationExpr::Number(v) => f.write_str(&format_number(*v)),
            DurationExpr::Step => f.write_str("step()"),
            DurationExpr::Range => f.write_str("range()"),
            DurationExpr::Neg(d) => write!(f, "-{d}"),
            DurationExpr::Binary(op, a, b) => write!(f, "{a} {op} {b}"),
            DurationExpr::MinOf(a, b) => write!(f, "min_of({a}, {b})"),
            DurationExpr::MaxOf(a, b) => write!(f, "max_of({a}, {b})"),
            DurationExpr::Paren(d) => write!(f, "({d})"),
        }
    }
}

impl Display for AtModifier {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            AtModifier::Time(t) => f.write_str(&format_number(*t)),
            AtModifier::Start => f.write_str("start()"),
            AtModifier::End => f.write_str("end()"),
        }
    }
}

fn modifiers(
    f: &mut Formatter<'_>,
    offset: &Option<DurationExpr>,
    at: &Option<AtModifier>,
) -> fmt::Result {
    if let Some(o) = offset {
        write!(f, " offset {o}")?;
    }
    if let Some(a) = at {
        write!(f, " @ {a}")?;
    }
    Ok(())
}

impl VectorSelector {
    fn fmt_plain(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut rest: Vec<&Matcher> = self.matchers.iter().collect();
        let mut named = false;
        if let Some(n) = &self.name {
            if is_plain_metric_name(n) {
                if let Some(i) = rest
                    .iter()
                    .position(|m| m.name == "__name__" && m.op == MatchOp::Equal && &m.value == n)
                {
                    rest.remove(i);
                    f.write_str(n)?;
                    named = true;
                }
            }
        }
        if !named || !rest.is_empty() {
            f.write_char('{')?;
            for (i, m) in rest.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{m}")?;
            }
            f.write_char('}')?;
        }
        Ok(())
    }
}

impl Display for VectorSelector {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.fmt_plain(f)?;
        match self.modifier {
            Some(RangeModifier::Anchored) => f.write_str(" anchored")?,
            Some(RangeModifier::Smoothed) => f.write_str(" smoothed")?,
            None => {}
        }
        modifiers(f, &self.offset, &self.at)
    }
}

impl Display for Seasons {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "seasons({}, {}", self.period, self.count)?;
        if self.centered {
            f.write_str(", \"centered\"")?;
        }
        if self.by_season {
            f.write_str(", \"by_season\"")?;
        }
        if let Some(tz) = &self.tz {
            write!(f, ", {}", quote(tz))?;
        }
        f.write_char(')')
    }
}

impl Display for MatrixSelector {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.selector.fmt_plain(f)?;
        write!(f, "[{}]", self.range)?;
        match self.modifier {
            Some(RangeModifier::Anchored) => f.write_str(" anchored")?,
            Some(RangeModifier::Smoothed) => f.write_str(" smoothed")?,
            None => {}
        }
        if let Some(s) = &self.seasons {
            write!(f, " {s}")?;
        }
        modifiers(f, &self.selector.offset, &self.selector.at)
    }
}

impl Display for Subquery {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}:", self.expr, self.range)?;
        if let Some(s) = &self.step {
            write!(f, "{s}")?;
        }
        f.write_char(']')?;
        if let Some(s) = &self.seasons {
            write!(f, " {s}")?;
        }
        modifiers(f, &self.offset, &self.at)
    }
}

impl Display for VectorMatching {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(if self.on { "on " } else { "ignoring " })?;
        label_list(f, &self.labels)?;
        match &self.group {
            // The label list is always printed: a bare `group_left` followed by a
            // parenthesised operand would read the operand as the list.
            Some(Group::Left(l)) => {
                f.write_str(" group_left ")?;
                label_list(f, l)?;
            }
            Some(Group::Right(l)) => {
                f.write_str(" group_right ")?;
                label_list(f, l)?;
            }
            None => {}
        }
        Ok(())
    }
}

impl Display for Fill {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match (self.left, self.right) {
            (Some(l), Some(r)) if l.to_bits() == r.to_bits() => {
                write!(f, "fill({})", format_number(l))
            }
            (l, r) => {
                let mut sep = "";
                if let Some(l) = l {
                    write!(f, "fill_left({})", format_number(l))?;
                    sep = " ";
                }
                if let Some(r) = r {
                    write!(f, "{sep}fill_right({})", format_number(r))?;
                }
                Ok(())
            }
        }
    }
}

impl Display for BinaryExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.lhs, self.op)?;
        if self.return_bool {
            f.write_str(" bool")?;
        }
        if let Some(m) = &self.matching {
            write!(f, " {m}")?;
        }
        if let Some(fill) = &self.fill {
            if fill.left.is_some() || fill.right.is_some() {
                write!(f, " {fill}")?;
            }
        }
        write!(f, " {}", self.rhs)
    }
}

impl Display for Grouping {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(if self.without { "without " } else { "by " })?;
        label_list(f, &self.labels)
    }
}

impl Display for AggregateExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if let Some(g) = &self.grouping {
            write!(f, " {g} ")?;
        }
        f.write_char('(')?;
        if let Some(p) = &self.param {
            write!(f, "{p}, ")?;
        }
        write!(f, "{})", self.expr)
    }
}

impl Display for Call {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.func)?;
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        f.write_char(')')?;
        if let Some((on, labels)) = &self.matching {
            let by = lookup_function(&self.func).is_some_and(|s| s.trailing == Trailing::By);
            f.write_str(if by {
                " by "
            } else if *on {
                " on "
            } else {
                " ignoring "
            })?;
            label_list(f, labels)?;
        }
        Ok(())
    }
}

fn episode_clauses(
    f: &mut Formatter<'_>,
    by: &Option<Vec<String>>,
    range: &Option<(DurationExpr, Option<DurationExpr>)>,
    within: &Option<DurationExpr>,
) -> fmt::Result {
    if let Some(by) = by {
        f.write_str(" by ")?;
        label_list(f, by)?;
    }
    if let Some((r, s)) = range {
        write!(f, " [{r}:")?;
        if let Some(s) = s {
            write!(f, "{s}")?;
        }
        f.write_char(']')?;
    }
    if let Some(w) = within {
        write!(f, " within {w}")?;
    }
    Ok(())
}

impl Display for PatternExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "pattern({}", quote(&self.pattern))?;
        for (s, e) in &self.symbols {
            write!(f, ", {s}: {e}")?;
        }
        f.write_char(')')?;
        episode_clauses(f, &self.by, &self.range, &self.within)
    }
}

impl Display for SequenceExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("sequence(")?;
        for (i, (e, d)) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{e}")?;
            if let Some(d) = d {
                write!(f, " for {d}")?;
            }
        }
        f.write_char(')')?;
        episode_clauses(f, &self.by, &self.range, &self.within)
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(v) => f.write_str(&format_number(*v)),
            Expr::String(s) => f.write_str(&quote(s)),
            Expr::VectorSelector(v) => write!(f, "{v}"),
            Expr::MatrixSelector(m) => write!(f, "{m}"),
            Expr::Subquery(s) => write!(f, "{s}"),
            Expr::Paren(e) => write!(f, "({e})"),
            Expr::Unary(op, e) => {
                f.write_char(if *op == UnaryOp::Neg { '-' } else { '+' })?;
                write!(f, "{e}")
            }
            Expr::Binary(b) => write!(f, "{b}"),
            Expr::Aggregate(a) => write!(f, "{a}"),
            Expr::Call(c) => write!(f, "{c}"),
            Expr::Pattern(p) => write!(f, "{p}"),
            Expr::Sequence(s) => write!(f, "{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_duration(5_400_000), "1h30m");
        assert_eq!(format_duration(-1), "-1ms");
        assert_eq!(format_duration(8 * 86_400_000), "1w1d");
        assert_eq!(format_number(1e300), "1e300");
        assert_eq!(format_number(0.1), "0.1");
        assert_eq!(format_number(300.0), "300");
        assert_eq!(quote("a\"b\\\n\u{1}é"), r#""a\"b\\\n\x01é""#);
    }
}
