//! Shared helpers for the integration tests: a compact S-expression view of the tree.

#![allow(dead_code)]

use std::fmt::Write;

use tsq_parser::printer::{format_duration, format_number, quote};
use tsq_parser::*;

fn dur(d: &DurationExpr) -> String {
    match d {
        DurationExpr::Literal(ms) => format_duration(*ms),
        DurationExpr::Number(v) => format!("(num {})", format_number(*v)),
        DurationExpr::Step => "(step)".into(),
        DurationExpr::Range => "(range)".into(),
        DurationExpr::Neg(x) => format!("(neg {})", dur(x)),
        DurationExpr::Binary(op, a, b) => format!("({op} {} {})", dur(a), dur(b)),
        DurationExpr::MinOf(a, b) => format!("(min_of {} {})", dur(a), dur(b)),
        DurationExpr::MaxOf(a, b) => format!("(max_of {} {})", dur(a), dur(b)),
        DurationExpr::Paren(x) => format!("(paren {})", dur(x)),
    }
}

fn labels(l: &[String]) -> String {
    let v: Vec<String> = l.iter().map(|s| quote(s)).collect();
    format!("[{}]", v.join(" "))
}

fn mods(out: &mut String, offset: &Option<DurationExpr>, at: &Option<AtModifier>) {
    if let Some(o) = offset {
        let _ = write!(out, " :offset {}", dur(o));
    }
    match at {
        Some(AtModifier::Time(t)) => {
            let _ = write!(out, " :at {}", format_number(*t));
        }
        Some(AtModifier::Start) => out.push_str(" :at start"),
        Some(AtModifier::End) => out.push_str(" :at end"),
        None => {}
    }
}

fn selector(v: &VectorSelector) -> String {
    let mut out = String::from("(sel");
    if let Some(n) = &v.name {
        let _ = write!(out, " :name {}", quote(n));
    }
    for m in &v.matchers {
        let _ = write!(out, " {}{}{}", quote(&m.name), m.op, quote(&m.value));
    }
    match v.modifier {
        Some(RangeModifier::Anchored) => out.push_str(" :anchored"),
        Some(RangeModifier::Smoothed) => out.push_str(" :smoothed"),
        None => {}
    }
    mods(&mut out, &v.offset, &v.at);
    out.push(')');
    out
}

fn seasons(out: &mut String, s: &Option<Seasons>) {
    if let Some(s) = s {
        let _ = write!(out, " :seasons ({} {}", dur(&s.period), s.count);
        if s.centered {
            out.push_str(" centered");
        }
        if s.by_season {
            out.push_str(" by_season");
        }
        if let Some(tz) = &s.tz {
            let _ = write!(out, " {}", quote(tz));
        }
        out.push(')');
    }
}

fn clauses(
    out: &mut String,
    by: &Option<Vec<String>>,
    range: &Option<(DurationExpr, Option<DurationExpr>)>,
    within: &Option<DurationExpr>,
) {
    if let Some(b) = by {
        let _ = write!(out, " :by {}", labels(b));
    }
    if let Some((r, s)) = range {
        let _ = write!(out, " :range {}", dur(r));
        if let Some(s) = s {
            let _ = write!(out, " :step {}", dur(s));
        }
    }
    if let Some(w) = within {
        let _ = write!(out, " :within {}", dur(w));
    }
}

