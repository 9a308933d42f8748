//! The syntax tree of a tsq query: PromQL plus the baseline and pattern extensions.
//!
//! The tree carries no source positions: the parser type-checks while it builds, so every error
//! is reported with its position before a tree exists. This keeps `parse(print(ast)) == ast`
//! a plain structural equality.

/// The type of value an expression evaluates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// A single float without labels.
    Scalar,
    /// A string literal.
    String,
    /// A set of series, one sample each, at the evaluation time.
    InstantVector,
    /// A set of series, each with the samples of a window.
    RangeVector,
    /// A set of (labels, start, end, flags, measures): tsq's pattern extension.
    Episodes,
}

impl ValueType {
    /// The name Prometheus uses in error messages ("instant vector", "range vector", ...).
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::String => "string",
            ValueType::InstantVector => "instant vector",
            ValueType::RangeVector => "range vector",
            ValueType::Episodes => "episodes",
        }
    }
}

/// A query expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `1`, `0x1f`, `1e3`, `Inf`, `NaN`, or a duration used as a number (`5m` is 300).
    Number(f64),
    /// `"text"`, `'text'` or `` `raw` ``.
    String(String),
    /// `metric{label="value"} offset 5m @ 1700000000`.
    VectorSelector(VectorSelector),
    /// `metric{...}[5m]` with its optional modifiers.
    MatrixSelector(MatrixSelector),
    /// `expr[1h:1m]` with its optional modifiers.
    Subquery(Subquery),
    /// `( expr )`. Kept so that the printer reproduces the user's grouping.
    Paren(Box<Expr>),
    /// `-expr` or `+expr`.
    Unary(UnaryOp, Box<Expr>),
    /// `lhs op [bool] [on|ignoring(...)] [group_left|group_right(...)] [fill...] rhs`.
    Binary(BinaryExpr),
    /// `sum by (job) (expr)`, `topk(3, expr)`, ...
    Aggregate(AggregateExpr),
    /// `rate(x[5m])` and every other function, including the tsq extensions that take only
    /// ordinary arguments (baselines, episodes helpers, alert replay).
    Call(Call),
    /// `pattern("A B+", A: expr, B: expr) by (l) [1d:1m] within 2h`.
    Pattern(PatternExpr),
    /// `sequence(c1 for 5m, c2) by (l) [1d:1m] within 2h`: sugar for a pattern.
    Sequence(SequenceExpr),
}

/// Label matcher operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored)
    Regex,
    /// `!~` (fully anchored)
    NotRegex,
}

/// One `name op "value"` matcher.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Matcher {
    /// The label name (`__name__` for the metric name).
    pub name: String,
    /// The operator.
    pub op: MatchOp,
    /// The value or the regular expression.
    pub value: String,
}

/// `@` modifier.
#[derive(Debug, Clone, PartialEq)]
pub enum AtModifier {
    /// `@ <unix seconds>`.
    Time(f64),
    /// `@ start()`.
    Start,
    /// `@ end()`.
    End,
}

/// A duration: a literal or a Prometheus 3.x duration expression. Literals are kept in
/// milliseconds; numbers used as durations are seconds.
#[derive(Debug, Clone, PartialEq)]
pub enum DurationExpr {
    /// A duration literal such as `5m` or `1h30m`, in milliseconds.
    Literal(i64),
    /// A plain number used as a duration, in seconds (`[300]`).
    Number(f64),
    /// `step()`: the query step.
    Step,
    /// `range()`: the query range (end - start; 0 for instant queries).
    Range,
    /// `-d`.
    Neg(Box<DurationExpr>),
    /// `a op b` with `op` one of `+ - * / % ^`.
    Binary(DurationOp, Box<DurationExpr>, Box<DurationExpr>),
    /// `min_of(a, b)`.
    MinOf(Box<DurationExpr>, Box<DurationExpr>),
    /// `max_of(a, b)`.
    MaxOf(Box<DurationExpr>, Box<DurationExpr>),
    /// `( d )`.
    Paren(Box<DurationExpr>),
}

