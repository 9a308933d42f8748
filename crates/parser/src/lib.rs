//! tsq-parser: the tsq query language (PromQL plus extensions) parsed into a typed syntax tree.
//!
//! Pure library: no I/O, no dependency on storage.
//!
//! * [`parse`] reads a query and type-checks it as Prometheus does (instant vector, range
//!   vector, scalar, string, plus tsq's `episodes`); errors carry the exact line and column.
//! * The tree ([`Expr`]) prints back as canonical query text through `Display`, and
//!   `parse(&expr.to_string())` gives the same tree.
//! * [`functions()`] / [`lookup_function`] expose the one signature table the type checker
//!   uses; [`Expr::value_type`] gives the type of any expression.
//! * [`parse_duration`] and [`parse_matchers`] serve command-line arguments.
//!
//! ```
//! use tsq_parser::{parse, Expr, ValueType};
//!
//! let e = parse("sum(rate(http_requests_total{job=\"api\"}[5m])) by (code)").unwrap();
//! assert_eq!(e.value_type(), ValueType::InstantVector);
//! assert_eq!(e.to_string(), "sum by (code) (rate(http_requests_total{job=\"api\"}[5m]))");
//! assert_eq!(parse(&e.to_string()).unwrap(), e);
//!
//! let err = parse("rate(up)").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "1:6: expected type range vector in call to function \"rate\", got instant vector"
//! );
//! assert_eq!(err.render("rate(up)"), "rate(up)\n     ^");
//! # let _ = Expr::Number(1.0);
//! ```
//!
//! The grammar, the precedence table and the tsq extensions are described in
//! `docs/query-grammar.md`.

#![forbid(unsafe_code)]

pub mod ast;
pub mod functions;
mod lexer;
mod parser;
mod pattern;
pub mod printer;

pub use ast::*;
pub use functions::{functions, lookup_function, FunctionSig, Trailing};
pub use pattern::{parse_pattern, PatternNode};

/// A parse or type error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    /// Byte offset in the input.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What went wrong / what was expected.
    pub message: String,
}

impl ParseError {
    /// An error at byte `offset` of `src` (clamped to the input and to a char boundary).
    pub(crate) fn at(src: &str, offset: usize, message: String) -> Self {
        let mut offset = offset.min(src.len());
        while !src.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &src[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = src[line_start..offset].chars().count() + 1;
        ParseError {
            offset,
            line,
            column,
            message,
        }
    }

    /// The line of `input` that holds the error, and under it a caret at the column:
    ///
    /// ```text
    /// rate(up)
    ///      ^
    /// ```
    pub fn render(&self, input: &str) -> String {
        let line = input.lines().nth(self.line - 1).unwrap_or("");
        let line = line.strip_suffix('\r').unwrap_or(line);
        // Tabs keep their width so the caret lines up in a terminal.
        let pad: String = line
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!("{line}\n{pad}^")
    }
}

/// Parses and type-checks a query.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    parser::Parser::new(input)?.parse_query_guarded()
}

/// Parses a duration as the command line takes it (`5m`, `1h30m`, `300` seconds, `1.5`
/// seconds) into milliseconds. Durations are not negative: `-5m` is an error.
pub fn parse_duration(s: &str) -> Result<i64, ParseError> {
    parser::Parser::new(s)?.parse_duration_only()
}

/// Parses a series selector (`{a="b"}`, `metric`, `metric{a=~"b.*"}`) into its matchers;
/// a metric name becomes a leading `__name__` equality matcher. At least one matcher must
/// not match the empty string, as for selectors in queries.
pub fn parse_matchers(s: &str) -> Result<Vec<Matcher>, ParseError> {
    parser::Parser::new(s)?.parse_matchers_only()
}

impl Expr {
    /// Calls `f` on this node and then on every node below it, depth first, left to right
    /// (arguments, operands, pattern symbols and sequence steps; not duration expressions).
    pub fn visit<'e>(&'e self, f: &mut dyn FnMut(&'e Expr)) {
        f(self);
        match self {
            Expr::Paren(x) | Expr::Unary(_, x) => x.visit(f),
            Expr::Subquery(s) => s.expr.visit(f),
            Expr::Binary(b) => {
                b.lhs.visit(f);
                b.rhs.visit(f);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    p.visit(f);
                }
                a.expr.visit(f);
            }
            Expr::Call(c) => c.args.iter().for_each(|a| a.visit(f)),
            Expr::Pattern(p) => p.symbols.iter().for_each(|(_, x)| x.visit(f)),
            Expr::Sequence(s) => s.steps.iter().for_each(|(x, _)| x.visit(f)),
            Expr::Number(_)
            | Expr::String(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_) => {}
        }
    }

    /// The type this expression evaluates to (the parser has already checked that it is
    /// well-typed).
    pub fn value_type(&self) -> ValueType {
        match self {
            Expr::Number(_) => ValueType::Scalar,
            Expr::String(_) => ValueType::String,
            Expr::VectorSelector(_) | Expr::Aggregate(_) => ValueType::InstantVector,
            Expr::MatrixSelector(_) | Expr::Subquery(_) => ValueType::RangeVector,
            Expr::Paren(e) | Expr::Unary(_, e) => e.value_type(),
            Expr::Binary(b) => {
                let (l, r) = (b.lhs.value_type(), b.rhs.value_type());
                if l == ValueType::Episodes || r == ValueType::Episodes {
                    ValueType::Episodes
                } else if l == ValueType::Scalar && r == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::InstantVector
                }
            }
            Expr::Call(c) => lookup_function(&c.func).map_or(ValueType::InstantVector, |s| s.ret),
            Expr::Pattern(_) | Expr::Sequence(_) => ValueType::Episodes,
        }
    }
}

