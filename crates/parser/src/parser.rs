//! Recursive-descent parser with precedence climbing; it type-checks while it builds, so
//! every error carries the position of the construct at fault.

use crate::ast::*;
use crate::functions::{lookup_function, FunctionSig, Trailing};
use crate::lexer::{self, Tok, Token};
use crate::pattern;
use crate::ParseError;

/// How deeply parentheses, calls, unary operators and right-associative chains may nest.
pub(crate) const MAX_NESTING: usize = 256;
/// How deep the resulting tree may be (also long left-associative chains such as
/// `a+b+c+...`), so that whoever walks the tree recursively stays within a small stack.
pub(crate) const MAX_TREE_DEPTH: usize = 256;

/// Inputs whose token count bounds their nesting at or below this are parsed on the
/// caller's stack; others on a dedicated thread with [`DEEP_STACK`] bytes of stack, so that
/// refusing 100k parentheses never depends on the caller's stack size (unoptimised builds
/// use several KiB per level).
const INLINE_NESTING_BOUND: usize = 64;
const DEEP_STACK: usize = 256 << 20;

const TOO_DEEP: &str = "query too deeply nested";

type R<T> = Result<T, ParseError>;

/// An expression being built: the node, its type, where it starts and how deep it is.
struct Node {
    e: Expr,
    ty: ValueType,
    start: usize,
    depth: usize,
}

/// A duration expression being built, with its depth.
struct Dur {
    d: DurationExpr,
    depth: usize,
}

pub(crate) struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    strings: Vec<String>,
    pos: usize,
    nesting: usize,
}

const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;
const PREC_CMP: u8 = 3;
const PREC_ADD: u8 = 4;
const PREC_MUL: u8 = 5;
const PREC_POW: u8 = 6;

/// Words that are binary-operator modifiers and never metric names (as in Prometheus).
const RESERVED: &[&str] = &["bool", "on", "ignoring", "group_left", "group_right"];

pub(crate) fn aggregate_op(word: &str) -> Option<AggregateOp> {
    AggregateOp::ALL
        .into_iter()
        .find(|op| crate::printer::aggregate_op_str(*op).eq_ignore_ascii_case(word))
}