/// Arithmetic inside duration expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DurationOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `^`
    Pow,
}

/// `metric{matchers} [anchored|smoothed] [offset d] [@ t]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSelector {
    /// The metric name written before the braces, if any (also present in `matchers` as a
    /// `__name__` equality matcher).
    pub name: Option<String>,
    /// All matchers, including the one for the metric name.
    pub matchers: Vec<Matcher>,
    /// `offset d` (may be negative).
    pub offset: Option<DurationExpr>,
    /// `@ t`.
    pub at: Option<AtModifier>,
    /// `anchored` or `smoothed` after an instant vector selector (Prometheus 3.x). Always
    /// `None` for the selector of a [`MatrixSelector`], whose modifier is
    /// [`MatrixSelector::modifier`].
    pub modifier: Option<RangeModifier>,
}

/// The Prometheus 3.x experimental `anchored`/`smoothed` modifiers (of range selectors and,
/// since 3.x, of instant vector selectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeModifier {
    /// `anchored`: the window includes the last sample before its start.
    Anchored,
    /// `smoothed`: values at the window edges (or, on an instant selector, at the
    /// evaluation time) are interpolated.
    Smoothed,
}

/// tsq's `seasons(period, n [, "centered"] [, "by_season"] [, tz])` range modifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Seasons {
    /// The season length (e.g. `1d`, `1w`).
    pub period: DurationExpr,
    /// How many past seasons (k = 1..=n).
    pub count: u32,
    /// Windows centred on `t - k*P` instead of ending there.
    pub centered: bool,
    /// One range per (series, k) with label `season="k"` instead of one pooled range.
    pub by_season: bool,
    /// IANA time zone: seasons follow local wall-clock time.
    pub tz: Option<String>,
}

/// `selector[range] [anchored|smoothed] [seasons(...)] [offset d] [@ t]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSelector {
    /// The selector, with its offset and `@` (written after the range in the source).
    pub selector: VectorSelector,
    /// The window length.
    pub range: DurationExpr,
    /// `anchored` or `smoothed`.
    pub modifier: Option<RangeModifier>,
    /// tsq's seasonal windows.
    pub seasons: Option<Seasons>,
}

/// `expr[range:step] [seasons(...)] [offset d] [@ t]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subquery {
    /// The inner expression (an instant vector).
    pub expr: Box<Expr>,
    /// The window length.
    pub range: DurationExpr,
    /// The step; `None` means the default evaluation interval.
    pub step: Option<DurationExpr>,
    /// tsq's seasonal windows.
    pub seasons: Option<Seasons>,
    /// `offset d`.
    pub offset: Option<DurationExpr>,
    /// `@ t`.
    pub at: Option<AtModifier>,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-`
    Neg,
    /// `+`
    Pos,
}

/// Binary operators, PromQL's plus tsq's set operations on episodes (same spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `^` (right-associative)
    Pow,
    /// `atan2`
    Atan2,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `and`
    And,
    /// `or`
    Or,
    /// `unless`
    Unless,
    /// `</` (trim upper; native histograms only)
    TrimUpper,
    /// `>/` (trim lower; native histograms only)
    TrimLower,
}

/// How the two sides of a vector binary operation are matched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VectorMatching {
    /// `on(...)` when true, `ignoring(...)` when false.
    pub on: bool,
    /// The labels of `on`/`ignoring`.
    pub labels: Vec<String>,
    /// `group_left(...)` / `group_right(...)`.
    pub group: Option<Group>,
}

/// `group_left(labels)` or `group_right(labels)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Group {
    /// Many on the left match one on the right.
    Left(Vec<String>),
    /// One on the left matches many on the right.
    Right(Vec<String>),
}

/// Prometheus 3.x `fill(v)`, `fill_left(v)`, `fill_right(v)`: the value used for a side
/// that has no match.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    /// Value for a missing left-hand side.
    pub left: Option<f64>,
    /// Value for a missing right-hand side.
    pub right: Option<f64>,
}