impl BinaryOp {
    /// `==`, `!=`, `>`, `<`, `>=`, `<=`.
    pub fn is_comparison(self) -> bool {
        use BinaryOp::*;
        matches!(self, Eq | Ne | Gt | Lt | Ge | Le)
    }

    /// `and`, `or`, `unless`.
    pub fn is_set_operator(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless)
    }

    /// Binding strength, 1 (`or`) to 6 (`^`), as in PromQL.
    pub fn precedence(self) -> u8 {
        use BinaryOp::*;
        match self {
            Or => 1,
            And | Unless => 2,
            Eq | Ne | Gt | Lt | Ge | Le | TrimUpper | TrimLower => 3,
            Add | Sub => 4,
            Mul | Div | Mod | Atan2 => 5,
            Pow => 6,
        }
    }

    /// Only `^` groups to the right.
    pub fn is_right_associative(self) -> bool {
        self == BinaryOp::Pow
    }
}

impl AggregateOp {
    /// Whether the operator takes a parameter before the vector (`topk(3, v)`).
    pub fn has_param(self) -> bool {
        use AggregateOp::*;
        matches!(
            self,
            CountValues | Bottomk | Topk | Quantile | Limitk | LimitRatio | OutliersMad
        )
    }
}

impl DurationExpr {
    /// Evaluates the duration in milliseconds, given the query step and range (both in
    /// milliseconds; the range is 0 for instant queries). Arithmetic is done on seconds, as
    /// Prometheus does (`5m * 2` is 600s, `2 ^ 3` is 8s).
    pub fn eval_ms(&self, step_ms: i64, range_ms: i64) -> Result<i64, String> {
        let secs = self.eval_secs(step_ms as f64 / 1000.0, range_ms as f64 / 1000.0)?;
        let ms = (secs * 1000.0).round();
        if !ms.is_finite() || ms.abs() > 9.2e18 {
            return Err(format!("duration out of range: {secs}s"));
        }
        Ok(ms as i64)
    }

    fn eval_secs(&self, step: f64, range: f64) -> Result<f64, String> {
        Ok(match self {
            DurationExpr::Literal(ms) => *ms as f64 / 1000.0,
            DurationExpr::Number(s) => *s,
            DurationExpr::Step => step,
            DurationExpr::Range => range,
            DurationExpr::Neg(d) => -d.eval_secs(step, range)?,
            DurationExpr::Paren(d) => d.eval_secs(step, range)?,
            DurationExpr::MinOf(a, b) => a.eval_secs(step, range)?.min(b.eval_secs(step, range)?),
            DurationExpr::MaxOf(a, b) => a.eval_secs(step, range)?.max(b.eval_secs(step, range)?),
            DurationExpr::Binary(op, a, b) => {
                let (a, b) = (a.eval_secs(step, range)?, b.eval_secs(step, range)?);
                match op {
                    DurationOp::Add => a + b,
                    DurationOp::Sub => a - b,
                    DurationOp::Mul => a * b,
                    DurationOp::Div | DurationOp::Mod if b == 0.0 => {
                        return Err("division by zero in duration expression".into())
                    }
                    DurationOp::Div => a / b,
                    DurationOp::Mod => a % b,
                    DurationOp::Pow => a.powf(b),
                }
            }
        })
    }
}

impl Expr {
    /// The expression inside any number of parentheses.
    pub fn strip_parens(&self) -> &Expr {
        let mut e = self;
        while let Expr::Paren(inner) = e {
            e = inner;
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters() {
        let e = parse("\"é\" + \n  {a=}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 6));
        let e = parse("\"ééé\" + {)").unwrap_err();
        assert_eq!(e.column, 10);
        assert_eq!(e.message, "unexpected \")\", expected a label matcher");
    }

    #[test]
    fn duration_expressions_evaluate() {
        let range_of = |q: &str| match parse(q).unwrap() {
            Expr::MatrixSelector(m) => m.range,
            e => panic!("{e:?}"),
        };
        assert_eq!(range_of("x[5m * 2]").eval_ms(0, 0), Ok(600_000));
        assert_eq!(range_of("x[1h % 7m]").eval_ms(0, 0), Ok(240_000));
        assert_eq!(range_of("x[2 ^ 3]").eval_ms(0, 0), Ok(8_000));
        assert_eq!(
            range_of("x[max_of(step() * 4, 1m)]").eval_ms(30_000, 0),
            Ok(120_000)
        );
        assert_eq!(
            range_of("x[range() - -1s]").eval_ms(0, 3_600_000),
            Ok(3_601_000)
        );
        assert!(range_of("x[1m / 0]").eval_ms(0, 0).is_err());
        assert!(BinaryOp::Pow.is_right_associative() && BinaryOp::Gt.is_comparison());
        assert!(AggregateOp::CountValues.has_param() && !AggregateOp::Sum.has_param());
    }

    #[test]
    fn durations_and_matchers() {
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("2d").unwrap(), 172_800_000);
        assert!(parse_duration("-2d").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("1.5").unwrap(), 1500);
        assert!(parse_duration("5x").is_err());
        let m = parse_matchers("up{job=~\"a.*\"}").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].name, "__name__");
        assert!(parse_matchers("{a=\"\"}").is_err());
        assert_eq!(
            parse_matchers("{\"my.metric\"}").unwrap()[0].value,
            "my.metric"
        );
    }
}