/// Whether `name` may be written bare as a metric name and read back as one.
pub(crate) fn is_plain_metric_name(name: &str) -> bool {
    let mut cs = name.chars();
    matches!(cs.next(), Some(c) if lexer::is_ident_start(c))
        && cs.all(lexer::is_ident_char)
        && lexer::special_number(name).is_none()
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Whether `name` may be written bare as a label name.
pub(crate) fn is_plain_label_name(name: &str) -> bool {
    let mut cs = name.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_pooled(e: &Expr) -> bool {
    match e {
        Expr::Paren(inner) => is_pooled(inner),
        Expr::MatrixSelector(m) => m.seasons.as_ref().is_some_and(|s| !s.by_season),
        Expr::Subquery(s) => s.seasons.as_ref().is_some_and(|s| !s.by_season),
        _ => false,
    }
}

fn is_subquery(e: &Expr) -> bool {
    match e {
        Expr::Paren(inner) => is_subquery(inner),
        Expr::Subquery(_) => true,
        _ => false,
    }
}

fn op_name(op: BinaryOp) -> &'static str {
    crate::printer::binary_op_str(op)
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a str) -> R<Self> {
        let (toks, strings) =
            lexer::lex(src).map_err(|(off, msg)| ParseError::at(src, off, msg))?;
        Ok(Parser {
            src,
            toks,
            strings,
            pos: 0,
            nesting: 0,
        })
    }

    // ----- token helpers -------------------------------------------------------------------

    fn peek(&self) -> &Token {
        &self.toks[self.pos]
    }

    fn peek_at(&self, n: usize) -> &Token {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos];
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn text(&self, t: &Token) -> &'a str {
        &self.src[t.start..t.end]
    }

    /// Whether the token at `n` ahead is the identifier `word` (keywords ignore case).
    fn is_kw_at(&self, n: usize, word: &str) -> bool {
        let t = self.peek_at(n);
        t.tok == Tok::Ident && self.text(t).eq_ignore_ascii_case(word)
    }

    fn is_kw(&self, word: &str) -> bool {
        self.is_kw_at(0, word)
    }

    fn err<T>(&self, offset: usize, msg: impl Into<String>) -> R<T> {
        Err(ParseError::at(self.src, offset, msg.into()))
    }

    fn describe(&self, t: &Token) -> String {
        match &t.tok {
            Tok::Eof => "end of input".into(),
            Tok::Ident => format!("identifier {:?}", self.text(t)),
            Tok::Number(_) => format!("number {:?}", self.text(t)),
            Tok::Duration(_) => format!("duration {:?}", self.text(t)),
            Tok::Str(_) => format!("string {}", self.text(t)),
            _ => format!("{:?}", self.text(t)),
        }
    }

    fn unexpected<T>(&self, expected: &str) -> R<T> {
        let t = self.peek();
        self.err(
            t.start,
            format!("unexpected {}, expected {}", self.describe(t), expected),
        )
    }

    fn expect(&mut self, tok: Tok, expected: &str) -> R<Token> {
        if self.peek().tok == tok {
            Ok(self.bump())
        } else {
            self.unexpected(expected)
        }
    }

    fn enter(&mut self) -> R<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return self.err(self.peek().start, TOO_DEEP);
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    fn node(&self, e: Expr, ty: ValueType, start: usize, depth: usize) -> R<Node> {
        if depth > MAX_TREE_DEPTH {
            return self.err(start, TOO_DEEP);
        }
        Ok(Node {
            e,
            ty,
            start,
            depth,
        })
    }

    // ----- entry points --------------------------------------------------------------------

    /// An upper bound on how deeply this input can nest: every nesting level starts at one
    /// of these tokens.
    fn nesting_bound(&self) -> usize {
        self.toks
            .iter()
            .filter(|t| {
                !matches!(
                    t.tok,
                    Tok::Number(_)
                        | Tok::Duration(_)
                        | Tok::Str(_)
                        | Tok::RParen
                        | Tok::RBrace
                        | Tok::RBracket
                        | Tok::Comma
                        | Tok::Colon
                        | Tok::Assign
                        | Tok::ReMatch
                        | Tok::ReNoMatch
                        | Tok::Eof
                )
            })
            .count()
    }

    /// Parses the whole input as a query, on a big stack when it could nest deeply.
    pub(crate) fn parse_query_guarded(mut self) -> R<Expr> {
        if self.nesting_bound() <= INLINE_NESTING_BOUND {
            return self.parse_query();
        }
        let src = self.src;
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name("tsq-parse".into())
                .stack_size(DEEP_STACK)
                .spawn_scoped(s, move || self.parse_query());
            match handle {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err(ParseError::at(src, 0, "internal parser error".into()))
                }),
                Err(_) => Err(ParseError::at(src, 0, "query too complex".into())),
            }
        })
    }

    fn parse_query(&mut self) -> R<Expr> {
        if self.peek().tok == Tok::Eof {
            return self.err(self.peek().start, "no expression found in input");
        }
        let n = self.expr(0)?;
        if self.peek().tok != Tok::Eof {
            return self.unexpected("an operator or end of input");
        }
        if is_pooled(&n.e) {
            return self.err(n.start, pooled_msg(None));
        }
        Ok(n.e)
    }

    pub(crate) fn parse_duration_only(&mut self) -> R<i64> {
        let t = *self.peek();
        let v = match t.tok {
            Tok::Duration(ms) => ms,
            Tok::Number(n) if n.is_finite() && n * 1000.0 < 9.2e18 => (n * 1000.0).round() as i64,
            _ => return self.unexpected("a duration (such as 5m, 1h30m or 300)"),
        };
        self.bump();
        if self.peek().tok != Tok::Eof {
            return self.unexpected("end of input");
        }
        Ok(v)
    }

    pub(crate) fn parse_matchers_only(&mut self) -> R<Vec<Matcher>> {
        let t = *self.peek();
        let name = if t.tok == Tok::Ident && self.peek_at(1).tok != Tok::LParen {
            let text = self.text(&t);
            if !is_plain_metric_name(text) {
                return self.unexpected("a metric name or \"{\"");
            }
            self.bump();
            Some(text.to_string())
        } else if t.tok == Tok::LBrace {
            None
        } else {
            return self.unexpected("a metric name or \"{\"");
        };
        let n = self.vector_selector(name, t.start)?;
        if self.peek().tok != Tok::Eof {
            return self.unexpected("end of input");
        }
        match n.e {
            Expr::VectorSelector(vs) => Ok(vs.matchers),
            _ => unreachable!("vector_selector builds selectors"),
        }
    }

    // ----- expressions ---------------------------------------------------------------------

    fn peek_binop(&self) -> Option<(BinaryOp, u8, bool)> {
        use BinaryOp::*;
        let t = self.peek();
        Some(match &t.tok {
            Tok::Add => (Add, PREC_ADD, false),
            Tok::Sub => (Sub, PREC_ADD, false),
            Tok::Mul => (Mul, PREC_MUL, false),
            Tok::Div => (Div, PREC_MUL, false),
            Tok::Mod => (Mod, PREC_MUL, false),
            Tok::Pow => (Pow, PREC_POW, true),
            Tok::EqlC => (Eq, PREC_CMP, false),
            Tok::Neq => (Ne, PREC_CMP, false),
            Tok::Gt => (Gt, PREC_CMP, false),
            Tok::Lt => (Lt, PREC_CMP, false),
            Tok::Ge => (Ge, PREC_CMP, false),
            Tok::Le => (Le, PREC_CMP, false),
            Tok::TrimUpper => (TrimUpper, PREC_CMP, false),
            Tok::TrimLower => (TrimLower, PREC_CMP, false),
            Tok::Ident => {
                let w = self.text(t);
                if w.eq_ignore_ascii_case("and") {
                    (And, PREC_AND, false)
                } else if w.eq_ignore_ascii_case("unless") {
                    (Unless, PREC_AND, false)
                } else if w.eq_ignore_ascii_case("or") {
                    (Or, PREC_OR, false)
                } else if w.eq_ignore_ascii_case("atan2") {
                    (Atan2, PREC_MUL, false)
                } else {
                    return None;
                }
            }
            _ => return None,
        })
    }

    fn expr(&mut self, min_prec: u8) -> R<Node> {
        self.enter()?;
        let mut lhs = self.unary()?;
        while let Some((op, prec, right)) = self.peek_binop() {
            if prec < min_prec {
                break;
            }
            let op_tok = self.bump();
            let (return_bool, matching, fill) = self.bin_modifiers()?;
            let rhs = self.expr(if right { prec } else { prec + 1 })?;
            lhs = self.binary(lhs, op, op_tok.start, return_bool, matching, fill, rhs)?;
        }
        self.leave();
        Ok(lhs)
    }

    fn unary(&mut self) -> R<Node> {
        let t = *self.peek();
        let op = match t.tok {
            Tok::Sub => UnaryOp::Neg,
            Tok::Add => UnaryOp::Pos,
            _ => {
                let p = self.primary()?;
                return self.postfix(p);
            }
        };
        self.bump();
        // Unary minus binds like `*`: only `^` (and postfix modifiers) bind tighter.
        let operand = self.expr(PREC_POW)?;
        if !matches!(operand.ty, ValueType::Scalar | ValueType::InstantVector) {
            return self.err(
                t.start,
                format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {:?}",
                    operand.ty.name()
                ),
            );
        }
        let ty = operand.ty;
        self.node(
            Expr::Unary(op, Box::new(operand.e)),
            ty,
            t.start,
            operand.depth + 1,
        )
    }

    fn bin_modifiers(&mut self) -> R<(bool, Option<VectorMatching>, Option<Fill>)> {
        let mut return_bool = false;
        if self.is_kw("bool") {
            self.bump();
            return_bool = true;
        }
        let mut matching = None;
        if self.is_kw("on") || self.is_kw("ignoring") {
            let on = self.is_kw("on");
            self.bump();
            let labels = self.label_list()?;
            let mut group = None;
            if self.is_kw("group_left") || self.is_kw("group_right") {
                let left = self.is_kw("group_left");
                self.bump();
                let labels = if self.peek().tok == Tok::LParen {
                    self.label_list()?
                } else {
                    Vec::new()
                };
                group = Some(if left {
                    Group::Left(labels)
                } else {
                    Group::Right(labels)
                });
            }
            matching = Some(VectorMatching { on, labels, group });
        } else if self.is_kw("group_left") || self.is_kw("group_right") {
            return self.err(
                self.peek().start,
                "group_left/group_right need a preceding on(...) or ignoring(...)",
            );
        }
        let mut fill: Option<Fill> = None;
        let mut seen_plain = false;
        loop {
            let which = ["fill", "fill_left", "fill_right"]
                .into_iter()
                .find(|w| self.is_kw(w) && self.peek_at(1).tok == Tok::LParen);
            let Some(which) = which else { break };
            let at = self.bump().start;
            self.bump();
            let v = self.signed_number("a number")?;
            self.expect(Tok::RParen, "\")\"")?;
            let f = fill.get_or_insert(Fill {
                left: None,
                right: None,
            });
            let dup = match which {
                "fill" => {
                    let dup = f.left.is_some() || f.right.is_some();
                    f.left = Some(v);
                    f.right = Some(v);
                    seen_plain = true;
                    dup
                }
                "fill_left" => {
                    let dup = f.left.is_some();
                    f.left = Some(v);
                    dup
                }
                _ => {
                    let dup = f.right.is_some();
                    f.right = Some(v);
                    dup
                }
            };
            if dup || (seen_plain && which != "fill") {
                return self.err(
                    at,
                    format!("{which} may not be combined with another fill for the same side"),
                );
            }
        }
        Ok((return_bool, matching, fill))
    }

    fn signed_number(&mut self, what: &str) -> R<f64> {
        let neg = match self.peek().tok {
            Tok::Sub => {
                self.bump();
                true
            }
            Tok::Add => {
                self.bump();
                false
            }
            _ => false,
        };
        let t = *self.peek();
        let v = match t.tok {
            Tok::Number(v) => v,
            Tok::Duration(ms) => ms as f64 / 1000.0,
            Tok::Ident => match lexer::special_number(self.text(&t)) {
                Some(v) => v,
                None => return self.unexpected(what),
            },
            _ => return self.unexpected(what),
        };
        self.bump();
        Ok(if neg { -v } else { v })
    }

    #[allow(clippy::too_many_arguments)]
    fn binary(
        &self,
        lhs: Node,
        op: BinaryOp,
        at: usize,
        return_bool: bool,
        matching: Option<VectorMatching>,
        fill: Option<Fill>,
        rhs: Node,
    ) -> R<Node> {
        use BinaryOp::*;
        use ValueType::*;
        let name = op_name(op);
        let is_cmp = matches!(op, Eq | Ne | Gt | Lt | Ge | Le);
        let is_set = matches!(op, And | Or | Unless);
        let (lt, rt) = (lhs.ty, rhs.ty);
        if return_bool && !is_cmp {
            return self.err(at, "bool modifier can only be used on comparison operators");
        }
        let ty = if lt == Episodes || rt == Episodes {
            if !is_set {
                return self.err(
                    at,
                    format!("operator {name:?} not allowed on episodes (only and, or, unless)"),
                );
            }
            if lt != rt {
                return self.err(
                    at,
                    format!(
                        "set operator {name:?} between episodes needs episodes on both sides, got {} and {}",
                        lt.name(),
                        rt.name()
                    ),
                );
            }
            if matching.as_ref().is_some_and(|m| m.group.is_some()) {
                return self.err(at, format!("no grouping allowed for {name:?} operation"));
            }
            if fill.is_some() {
                return self.err(
                    at,
                    format!("fill modifiers not allowed for set operator {name:?}"),
                );
            }
            Episodes
        } else {
            for t in [lt, rt] {
                if !matches!(t, Scalar | InstantVector) {
                    return self.err(
                        at,
                        format!(
                            "binary expression must contain only scalar and instant vector types, got {}",
                            t.name()
                        ),
                    );
                }
            }
            if is_set && (lt == Scalar || rt == Scalar) {
                return self.err(
                    at,
                    format!("set operator {name:?} not allowed in binary scalar expression"),
                );
            }
            if is_cmp && lt == Scalar && rt == Scalar && !return_bool {
                return self.err(at, "comparisons between scalars must use BOOL modifier");
            }
            if let Some(m) = &matching {
                if lt != InstantVector || rt != InstantVector {
                    return self.err(at, "vector matching only allowed between instant vectors");
                }
                if let Some(g) = &m.group {
                    if is_set {
                        return self.err(at, format!("no grouping allowed for {name:?} operation"));
                    }
                    let gl = match g {
                        Group::Left(l) | Group::Right(l) => l,
                    };
                    if m.on {
                        if let Some(l) = gl.iter().find(|l| m.labels.contains(l)) {
                            return self.err(
                                at,
                                format!(
                                    "label {l:?} must not occur in ON and GROUP clause at once"
                                ),
                            );
                        }
                    }
                }
            }
            if fill.is_some() {
                if is_set {
                    return self.err(
                        at,
                        format!("fill modifiers not allowed for set operator {name:?}"),
                    );
                }
                if lt != InstantVector || rt != InstantVector {
                    return self.err(at, "fill modifiers only allowed between instant vectors");
                }
            }
            if lt == Scalar && rt == Scalar {
                Scalar
            } else {
                InstantVector
            }
        };
        let depth = lhs.depth.max(rhs.depth) + 1;
        let e = Expr::Binary(BinaryExpr {
            op,
            lhs: Box::new(lhs.e),
            rhs: Box::new(rhs.e),
            return_bool,
            matching,
            fill,
        });
        self.node(e, ty, lhs.start, depth)
    }

    // ----- primaries -----------------------------------------------------------------------

    fn primary(&mut self) -> R<Node> {
        let t = *self.peek();
        match &t.tok {
            Tok::Number(v) => {
                self.bump();
                self.node(Expr::Number(*v), ValueType::Scalar, t.start, 1)
            }
            Tok::Duration(ms) => {
                self.bump();
                self.node(
                    Expr::Number(*ms as f64 / 1000.0),
                    ValueType::Scalar,
                    t.start,
                    1,
                )
            }
            Tok::Str(s) => {
                let s = self.strings[*s as usize].clone();
                self.bump();
                self.node(Expr::String(s), ValueType::String, t.start, 1)
            }
            Tok::LParen => {
                self.bump();
                let inner = self.expr(0)?;
                self.expect(Tok::RParen, "\")\"")?;
                let ty = inner.ty;
                self.node(Expr::Paren(Box::new(inner.e)), ty, t.start, inner.depth + 1)
            }
            Tok::LBrace => self.vector_selector(None, t.start),
            Tok::Ident => {
                let text = self.text(&t);
                if let Some(v) = lexer::special_number(text) {
                    self.bump();
                    return self.node(Expr::Number(v), ValueType::Scalar, t.start, 1);
                }
                let next = &self.peek_at(1).tok;
                if let Some(op) = aggregate_op(text) {
                    if *next == Tok::LParen || self.is_kw_at(1, "by") || self.is_kw_at(1, "without")
                    {
                        return self.aggregate(op);
                    }
                }
                if *next == Tok::LParen {
                    return match text {
                        "pattern" => self.pattern(),
                        "sequence" => self.sequence(),
                        _ => self.call(),
                    };
                }
                if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(text)) {
                    return self.unexpected("an expression");
                }
                self.bump();
                self.vector_selector(Some(text.to_string()), t.start)
            }
            _ => self.unexpected("an expression"),
        }
    }

    fn label_name(&mut self) -> R<String> {
        let t = *self.peek();
        match &t.tok {
            Tok::Ident if is_plain_label_name(self.text(&t)) => {
                self.bump();
                Ok(self.text(&t).to_string())
            }
            Tok::Str(s) => {
                let s = self.strings[*s as usize].clone();
                self.bump();
                Ok(s)
            }
            _ => self.unexpected("a label name"),
        }
    }

    /// `( [label {, label} [,]] )`.
    fn label_list(&mut self) -> R<Vec<String>> {
        self.expect(Tok::LParen, "\"(\"")?;
        let mut out = Vec::new();
        loop {
            if self.peek().tok == Tok::RParen {
                self.bump();
                return Ok(out);
            }
            out.push(self.label_name()?);
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {}
                _ => return self.unexpected("\",\" or \")\""),
            }
        }
    }

    fn vector_selector(&mut self, name: Option<String>, start: usize) -> R<Node> {
        let mut matchers = Vec::new();
        if let Some(n) = &name {
            matchers.push(Matcher {
                name: "__name__".into(),
                op: MatchOp::Equal,
                value: n.clone(),
            });
        }
        let mut bare_name_seen = false;
        if self.peek().tok == Tok::LBrace {
            self.bump();
            loop {
                let t = *self.peek();
                let label = match &t.tok {
                    Tok::RBrace => {
                        self.bump();
                        break;
                    }
                    Tok::Str(s)
                        if !matches!(
                            self.peek_at(1).tok,
                            Tok::Assign | Tok::Neq | Tok::ReMatch | Tok::ReNoMatch
                        ) =>
                    {
                        // A quoted metric name: `{"my.metric"}`.
                        if name.is_some() || matchers.iter().any(|m| m.name == "__name__") {
                            return self.err(t.start, "metric name must not be set twice");
                        }
                        bare_name_seen = true;
                        matchers.push(Matcher {
                            name: "__name__".into(),
                            op: MatchOp::Equal,
                            value: self.strings[*s as usize].clone(),
                        });
                        self.bump();
                        None
                    }
                    Tok::Ident if is_plain_label_name(self.text(&t)) => {
                        self.bump();
                        Some(self.text(&t).to_string())
                    }
                    Tok::Str(s) => {
                        let s = self.strings[*s as usize].clone();
                        self.bump();
                        Some(s)
                    }
                    _ => return self.unexpected("a label matcher"),
                };
                if let Some(label) = label {
                    let op = match self.peek().tok {
                        Tok::Assign => MatchOp::Equal,
                        Tok::Neq => MatchOp::NotEqual,
                        Tok::ReMatch => MatchOp::Regex,
                        Tok::ReNoMatch => MatchOp::NotRegex,
                        _ => return self.unexpected("a label matching operator (=, !=, =~, !~)"),
                    };
                    self.bump();
                    let vt = *self.peek();
                    let Tok::Str(value) = &vt.tok else {
                        return self.unexpected("a string");
                    };
                    let value = self.strings[*value as usize].clone();
                    self.bump();
                    if label == "__name__" && (name.is_some() || bare_name_seen) {
                        return self.err(t.start, "metric name must not be set twice");
                    }
                    if matches!(op, MatchOp::Regex | MatchOp::NotRegex) {
                        if let Err(e) = check_regex(&value) {
                            return self.err(vt.start, e);
                        }
                    }
                    matchers.push(Matcher {
                        name: label,
                        op,
                        value,
                    });
                }
                match self.peek().tok {
                    Tok::Comma => {
                        self.bump();
                    }
                    Tok::RBrace => {}
                    _ => return self.unexpected("\",\" or \"}\""),
                }
            }
        }
        if !matchers.iter().any(|m| !matches_empty(m)) {
            return self.err(
                start,
                "vector selector must contain at least one non-empty matcher",
            );
        }
        let vs = VectorSelector {
            name,
            matchers,
            offset: None,
            at: None,
            modifier: None,
        };
        self.node(Expr::VectorSelector(vs), ValueType::InstantVector, start, 1)
    }

    /// Arguments after `(` up to and including `)`.
    fn call_args(&mut self) -> R<Vec<Node>> {
        self.expect(Tok::LParen, "\"(\"")?;
        let mut args = Vec::new();
        if self.peek().tok == Tok::RParen {
            self.bump();
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            match self.peek().tok {
                Tok::Comma => {
                    let c = self.bump();
                    if self.peek().tok == Tok::RParen {
                        return self
                            .err(c.start, "trailing commas not allowed in function call args");
                    }
                }
                Tok::RParen => {
                    self.bump();
                    return Ok(args);
                }
                _ => return self.unexpected("\",\" or \")\""),
            }
        }
    }

    fn grouping_kw(&mut self) -> R<Option<Grouping>> {
        if self.is_kw("by") || self.is_kw("without") {
            let without = self.is_kw("without");
            self.bump();
            let labels = self.label_list()?;
            Ok(Some(Grouping { without, labels }))
        } else {
            Ok(None)
        }
    }

    fn aggregate(&mut self, op: AggregateOp) -> R<Node> {
        use AggregateOp::*;
        let t = self.bump();
        let name = crate::printer::aggregate_op_str(op);
        let mut grouping = self.grouping_kw()?;
        if self.peek().tok != Tok::LParen {
            return self.unexpected("\"(\"");
        }
        let mut args = self.call_args()?;
        if grouping.is_none() {
            grouping = self.grouping_kw()?;
        }
        let has_param = matches!(
            op,
            CountValues | Bottomk | Topk | Quantile | Limitk | LimitRatio | OutliersMad
        );
        let want = if has_param { 2 } else { 1 };
        if args.len() != want {
            return self.err(
                t.start,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {want}, got {}",
                    args.len()
                ),
            );
        }
        let expr = args.pop().expect("checked count");
        if expr.ty != ValueType::InstantVector {
            return self.err(
                expr.start,
                format!(
                    "expected type instant vector in aggregation expression, got {}",
                    expr.ty.name()
                ),
            );
        }
        let mut depth = expr.depth;
        let param = match args.pop() {
            Some(p) => {
                let want = if op == CountValues {
                    ValueType::String
                } else {
                    ValueType::Scalar
                };
                if p.ty != want {
                    return self.err(
                        p.start,
                        format!(
                            "expected type {} in aggregation parameter of {name:?}, got {}",
                            want.name(),
                            p.ty.name()
                        ),
                    );
                }
                depth = depth.max(p.depth);
                Some(Box::new(p.e))
            }
            None => None,
        };
        let e = Expr::Aggregate(AggregateExpr {
            op,
            expr: Box::new(expr.e),
            param,
            grouping,
        });
        self.node(e, ValueType::InstantVector, t.start, depth + 1)
    }

    fn call(&mut self) -> R<Node> {
        let t = self.bump();
        let name = self.text(&t);
        let Some(sig) = lookup_function(name) else {
            return self.err(t.start, format!("unknown function with name {name:?}"));
        };
        let close_at = |p: &Self| p.toks[p.pos.saturating_sub(1)].start;
        let args = self.call_args()?;
        let args = self.check_call(sig, args, close_at(self))?;
        let depth = args.iter().map(|a| a.depth).max().unwrap_or(0) + 1;
        let args: Vec<Expr> = args.into_iter().map(|a| a.e).collect();
        let matching = match sig.trailing {
            Trailing::None => None,
            Trailing::Matching => {
                if (self.is_kw("on") || self.is_kw("ignoring"))
                    && self.peek_at(1).tok == Tok::LParen
                {
                    let on = self.is_kw("on");
                    self.bump();
                    Some((on, self.label_list()?))
                } else {
                    None
                }
            }
            Trailing::By => {
                if self.is_kw("by") && self.peek_at(1).tok == Tok::LParen {
                    self.bump();
                    Some((true, self.label_list()?))
                } else {
                    None
                }
            }
        };
        let e = Expr::Call(Call {
            func: sig.name.to_string(),
            args,
            matching,
        });
        self.node(e, sig.ret, t.start, depth)
    }

    fn check_call(&self, sig: &FunctionSig, args: Vec<Node>, close_at: usize) -> R<Vec<Node>> {
        let name = sig.name;
        let n = args.len();
        let max = sig.max_args();
        let count_err = |p: &Self| {
            let msg = match max {
                Some(m) if m == sig.required => {
                    format!("expected {m} argument(s) in call to {name:?}, got {n}")
                }
                Some(m) if n > m => {
                    format!("expected at most {m} argument(s) in call to {name:?}, got {n}")
                }
                _ => format!(
                    "expected at least {} argument(s) in call to {name:?}, got {n}",
                    sig.required
                ),
            };
            p.err(close_at, msg)
        };
        if n < sig.required || max.is_some_and(|m| n > m) {
            return count_err(self);
        }
        let mut j = 0;
        for (i, a) in args.iter().enumerate() {
            let pj = loop {
                if j >= sig.args.len() && !sig.variadic {
                    return self.err(a.start, format!("too many arguments in call to {name:?}"));
                }
                let pj = j.min(sig.args.len() - 1);
                let want = sig.args[pj];
                if a.ty == want {
                    break pj;
                }
                if sig.skippable.contains(&pj) && pj + 1 < sig.args.len() {
                    j += 1;
                    continue;
                }
                return self.err(
                    a.start,
                    format!(
                        "expected type {} in call to function {name:?}, got {}",
                        want.name(),
                        a.ty.name()
                    ),
                );
            };
            if let Expr::MatrixSelector(MatrixSelector {
                modifier: Some(m), ..
            }) = a.e.strip_parens()
            {
                let (word, allowed): (&str, &[&str]) = match m {
                    RangeModifier::Anchored => (
                        "anchored",
                        &["changes", "delta", "increase", "rate", "resets"],
                    ),
                    RangeModifier::Smoothed => ("smoothed", &["delta", "increase", "rate"]),
                };
                if !allowed.contains(&name) {
                    return self.err(
                        a.start,
                        format!(
                            "{word} modifier can only be used with: {} - not with {name}",
                            allowed.join(", ")
                        ),
                    );
                }
            }
            if is_pooled(&a.e) && !sig.pooled_seasons.contains(&pj) {
                return self.err(a.start, pooled_msg(Some(name)));
            }
            if sig.subquery_arg && pj == 0 && !is_subquery(&a.e) {
                return self.err(
                    a.start,
                    format!("expected a subquery (expr[range:step]) as argument 1 of {name:?}"),
                );
            }
            if name == "info" && i == 1 && !matches!(a.e, Expr::VectorSelector(_)) {
                return self.err(
                    a.start,
                    "expected label selectors as the second argument to \"info\" function",
                );
            }
            j += 1;
        }
        Ok(args)
    }

    // ----- postfix: ranges, subqueries, offset, @ ------------------------------------------

    fn postfix(&mut self, mut n: Node) -> R<Node> {
        loop {
            if self.peek().tok == Tok::LBracket {
                n = self.range_or_subquery(n)?;
            } else if self.is_kw("offset") {
                n = self.offset(n)?;
            } else if self.peek().tok == Tok::At {
                n = self.at(n)?;
            } else if self.is_kw("anchored") || self.is_kw("smoothed") {
                n = self.extended_modifier(n)?;
            } else {
                return Ok(n);
            }
        }
    }

    /// `anchored` / `smoothed` after an expression (Prometheus 3.x `setAnchored`/`setSmoothed`):
    /// allowed after an instant or range vector selector, in any order with `offset`/`@`;
    /// repeating the same one is accepted, combining both is not.
    fn extended_modifier(&mut self, mut n: Node) -> R<Node> {
        let kw = self.bump();
        let (m, word) = if self.text(&kw).eq_ignore_ascii_case("anchored") {
            (RangeModifier::Anchored, "anchored")
        } else {
            (RangeModifier::Smoothed, "smoothed")
        };
        let slot = match &mut n.e {
            Expr::VectorSelector(vs) => &mut vs.modifier,
            Expr::MatrixSelector(ms) => &mut ms.modifier,
            Expr::Subquery(_) => {
                return self.err(
                    kw.start,
                    format!("{word} modifier is not supported for subqueries"),
                )
            }
            _ => return self.err(kw.start, format!("{word} modifier not implemented")),
        };
        if slot.is_some_and(|o| o != m) {
            return self.err(
                kw.start,
                "anchored and smoothed modifiers cannot be used together",
            );
        }
        *slot = Some(m);
        Ok(n)
    }

    fn range_or_subquery(&mut self, n: Node) -> R<Node> {
        let lb = self.bump();
        let range = self.dur_expr(0)?;
        match self.peek().tok {
            Tok::Colon => {
                self.bump();
                let step = if self.peek().tok == Tok::RBracket {
                    None
                } else {
                    Some(self.dur_expr(0)?)
                };
                self.expect(Tok::RBracket, "\"]\"")?;
                if n.ty != ValueType::InstantVector {
                    return self.err(
                        lb.start,
                        format!(
                            "subquery is only allowed on instant vector, got {} instead",
                            n.ty.name()
                        ),
                    );
                }
                let seasons = self.maybe_seasons()?;
                let depth = n
                    .depth
                    .max(range.depth)
                    .max(step.as_ref().map_or(0, |s| s.depth))
                    + 1;
                let sq = Subquery {
                    expr: Box::new(n.e),
                    range: range.d,
                    step: step.map(|s| s.d),
                    seasons,
                    offset: None,
                    at: None,
                };
                self.node(Expr::Subquery(sq), ValueType::RangeVector, n.start, depth)
            }
            Tok::RBracket => {
                self.bump();
                let mut selector = match n.e {
                    Expr::VectorSelector(vs) => vs,
                    _ => return self.err(lb.start, "ranges only allowed for vector selectors"),
                };
                if selector.offset.is_some() {
                    return self.err(lb.start, "no offset modifiers allowed before range");
                }
                if selector.at.is_some() {
                    return self.err(lb.start, "no @ modifiers allowed before range");
                }
                // As in Prometheus, a modifier written before the range (`x anchored[5m]`)
                // is the range selector's.
                let modifier = selector.modifier.take();
                let depth = range.depth + 2;
                let ms = MatrixSelector {
                    selector,
                    range: range.d,
                    modifier,
                    seasons: None,
                };
                let mut node = self.node(
                    Expr::MatrixSelector(ms),
                    ValueType::RangeVector,
                    n.start,
                    depth,
                )?;
                if self.is_kw("anchored") || self.is_kw("smoothed") {
                    node = self.extended_modifier(node)?;
                }
                let seasons = self.maybe_seasons()?;
                if let Expr::MatrixSelector(ms) = &mut node.e {
                    ms.seasons = seasons;
                }
                Ok(node)
            }
            _ => self.unexpected("\":\" or \"]\""),
        }
    }

    fn maybe_seasons(&mut self) -> R<Option<Seasons>> {
        if !(self.is_kw("seasons") && self.peek_at(1).tok == Tok::LParen) {
            return Ok(None);
        }
        let kw = self.bump();
        self.bump();
        let period = self.dur_expr(0)?;
        self.expect(Tok::Comma, "\",\"")?;
        let ct = *self.peek();
        let count = match ct.tok {
            Tok::Number(v) if v >= 1.0 && v <= f64::from(u32::MAX) && v.fract() == 0.0 => v as u32,
            _ => return self.unexpected("a positive whole number of seasons"),
        };
        self.bump();
        let mut s = Seasons {
            period: period.d,
            count,
            centered: false,
            by_season: false,
            tz: None,
        };
        while self.peek().tok == Tok::Comma {
            self.bump();
            let t = *self.peek();
            let Tok::Str(opt) = t.tok else {
                return self.unexpected("\"centered\", \"by_season\" or a time zone string");
            };
            let opt = self.strings[opt as usize].clone();
            let dup = match opt.as_str() {
                "centered" => std::mem::replace(&mut s.centered, true),
                "by_season" => std::mem::replace(&mut s.by_season, true),
                tz => {
                    if tz.is_empty() || tz.contains(char::is_whitespace) {
                        return self.err(t.start, format!("invalid time zone {tz:?}"));
                    }
                    if s.tz.replace(tz.to_string()).is_some() {
                        return self.err(t.start, "seasons: time zone given twice");
                    }
                    false
                }
            };
            if dup {
                return self.err(t.start, format!("seasons option {opt:?} given twice"));
            }
            self.bump();
        }
        self.expect(Tok::RParen, "\",\" or \")\"")?;
        if s.tz.is_some() {
            if let DurationExpr::Literal(ms) = s.period {
                if ms % 86_400_000 != 0 {
                    return self.err(
                        kw.start,
                        "seasons with a time zone need a period of whole days",
                    );
                }
            }
        }
        Ok(Some(s))
    }

    fn offset(&mut self, mut n: Node) -> R<Node> {
        let kw = self.bump();
        let d = self.dur_signed_atom()?;
        let slot = match &mut n.e {
            Expr::VectorSelector(vs) => &mut vs.offset,
            Expr::MatrixSelector(ms) => &mut ms.selector.offset,
            Expr::Subquery(sq) => &mut sq.offset,
            _ => {
                return self.err(
                    kw.start,
                    "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                )
            }
        };
        if slot.is_some() {
            return self.err(kw.start, "offset may not be set multiple times");
        }
        *slot = Some(d.d);
        n.depth = n.depth.max(d.depth + 2);
        if n.depth > MAX_TREE_DEPTH {
            return self.err(kw.start, TOO_DEEP);
        }
        Ok(n)
    }

    fn at(&mut self, mut n: Node) -> R<Node> {
        let at_tok = self.bump();
        let value =
            if (self.is_kw("start") || self.is_kw("end")) && self.peek_at(1).tok == Tok::LParen {
                let start = self.is_kw("start");
                self.bump();
                self.bump();
                self.expect(Tok::RParen, "\")\"")?;
                if start {
                    AtModifier::Start
                } else {
                    AtModifier::End
                }
            } else {
                let vt = self.peek().start;
                let v = self.signed_number("a timestamp, start() or end()")?;
                if !v.is_finite() || v.abs() > 9.2e15 {
                    return self.err(vt, "timestamp out of bounds for @ modifier");
                }
                AtModifier::Time(v)
            };
        let slot = match &mut n.e {
            Expr::VectorSelector(vs) => &mut vs.at,
            Expr::MatrixSelector(ms) => &mut ms.selector.at,
            Expr::Subquery(sq) => &mut sq.at,
            _ => {
                return self.err(
                    at_tok.start,
                    "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                )
            }
        };
        if slot.is_some() {
            return self.err(at_tok.start, "@ <timestamp> may not be set multiple times");
        }
        *slot = Some(value);
        Ok(n)
    }

    // ----- durations -----------------------------------------------------------------------

    fn dur_node(&self, d: DurationExpr, depth: usize, at: usize) -> R<Dur> {
        if depth > MAX_TREE_DEPTH {
            return self.err(at, TOO_DEEP);
        }
        Ok(Dur { d, depth })
    }

    fn dur_expr(&mut self, min_prec: u8) -> R<Dur> {
        self.enter()?;
        let start = self.peek().start;
        let mut lhs = self.dur_unary()?;
        loop {
            let (op, prec, right) = match self.peek().tok {
                Tok::Add => (DurationOp::Add, 1, false),
                Tok::Sub => (DurationOp::Sub, 1, false),
                Tok::Mul => (DurationOp::Mul, 2, false),
                Tok::Div => (DurationOp::Div, 2, false),
                Tok::Mod => (DurationOp::Mod, 2, false),
                Tok::Pow => (DurationOp::Pow, 3, true),
                _ => break,
            };
            if prec < min_prec {
                break;
            }
            self.bump();
            let rhs = self.dur_expr(if right { prec } else { prec + 1 })?;
            let depth = lhs.depth.max(rhs.depth) + 1;
            lhs = self.dur_node(
                DurationExpr::Binary(op, Box::new(lhs.d), Box::new(rhs.d)),
                depth,
                start,
            )?;
        }
        self.leave();
        Ok(lhs)
    }

    fn dur_unary(&mut self) -> R<Dur> {
        if self.peek().tok == Tok::Sub {
            let t = self.bump();
            let inner = self.dur_expr(3)?;
            return self.dur_node(
                DurationExpr::Neg(Box::new(inner.d)),
                inner.depth + 1,
                t.start,
            );
        }
        self.dur_atom()
    }

    /// `offset` and `within` take one atom, optionally negated: `offset -5m`,
    /// `offset (1h + 5m)`.
    fn dur_signed_atom(&mut self) -> R<Dur> {
        if self.peek().tok == Tok::Sub {
            let t = self.bump();
            let inner = self.dur_atom()?;
            return self.dur_node(
                DurationExpr::Neg(Box::new(inner.d)),
                inner.depth + 1,
                t.start,
            );
        }
        self.dur_atom()
    }

    fn dur_atom(&mut self) -> R<Dur> {
        let t = *self.peek();
        match t.tok {
            Tok::Duration(ms) => {
                self.bump();
                Ok(Dur {
                    d: DurationExpr::Literal(ms),
                    depth: 1,
                })
            }
            Tok::Number(v) => {
                self.bump();
                Ok(Dur {
                    d: DurationExpr::Number(v),
                    depth: 1,
                })
            }
            Tok::LParen => {
                self.bump();
                let inner = self.dur_expr(0)?;
                self.expect(Tok::RParen, "\")\"")?;
                self.dur_node(
                    DurationExpr::Paren(Box::new(inner.d)),
                    inner.depth + 1,
                    t.start,
                )
            }
            Tok::Ident if self.peek_at(1).tok == Tok::LParen => {
                // Prometheus reads these names without regard to case (`STEP()`).
                let name = self.text(&t).to_ascii_lowercase();
                let name = name.as_str();
                match name {
                    "step" | "range" => {
                        self.bump();
                        self.bump();
                        self.expect(Tok::RParen, "\")\"")?;
                        let d = if name == "step" {
                            DurationExpr::Step
                        } else {
                            DurationExpr::Range
                        };
                        Ok(Dur { d, depth: 1 })
                    }
                    "min_of" | "max_of" => {
                        self.enter()?;
                        self.bump();
                        self.bump();
                        let a = self.dur_expr(0)?;
                        self.expect(Tok::Comma, "\",\"")?;
                        let b = self.dur_expr(0)?;
                        self.expect(Tok::RParen, "\")\"")?;
                        self.leave();
                        let (a, b, depth) =
                            (Box::new(a.d), Box::new(b.d), a.depth.max(b.depth) + 1);
                        let d = if name == "min_of" {
                            DurationExpr::MinOf(a, b)
                        } else {
                            DurationExpr::MaxOf(a, b)
                        };
                        self.dur_node(d, depth, t.start)
                    }
                    _ => self.unexpected("a duration"),
                }
            }
            _ => self.unexpected("a duration"),
        }
    }

    // ----- tsq patterns --------------------------------------------------------------------

    /// Pattern symbols are written `SYM: expr`; outside brackets the lexer reads `SYM:` (or
    /// even `SYM:expr`) as one identifier, so split it here.
    fn split_symbol_colon(&mut self) -> R<()> {
        let t = *self.peek();
        if t.tok != Tok::Ident {
            return Ok(());
        }
        let text = self.text(&t);
        let Some(k) = text.find(':') else {
            return Ok(());
        };
        let mut repl = vec![
            Token {
                tok: Tok::Ident,
                start: t.start,
                end: t.start + k,
            },
            Token {
                tok: Tok::Colon,
                start: t.start + k,
                end: t.start + k + 1,
            },
        ];
        let rest_start = t.start + k + 1;
        if rest_start < t.end {
            let (sub, _) = lexer::lex(&self.src[rest_start..t.end])
                .map_err(|(o, m)| ParseError::at(self.src, rest_start + o, m))?;
            // The rest of an identifier holds only identifier characters: no strings.
            repl.extend(sub.into_iter().filter(|x| x.tok != Tok::Eof).map(|mut x| {
                x.start += rest_start;
                x.end += rest_start;
                x
            }));
        }
        if k == 0 {
            return self.unexpected("a pattern symbol");
        }
        self.toks.splice(self.pos..self.pos + 1, repl);
        Ok(())
    }

    fn episode_clauses(&mut self) -> R<EpisodeClauses> {
        let mut c = EpisodeClauses {
            by: None,
            range: None,
            within: None,
            depth: 0,
        };
        if self.is_kw("by") && self.peek_at(1).tok == Tok::LParen {
            self.bump();
            c.by = Some(self.label_list()?);
        }
        if self.peek().tok == Tok::LBracket {
            self.bump();
            let range = self.dur_expr(0)?;
            self.expect(Tok::Colon, "\":\"")?;
            let step = if self.peek().tok == Tok::RBracket {
                None
            } else {
                Some(self.dur_expr(0)?)
            };
            self.expect(Tok::RBracket, "\"]\"")?;
            c.depth = c
                .depth
                .max(range.depth)
                .max(step.as_ref().map_or(0, |s| s.depth));
            c.range = Some((range.d, step.map(|s| s.d)));
        }
        if self.is_kw("within") {
            self.bump();
            let w = self.dur_signed_atom()?;
            c.depth = c.depth.max(w.depth);
            c.within = Some(w.d);
        }
        Ok(c)
    }

    fn pattern(&mut self) -> R<Node> {
        let kw = self.bump();
        self.bump();
        let pt = *self.peek();
        let Tok::Str(pat) = &pt.tok else {
            return self.unexpected("the pattern string");
        };
        let pat = self.strings[*pat as usize].clone();
        self.bump();
        let used = match pattern::validate(&pat) {
            Ok(u) => u,
            Err((idx, msg)) => {
                let raw = self.text(&pt);
                // Point into the literal when it has no escapes, else at its start.
                let off = if raw.len() == pat.len() + 2 {
                    pt.start + 1 + idx
                } else {
                    pt.start
                };
                return self.err(off, format!("invalid pattern: {msg}"));
            }
        };
        let mut symbols: Vec<(String, Expr)> = Vec::new();
        let mut depth = 0;
        loop {
            match self.peek().tok {
                Tok::RParen => {
                    self.bump();
                    break;
                }
                Tok::Comma => {
                    self.bump();
                }
                _ => return self.unexpected("\",\" or \")\""),
            }
            self.split_symbol_colon()?;
            let st = *self.peek();
            if st.tok != Tok::Ident || !pattern::is_symbol(self.text(&st)) {
                return self.unexpected("a pattern symbol");
            }
            let sym = self.text(&st).to_string();
            self.bump();
            self.expect(Tok::Colon, "\":\"")?;
            let e = self.expr(0)?;
            if e.ty != ValueType::InstantVector {
                return self.err(
                    e.start,
                    format!(
                        "expected type instant vector for pattern symbol {sym:?}, got {}",
                        e.ty.name()
                    ),
                );
            }
            if symbols.iter().any(|(s, _)| *s == sym) {
                return self.err(st.start, format!("pattern symbol {sym:?} defined twice"));
            }
            if !used.contains(&sym) {
                return self.err(
                    st.start,
                    format!("pattern symbol {sym:?} is defined but not used in the pattern"),
                );
            }
            depth = depth.max(e.depth);
            symbols.push((sym, e.e));
        }
        if let Some(u) = used.iter().find(|u| !symbols.iter().any(|(s, _)| s == *u)) {
            return self.err(
                pt.start,
                format!("pattern symbol {u:?} is used in the pattern but not defined"),
            );
        }
        let c = self.episode_clauses()?;
        let e = Expr::Pattern(PatternExpr {
            pattern: pat,
            symbols,
            by: c.by,
            range: c.range,
            within: c.within,
        });
        self.node(e, ValueType::Episodes, kw.start, depth.max(c.depth) + 1)
    }

    fn sequence(&mut self) -> R<Node> {
        let kw = self.bump();
        self.bump();
        let mut steps = Vec::new();
        let mut depth = 0;
        loop {
            let e = self.expr(0)?;
            if e.ty != ValueType::InstantVector {
                return self.err(
                    e.start,
                    format!(
                        "expected type instant vector in sequence step, got {}",
                        e.ty.name()
                    ),
                );
            }
            let dur = if self.is_kw("for") {
                self.bump();
                let d = self.dur_signed_atom()?;
                depth = depth.max(d.depth);
                Some(d.d)
            } else {
                None
            };
            depth = depth.max(e.depth);
            steps.push((e.e, dur));
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {
                    self.bump();
                    break;
                }
                _ => return self.unexpected("\"for\", \",\" or \")\""),
            }
        }
        let c = self.episode_clauses()?;
        if c.within.is_none() {
            return self.unexpected("\"within\" (sequence needs a maximum match length)");
        }
        let e = Expr::Sequence(SequenceExpr {
            steps,
            by: c.by,
            range: c.range,
            within: c.within,
        });
        self.node(e, ValueType::Episodes, kw.start, depth.max(c.depth) + 1)
    }
}