/// A binary operation.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryExpr {
    /// The operator.
    pub op: BinaryOp,
    /// Left operand.
    pub lhs: Box<Expr>,
    /// Right operand.
    pub rhs: Box<Expr>,
    /// `bool` modifier on a comparison.
    pub return_bool: bool,
    /// `on`/`ignoring`/`group_*`; `None` when none was written.
    pub matching: Option<VectorMatching>,
    /// `fill` modifiers.
    pub fill: Option<Fill>,
}

/// Aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateOp {
    /// `sum`
    Sum,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `avg`
    Avg,
    /// `group`
    Group,
    /// `stddev`
    Stddev,
    /// `stdvar`
    Stdvar,
    /// `count`
    Count,
    /// `count_values("label", v)`
    CountValues,
    /// `bottomk(k, v)`
    Bottomk,
    /// `topk(k, v)`
    Topk,
    /// `quantile(q, v)`
    Quantile,
    /// `limitk(k, v)`
    Limitk,
    /// `limit_ratio(r, v)`
    LimitRatio,
    /// tsq: `outliers_mad(tolerance, v)`
    OutliersMad,
}

impl AggregateOp {
    /// Every aggregation operator, in declaration order.
    pub const ALL: [AggregateOp; 15] = [
        AggregateOp::Sum,
        AggregateOp::Min,
        AggregateOp::Max,
        AggregateOp::Avg,
        AggregateOp::Group,
        AggregateOp::Stddev,
        AggregateOp::Stdvar,
        AggregateOp::Count,
        AggregateOp::CountValues,
        AggregateOp::Bottomk,
        AggregateOp::Topk,
        AggregateOp::Quantile,
        AggregateOp::Limitk,
        AggregateOp::LimitRatio,
        AggregateOp::OutliersMad,
    ];
}

/// `by (...)` or `without (...)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grouping {
    /// `without` when true, `by` when false.
    pub without: bool,
    /// The label names.
    pub labels: Vec<String>,
}

/// An aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateExpr {
    /// The operator.
    pub op: AggregateOp,
    /// The vector aggregated.
    pub expr: Box<Expr>,
    /// The parameter of topk, bottomk, quantile, count_values, limitk, limit_ratio,
    /// outliers_mad.
    pub param: Option<Box<Expr>>,
    /// `by`/`without`; `None` when no grouping was written.
    pub grouping: Option<Grouping>,
}

/// A function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The function name, as in the signature table.
    pub func: String,
    /// The arguments.
    pub args: Vec<Expr>,
    /// Trailing `on(...)`/`ignoring(...)` of two-input extension functions (`zscore`,
    /// `followed_by`): `on` when true.
    pub matching: Option<(bool, Vec<String>)>,
}

/// `pattern("<pattern>", SYM: expr, ...) [by (...)] [range:step] [within W]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternExpr {
    /// The pattern text, validated at parse time.
    pub pattern: String,
    /// The symbols with their conditions, in the order written.
    pub symbols: Vec<(String, Expr)>,
    /// `by (...)` labels that define the groups.
    pub by: Option<Vec<String>>,
    /// `[range:step]`; `None` step means the default interval.
    pub range: Option<(DurationExpr, Option<DurationExpr>)>,
    /// `within W`.
    pub within: Option<DurationExpr>,
}

/// `sequence(c1 [for d1], c2 [for d2], ...) [by (...)] [range:step] within W`.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceExpr {
    /// The conditions in order with their optional minimum durations.
    pub steps: Vec<(Expr, Option<DurationExpr>)>,
    /// `by (...)` labels.
    pub by: Option<Vec<String>>,
    /// `[range:step]`.
    pub range: Option<(DurationExpr, Option<DurationExpr>)>,
    /// `within W`.
    pub within: Option<DurationExpr>,
}