/// A one-line S-expression of the whole tree; every field appears.
pub fn sx(e: &Expr) -> String {
    match e {
        Expr::Number(v) => format_number(*v),
        Expr::String(s) => format!("(str {})", quote(s)),
        Expr::VectorSelector(v) => selector(v),
        Expr::MatrixSelector(m) => {
            let mut out = format!("(matrix {} {}", selector(&m.selector), dur(&m.range));
            match m.modifier {
                Some(RangeModifier::Anchored) => out.push_str(" anchored"),
                Some(RangeModifier::Smoothed) => out.push_str(" smoothed"),
                None => {}
            }
            seasons(&mut out, &m.seasons);
            out.push(')');
            out
        }
        Expr::Subquery(s) => {
            let mut out = format!("(subquery {} {}", sx(&s.expr), dur(&s.range));
            if let Some(st) = &s.step {
                let _ = write!(out, " :step {}", dur(st));
            }
            seasons(&mut out, &s.seasons);
            mods(&mut out, &s.offset, &s.at);
            out.push(')');
            out
        }
        Expr::Paren(x) => format!("(paren {})", sx(x)),
        Expr::Unary(op, x) => format!(
            "({} {})",
            if *op == UnaryOp::Neg { "neg" } else { "pos" },
            sx(x)
        ),
        Expr::Binary(b) => {
            let mut out = format!("({}", b.op);
            if b.return_bool {
                out.push_str(" bool");
            }
            if let Some(m) = &b.matching {
                let _ = write!(
                    out,
                    " :{} {}",
                    if m.on { "on" } else { "ignoring" },
                    labels(&m.labels)
                );
                match &m.group {
                    Some(Group::Left(l)) => {
                        let _ = write!(out, " :group_left {}", labels(l));
                    }
                    Some(Group::Right(l)) => {
                        let _ = write!(out, " :group_right {}", labels(l));
                    }
                    None => {}
                }
            }
            if let Some(f) = &b.fill {
                let n = |v: Option<f64>| v.map_or("-".to_string(), format_number);
                let _ = write!(out, " :fill ({} {})", n(f.left), n(f.right));
            }
            let _ = write!(out, " {} {})", sx(&b.lhs), sx(&b.rhs));
            out
        }
        Expr::Aggregate(a) => {
            let mut out = format!("({}", a.op);
            if let Some(g) = &a.grouping {
                let _ = write!(
                    out,
                    " :{} {}",
                    if g.without { "without" } else { "by" },
                    labels(&g.labels)
                );
            }
            if let Some(p) = &a.param {
                let _ = write!(out, " :param {}", sx(p));
            }
            let _ = write!(out, " {})", sx(&a.expr));
            out
        }
        Expr::Call(c) => {
            let mut out = format!("(call {}", c.func);
            for a in &c.args {
                let _ = write!(out, " {}", sx(a));
            }
            if let Some((on, l)) = &c.matching {
                let _ = write!(
                    out,
                    " :{} {}",
                    if *on { "on" } else { "ignoring" },
                    labels(l)
                );
            }
            out.push(')');
            out
        }
        Expr::Pattern(p) => {
            let mut out = format!("(pattern {}", quote(&p.pattern));
            for (s, e) in &p.symbols {
                let _ = write!(out, " ({s} {})", sx(e));
            }
            clauses(&mut out, &p.by, &p.range, &p.within);
            out.push(')');
            out
        }
        Expr::Sequence(s) => {
            let mut out = String::from("(sequence");
            for (e, d) in &s.steps {
                match d {
                    Some(d) => {
                        let _ = write!(out, " ({} :for {})", sx(e), dur(d));
                    }
                    None => {
                        let _ = write!(out, " {}", sx(e));
                    }
                }
            }
            clauses(&mut out, &s.by, &s.range, &s.within);
            out.push(')');
            out
        }
    }
}

/// Function names called anywhere in the tree.
pub fn called_functions(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Call(c) => {
            out.push(c.func.clone());
            c.args.iter().for_each(|a| called_functions(a, out));
        }
        Expr::Subquery(s) => called_functions(&s.expr, out),
        Expr::Paren(x) | Expr::Unary(_, x) => called_functions(x, out),
        Expr::Binary(b) => {
            called_functions(&b.lhs, out);
            called_functions(&b.rhs, out);
        }
        Expr::Aggregate(a) => {
            out.push(a.op.to_string());
            called_functions(&a.expr, out);
            if let Some(p) = &a.param {
                called_functions(p, out);
            }
        }
        Expr::Pattern(p) => p.symbols.iter().for_each(|(_, e)| called_functions(e, out)),
        Expr::Sequence(s) => s.steps.iter().for_each(|(e, _)| called_functions(e, out)),
        _ => {}
    }
}