struct EpisodeClauses {
    by: Option<Vec<String>>,
    range: Option<(DurationExpr, Option<DurationExpr>)>,
    within: Option<DurationExpr>,
    depth: usize,
}

fn pooled_msg(func: Option<&str>) -> String {
    let place = match func {
        Some(f) => format!("in call to function {f:?}"),
        None => "here".to_string(),
    };
    format!(
        "pooled seasons range (without \"by_season\") not allowed {place}: only order-insensitive \
         functions accept it (avg, sum, min, max, count, quantile, stddev, stdvar, median, mad, iqr, \
         present _over_time, band_over_time, zscore's reference)"
    )
}

/// Whether a regular expression is a plain literal (no metacharacters at all).
fn is_literal_regex(re: &str) -> bool {
    !re.contains([
        '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
    ])
}

/// A fast path for the common dashboard regexes (`5..`, `web-.*`, `/a|/b`): only literal
/// characters, `.`, `|` and single `*`/`+` after something repeatable. Such a regex is always
/// valid; anything else (including what this cannot decide) goes to the full syntax check.
fn is_simple_valid_regex(re: &str) -> bool {
    let mut repeatable = false;
    for c in re.chars() {
        match c {
            '(' | ')' | '[' | ']' | '{' | '}' | '\\' | '?' | '^' | '$' => return false,
            '*' | '+' if !repeatable => return false,
            '*' | '+' | '|' => repeatable = false,
            _ => repeatable = true,
        }
    }
    true
}

/// Checks the syntax of a regular expression as Prometheus anchors it (`^(?s:re)$`). Only
/// the syntax tree is built (cheap); the executor compiles the expression.
fn check_regex(re: &str) -> Result<(), String> {
    if is_literal_regex(re) || is_simple_valid_regex(re) {
        return Ok(());
    }
    regex_syntax::ast::parse::Parser::new()
        .parse(&format!("^(?s:{re})$"))
        .map(|_| ())
        .map_err(|e| {
            let full = e.to_string();
            let last = full
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            format!(
                "invalid regular expression {re:?}: {}",
                last.trim_start_matches("error: ")
            )
        })
}

/// Whether a matcher matches the empty label value (an absent label).
fn matches_empty(m: &Matcher) -> bool {
    match m.op {
        MatchOp::Equal => m.value.is_empty(),
        MatchOp::NotEqual => !m.value.is_empty(),
        MatchOp::Regex | MatchOp::NotRegex => {
            let empty = if is_literal_regex(&m.value) {
                m.value.is_empty()
            } else {
                regex_syntax::Parser::new()
                    .parse(&format!("^(?s:{})$", m.value))
                    .map(|h| h.properties().minimum_len() == Some(0))
                    .unwrap_or(false)
            };
            empty == (m.op == MatchOp::Regex)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The regex fast path never accepts what the full syntax check rejects.
    #[test]
    fn simple_regex_fast_path_is_sound() {
        let alphabet = ['a', '.', '*', '+', '|', '-'];
        let mut words = vec![String::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for w in &words {
                for c in alphabet {
                    next.push(format!("{w}{c}"));
                }
            }
            for w in &next {
                if is_simple_valid_regex(w) {
                    let full = regex_syntax::Parser::new().parse(&format!("^(?s:{w})$"));
                    assert!(full.is_ok(), "{w:?}");
                }
            }
            words = next;
        }
    }
}
