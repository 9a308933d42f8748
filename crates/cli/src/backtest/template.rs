//! The subset of Go's `text/template` that Prometheus alert labels and annotations use.
//!
//! Supported: plain text; `{{ ... }}` actions (with `{{-` / `-}}` trimming and `{{/* */}}`
//! comments) holding a pipeline of commands separated by `|`. Operands: `$value`, `.Value`,
//! `$labels`, `.Labels`, `$labels.NAME`, `.Labels.NAME`, `$externalLabels[.NAME]`,
//! `.ExternalLabels[.NAME]` (always empty), `$externalURL` / `.ExternalURL` (empty), string
//! literals (`"..."`, `` `...` ``) and numbers. Functions: `humanize`, `humanize1024`,
//! `humanizePercentage`, `humanizeDuration`, `printf`, `toUpper`, `toLower`, `title`.
//! Anything else (`if`, `range`, variables, `query`, parentheses) is rejected when the rule
//! file is loaded, with its position.
//!
//! Values print as Go prints them: floats with `%v` (`0.5`, `1e+06`), label maps as
//! `map[a:b c:d]`. A failure while expanding (e.g. `humanize` of a non-number) gives
//! `<error expanding template: ...>` as Prometheus does.

use std::fmt::Write as _;

/// A template error: character offset in the template text and what went wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    /// Character offset in the template text.
    pub offset: usize,
    /// What was expected.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    Printf,
    ToUpper,
    ToLower,
    Title,
}

impl Func {
    fn parse(s: &str) -> Option<Func> {
        Some(match s {
            "humanize" => Func::Humanize,
            "humanize1024" => Func::Humanize1024,
            "humanizePercentage" => Func::HumanizePercentage,
            "humanizeDuration" => Func::HumanizeDuration,
            "printf" => Func::Printf,
            "toUpper" => Func::ToUpper,
            "toLower" => Func::ToLower,
            "title" => Func::Title,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Value,
    Labels,
    Label(String),
    /// `$externalLabels` (empty map) or one of them (empty string).
    External(Option<String>),
    Str(String),
    Num(f64),
}

#[derive(Debug, Clone, PartialEq)]
enum Cmd {
    Operand(Operand),
    Call(Func, Vec<Operand>),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action(Vec<Cmd>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a template sees: the sample's labels and value.
pub struct Data<'a> {
    /// The labels of the sample (with `__name__` when the expression keeps it).
    pub labels: &'a tsq::storage::Labels,
    /// The sample value.
    pub value: f64,
}

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Num(f64),
    Map(Vec<(String, String)>),
}

impl Val {
    fn print(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(v) => go_float(*v, None),
            Val::Map(m) => {
                let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", items.join(" "))
            }
        }
    }

    fn go_type(&self) -> &'static str {
        match self {
            Val::Str(_) => "string",
            Val::Num(_) => "float64",
            Val::Map(_) => "template.Labels",
        }
    }

    fn to_float(&self) -> Result<f64, String> {
        match self {
            Val::Num(v) => Ok(*v),
            Val::Str(s) => parse_go_float(s)
                .ok_or_else(|| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
            Val::Map(_) => Err("can't convert template.Labels to float".into()),
        }
    }

    fn to_str(&self) -> Result<String, String> {
        match self {
            Val::Str(s) => Ok(s.clone()),
            other => Err(format!(
                "wrong type for value; expected string; got {}",
                other.go_type()
            )),
        }
    }
}

fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// True when the template text holds an action (otherwise it is used as it is).
pub fn has_actions(text: &str) -> bool {
    text.contains("{{")
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        let mut text_buf = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '{' && chars.get(i + 1) == Some(&'{') {
                let open = i;
                let mut j = i + 2;
                let trim_left = chars.get(j) == Some(&'-')
                    && chars.get(j + 1).is_some_and(|c| c.is_whitespace());
                if trim_left {
                    j += 1;
                    let t = text_buf.trim_end().len();
                    text_buf.truncate(t);
                }
                // Find the closing `}}` outside string literals.
                let mut k = j;
                let mut quote: Option<char> = None;
                let close = loop {
                    if k >= chars.len() {
                        return Err(TemplateError {
                            offset: open,
                            message: "unclosed action: expected \"}}\"".into(),
                        });
                    }
                    let c = chars[k];
                    match quote {
                        Some('"') if c == '\\' => k += 1,
                        Some(q) if c == q => quote = None,
                        Some(_) => {}
                        None if c == '"' || c == '`' => quote = Some(c),
                        None if c == '}' && chars.get(k + 1) == Some(&'}') => break k,
                        None => {}
                    }
                    k += 1;
                };
                let mut body_end = close;
                let trim_right = close >= 2
                    && chars[close - 1] == '-'
                    && chars[close - 2].is_whitespace()
                    && close > j;
                if trim_right {
                    body_end = close - 1;
                }
                if !text_buf.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text_buf)));
                }
                let body: String = chars[j..body_end].iter().collect();
                if let Some(cmds) = parse_action(&body, j)? {
                    parts.push(Part::Action(cmds));
                }
                i = close + 2;
                if trim_right {
                    while i < chars.len() && chars[i].is_whitespace() {
                        i += 1;
                    }
                }
                continue;
            }
            text_buf.push(chars[i]);
            i += 1;
        }
        if !text_buf.is_empty() {
            parts.push(Part::Text(text_buf));
        }
        Ok(Template { parts })
    }

    /// True when the output depends on the sample value.
    pub fn uses_value(&self) -> bool {
        self.parts.iter().any(|p| match p {
            Part::Text(_) => false,
            Part::Action(cmds) => cmds.iter().any(|c| match c {
                Cmd::Operand(o) => *o == Operand::Value,
                Cmd::Call(_, args) => args.contains(&Operand::Value),
            }),
        })
    }

    /// Expands the template; a runtime failure gives Prometheus's
    /// `<error expanding template: ...>`.
    pub fn expand(&self, data: &Data<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(cmds) => match run(cmds, data) {
                    Ok(Some(v)) => out.push_str(&v.print()),
                    Ok(None) => {}
                    Err(e) => return format!("<error expanding template: {e}>"),
                },
            }
        }
        out
    }
}

#[derive(Debug)]
enum Tok {
    Pipe,
    Str(String),
    Word(String),
}

fn tokenize(body: &str, base: usize) -> Result<Vec<(Tok, usize)>, TemplateError> {
    let chars: Vec<char> = body.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = base + i;
        if c.is_whitespace() {
            i += 1;
        } else if c == '|' {
            out.push((Tok::Pipe, at));
            i += 1;
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(TemplateError {
                            offset: at,
                            message: "unterminated quoted string".into(),
                        })
                    }
                    Some('"') => break,
                    Some('\\') => {
                        i += 1;
                        match chars.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('\\') => s.push('\\'),
                            Some('"') => s.push('"'),
                            _ => {
                                return Err(TemplateError {
                                    offset: base + i,
                                    message: "unsupported escape in string (\\n, \\t, \\\\ and \\\" are supported)".into(),
                                })
                            }
                        }
                    }
                    Some(&c) => s.push(c),
                }
                i += 1;
            }
            i += 1;
            out.push((Tok::Str(s), at));
        } else if c == '`' {
            let start = i + 1;
            let end = (start..chars.len())
                .find(|&k| chars[k] == '`')
                .ok_or_else(|| TemplateError {
                    offset: at,
                    message: "unterminated raw string".into(),
                })?;
            out.push((Tok::Str(chars[start..end].iter().collect()), at));
            i = end + 1;
        } else if c == '(' || c == ')' {
            return Err(TemplateError {
                offset: at,
                message: "parentheses are not supported in templates (use a pipeline: x | f)"
                    .into(),
            });
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !matches!(chars[i], '|' | '(' | ')' | '"' | '`')
            {
                i += 1;
            }
            out.push((Tok::Word(chars[start..i].iter().collect()), at));
        }
    }
    Ok(out)
}

fn operand(word: &str, at: usize) -> Result<Operand, TemplateError> {
    let err = |m: String| TemplateError {
        offset: at,
        message: m,
    };
    let label_of = |rest: &str| -> Result<String, TemplateError> {
        if rest.is_empty() || !tsq::storage::labels::is_valid_label_name(rest) {
            return Err(err(format!(
                "expected a label name after the dot in {word:?}"
            )));
        }
        Ok(rest.to_string())
    };
    match word {
        "$value" | ".Value" => return Ok(Operand::Value),
        "$labels" | ".Labels" => return Ok(Operand::Labels),
        "$externalLabels" | ".ExternalLabels" => return Ok(Operand::External(None)),
        "$externalURL" | ".ExternalURL" => return Ok(Operand::Str(String::new())),
        _ => {}
    }
    for p in ["$labels.", ".Labels."] {
        if let Some(rest) = word.strip_prefix(p) {
            return Ok(Operand::Label(label_of(rest)?));
        }
    }
    for p in ["$externalLabels.", ".ExternalLabels."] {
        if let Some(rest) = word.strip_prefix(p) {
            return Ok(Operand::External(Some(label_of(rest)?)));
        }
    }
    if let Some(v) = word
        .parse::<f64>()
        .ok()
        .filter(|_| word.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+'))
    {
        return Ok(Operand::Num(v));
    }
    if matches!(
        word,
        "if" | "else"
            | "end"
            | "range"
            | "with"
            | "define"
            | "template"
            | "block"
            | "break"
            | "continue"
    ) {
        return Err(err(format!(
            "unsupported template action {word:?} (tsq backtest supports values, labels and pipes to humanize*, printf, toUpper, toLower, title)"
        )));
    }
    if word.starts_with('$') {
        return Err(err(format!(
            "unsupported variable {word:?} (expected $value, $labels, $labels.NAME, $externalLabels or $externalURL)"
        )));
    }
    if word.starts_with('.') {
        return Err(err(format!(
            "unsupported field {word:?} (expected .Value, .Labels, .Labels.NAME, .ExternalLabels or .ExternalURL)"
        )));
    }
    Err(err(format!(
        "unsupported function {word:?} (supported: humanize, humanize1024, humanizePercentage, humanizeDuration, printf, toUpper, toLower, title)"
    )))
}

fn parse_action(body: &str, base: usize) -> Result<Option<Vec<Cmd>>, TemplateError> {
    let trimmed = body.trim();
    if trimmed.starts_with("/*") {
        if trimmed.ends_with("*/") {
            return Ok(None);
        }
        return Err(TemplateError {
            offset: base,
            message: "unclosed comment: expected \"*/\" before \"}}\"".into(),
        });
    }
    let toks = tokenize(body, base)?;
    if toks.is_empty() {
        return Err(TemplateError {
            offset: base,
            message: "missing value for command: expected a value or a function".into(),
        });
    }
    let mut cmds = Vec::new();
    for (ci, group) in toks.split(|(t, _)| matches!(t, Tok::Pipe)).enumerate() {
        let at = group.first().map_or(base, |g| g.1);
        let Some((first, first_at)) = group.first() else {
            return Err(TemplateError {
                offset: at,
                message: "missing command in pipeline: expected a function after \"|\"".into(),
            });
        };
        let func = match first {
            Tok::Word(w) => Func::parse(w),
            _ => None,
        };
        let Some(func) = func else {
            if ci > 0 {
                if let Tok::Word(w) = first {
                    operand(w, *first_at)?;
                }
                return Err(TemplateError {
                    offset: *first_at,
                    message: "expected a function after \"|\"".into(),
                });
            }
            if let Tok::Word(w) = first {
                operand(w, *first_at)?;
            }
            if group.len() > 1 {
                return Err(TemplateError {
                    offset: group[1].1,
                    message: "unexpected argument after a value (only functions take arguments)"
                        .into(),
                });
            }
            let op = match first {
                Tok::Str(s) => Operand::Str(s.clone()),
                Tok::Word(w) => operand(w, *first_at)?,
                Tok::Pipe => unreachable!("split on pipes"),
            };
            cmds.push(Cmd::Operand(op));
            continue;
        };
        let mut args = Vec::new();
        for (t, a) in &group[1..] {
            args.push(match t {
                Tok::Str(s) => Operand::Str(s.clone()),
                Tok::Word(w) => operand(w, *a)?,
                Tok::Pipe => unreachable!("split on pipes"),
            });
        }
        let n = args.len() + usize::from(ci > 0);
        let ok = match func {
            Func::Printf => n >= 1,
            _ => n == 1,
        };
        if !ok {
            return Err(TemplateError {
                offset: *first_at,
                message: format!(
                    "wrong number of arguments for {}: expected {}, got {n}",
                    match first {
                        Tok::Word(w) => w.as_str(),
                        _ => "",
                    },
                    if func == Func::Printf {
                        "at least 1"
                    } else {
                        "1"
                    }
                ),
            });
        }
        if func == Func::Printf && ci == 0 && !matches!(args.first(), Some(Operand::Str(_))) {
            return Err(TemplateError {
                offset: *first_at,
                message: "printf expects a format string first: printf \"%.2f\" $value".into(),
            });
        }
        cmds.push(Cmd::Call(func, args));
    }
    Ok(Some(cmds))
}

fn eval_operand(o: &Operand, d: &Data<'_>) -> Val {
    match o {
        Operand::Value => Val::Num(d.value),
        Operand::Labels => Val::Map(
            d.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
        ),
        Operand::Label(n) => Val::Str(d.labels.get(n).unwrap_or("").to_string()),
        Operand::External(None) => Val::Map(Vec::new()),
        Operand::External(Some(_)) => Val::Str(String::new()),
        Operand::Str(s) => Val::Str(s.clone()),
        Operand::Num(v) => Val::Num(*v),
    }
}

fn run(cmds: &[Cmd], d: &Data<'_>) -> Result<Option<Val>, String> {
    let mut cur: Option<Val> = None;
    for c in cmds {
        cur = Some(match c {
            Cmd::Operand(o) => eval_operand(o, d),
            Cmd::Call(f, args) => {
                let mut vals: Vec<Val> = args.iter().map(|a| eval_operand(a, d)).collect();
                if let Some(prev) = cur.take() {
                    vals.push(prev);
                }
                call(*f, &vals)?
            }
        });
    }
    Ok(cur)
}

fn call(f: Func, a: &[Val]) -> Result<Val, String> {
    Ok(Val::Str(match f {
        Func::Humanize => humanize(a[0].to_float()?),
        Func::Humanize1024 => humanize1024(a[0].to_float()?),
        Func::HumanizePercentage => format!("{}%", go_float(a[0].to_float()? * 100.0, Some(4))),
        Func::HumanizeDuration => humanize_duration(a[0].to_float()?),
        Func::ToUpper => a[0].to_str()?.to_uppercase(),
        Func::ToLower => a[0].to_str()?.to_lowercase(),
        Func::Title => {
            let s = a[0].to_str()?;
            let mut out = String::with_capacity(s.len());
            let mut start = true;
            for c in s.chars() {
                if start && c.is_alphabetic() {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric() && c != '_' && c != '\'';
            }
            out
        }
        Func::Printf => printf(&a[0].to_str()?, &a[1..]),
    }))
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return go_float(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_float(v, Some(4)))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return go_float(v, Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_float(v, Some(4)))
}

/// Prometheus's `humanizeDuration` (seconds in).
pub fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_float(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", go_float(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", go_float(v, Some(4)));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_float(v, Some(4)))
}

/// Decimal digits (no trailing zeros, at least one) and the decimal point position of |v|,
/// rounded to `sig` significant digits or the shortest round-trip representation.
fn digits(v: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    let s = match sig {
        Some(p) => format!("{:.*e}", p.max(1) - 1, v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (m, e) = s.split_once('e').expect("exponent format");
    let exp: i32 = e.parse().expect("exponent");
    let mut d: Vec<u8> = m.bytes().filter(u8::is_ascii_digit).collect();
    while d.len() > 1 && d.last() == Some(&b'0') {
        d.pop();
    }
    if d == [b'0'] {
        return (d, 1);
    }
    (d, exp + 1)
}

fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

fn fmt_e(neg: bool, d: &[u8], dp: i32, decimals: usize, out: &mut String) {
    if neg {
        out.push('-');
    }
    out.push(d[0] as char);
    if decimals > 0 {
        out.push('.');
        for i in 1..=decimals {
            out.push(d.get(i).map_or('0', |&c| c as char));
        }
    }
    let exp = if d == [b'0'] { 0 } else { dp - 1 };
    let _ = write!(
        out,
        "e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    );
}

fn fmt_f(neg: bool, d: &[u8], dp: i32, decimals: usize, out: &mut String) {
    if neg {
        out.push('-');
    }
    if dp > 0 {
        for i in 0..dp as usize {
            out.push(d.get(i).map_or('0', |&c| c as char));
        }
    } else {
        out.push('0');
    }
    if decimals > 0 {
        out.push('.');
        for i in 0..decimals as i32 {
            let idx = dp + i;
            out.push(if idx < 0 {
                '0'
            } else {
                d.get(idx as usize).map_or('0', |&c| c as char)
            });
        }
    }
}

/// Go's `%g` (`prec` = `None` for the shortest representation, i.e. `%v`).
pub fn go_float(v: f64, prec: Option<usize>) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    let neg = v.is_sign_negative() && v != 0.0;
    let (d, dp) = digits(v, prec);
    let nd = d.len() as i32;
    let shortest = prec.is_none();
    let mut p = prec.map_or(nd, |p| p.max(1) as i32);
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    let mut out = String::new();
    if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        fmt_e(neg, &d, dp, (p - 1) as usize, &mut out);
        return out;
    }
    if p > dp {
        p = nd;
    }
    fmt_f(neg, &d, dp, (p - dp).max(0) as usize, &mut out);
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %f %F %e %E %g %G %q %x %%`
/// with flags `-+ 0`, width and precision.
fn printf(format: &str, args: &[Val]) -> String {
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut ai = 0;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while i < chars.len() {
            match chars[i] {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            i += 1;
        }
        let mut width = None;
        while i < chars.len() && chars[i].is_ascii_digit() {
            width = Some(width.unwrap_or(0) * 10 + chars[i].to_digit(10).unwrap_or(0) as usize);
            i += 1;
        }
        let mut prec = None;
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            let mut p = 0;
            while i < chars.len() && chars[i].is_ascii_digit() {
                p = p * 10 + chars[i].to_digit(10).unwrap_or(0) as usize;
                i += 1;
            }
            prec = Some(p);
        }
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(ai) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        ai += 1;
        let bad = || format!("%!{verb}({}={})", arg.go_type(), arg.print());
        let mut s = match (verb, arg) {
            ('v', a) => match (a, prec) {
                (Val::Num(v), Some(_)) => go_float(*v, prec),
                _ => a.print(),
            },
            ('s', Val::Str(s)) => match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            ('s', Val::Map(_)) => arg.print(),
            ('q', Val::Str(s)) => format!("{s:?}"),
            ('d', Val::Num(v)) if v.fract() == 0.0 && v.is_finite() => format!("{}", *v as i64),
            ('f' | 'F', Val::Num(v)) => {
                non_finite(*v).unwrap_or_else(|| format!("{:.*}", prec.unwrap_or(6), v))
            }
            ('e' | 'E', Val::Num(v)) => {
                let r = non_finite(*v).unwrap_or_else(|| {
                    let p = prec.unwrap_or(6);
                    let (d, dp) = digits(*v, Some(p + 1));
                    let mut o = String::new();
                    fmt_e(v.is_sign_negative() && *v != 0.0, &d, dp, p, &mut o);
                    o
                });
                if verb == 'E' {
                    r.to_uppercase()
                } else {
                    r
                }
            }
            ('g' | 'G', Val::Num(v)) => {
                let r = go_float(*v, prec);
                if verb == 'G' {
                    r.to_uppercase()
                } else {
                    r
                }
            }
            ('x', Val::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            _ => bad(),
        };
        if let Val::Num(v) = arg {
            if plus && *v >= 0.0 && !s.starts_with('+') && !s.starts_with('%') {
                s.insert(0, '+');
            } else if space && *v >= 0.0 && !s.starts_with('%') {
                s.insert(0, ' ');
            }
        }
        if let Some(w) = width {
            let n = s.chars().count();
            if n < w {
                let pad = w - n;
                if minus {
                    s.push_str(&" ".repeat(pad));
                } else if zero && matches!(arg, Val::Num(_)) {
                    let sign = s.starts_with(['-', '+', ' ']);
                    let at = usize::from(sign);
                    s.insert_str(at, &"0".repeat(pad));
                } else {
                    s.insert_str(0, &" ".repeat(pad));
                }
            }
        }
        out.push_str(&s);
    }
    if ai < args.len() {
        let extra: Vec<String> = args[ai..]
            .iter()
            .map(|a| format!("{}={}", a.go_type(), a.print()))
            .collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsq::storage::Labels;

    fn exp(t: &str, labels: &Labels, v: f64) -> String {
        Template::parse(t)
            .unwrap()
            .expand(&Data { labels, value: v })
    }

    #[test]
    fn go_float_formats_like_go() {
        // Values checked against Go's fmt: %v and %.4g.
        for (v, want) in [
            (0.5, "0.5"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (0.0, "0"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_float(v, None), want, "{v}");
        }
        for (v, want) in [
            (1.5, "1.5"),
            (100.0, "100"),
            (123.45, "123.5"),
            (12345.0, "1.234e+04"),
            (0.5, "0.5"),
            (0.000012345, "1.234e-05"),
        ] {
            assert_eq!(go_float(v, Some(4)), want, "{v}");
        }
    }

    #[test]
    fn humanize_functions() {
        assert_eq!(humanize(1234.0), "1.234k");
        assert_eq!(humanize(0.0123), "12.3m");
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(2_500_000.0), "2.5M");
        assert_eq!(humanize_duration(90.0), "1m 30s");
        assert_eq!(humanize_duration(93_784.0), "1d 2h 3m 4s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.25), "250ms");
        assert_eq!(humanize1024(2048.0), "2ki");
    }

    #[test]
    fn expands_labels_values_and_pipes() {
        let l = Labels::new([("__name__", "up"), ("job", "api"), ("instance", "a:1")]);
        assert_eq!(
            exp("{{ $labels.job }} is {{ $value }}", &l, 0.0),
            "api is 0"
        );
        assert_eq!(
            exp("{{ .Labels.instance }}/{{ .Value }}", &l, 2.5),
            "a:1/2.5"
        );
        assert_eq!(
            exp("{{ $labels }}", &l, 0.0),
            "map[__name__:up instance:a:1 job:api]"
        );
        assert_eq!(exp("{{ $value | humanize }}", &l, 1234.0), "1.234k");
        assert_eq!(
            exp("{{ $value | humanizePercentage }}", &l, 0.0523),
            "5.23%"
        );
        assert_eq!(exp("{{ humanizeDuration 3600 }}", &l, 0.0), "1h 0m 0s");
        assert_eq!(exp("{{ printf \"%.2f\" $value }}", &l, 0.12345), "0.12");
        assert_eq!(exp("{{ $value | printf \"%.1f s\" }}", &l, 2.25), "2.2 s");
        assert_eq!(exp("{{ $labels.missing }}x", &l, 0.0), "x");
        assert_eq!(exp("{{ $externalLabels }}", &l, 0.0), "map[]");
        assert_eq!(exp("a  {{- \"b\" -}}  c", &l, 0.0), "abc");
        assert_eq!(exp("{{/* note */}}x", &l, 0.0), "x");
        assert_eq!(exp("{{ $labels.job | toUpper }}", &l, 0.0), "API");
        assert_eq!(
            exp("{{ $labels.job | humanize }}", &l, 0.0),
            "<error expanding template: strconv.ParseFloat: parsing \"api\": invalid syntax>"
        );
    }

    #[test]
    fn printf_verbs() {
        assert_eq!(printf("%d%%", &[Val::Num(42.0)]), "42%");
        assert_eq!(printf("%5.1f|", &[Val::Num(7.04159)]), "  7.0|");
        assert_eq!(printf("%-4s|", &[Val::Str("ab".into())]), "ab  |");
        assert_eq!(printf("%d", &[Val::Num(1.5)]), "%!d(float64=1.5)");
        assert_eq!(printf("%s", &[]), "%!s(MISSING)");
        assert_eq!(printf("%e", &[Val::Num(1234.5)]), "1.234500e+03");
    }

    #[test]
    fn unsupported_constructs_are_errors_with_offsets() {
        let e = Template::parse("ab {{ if $value }}x{{ end }}").unwrap_err();
        assert_eq!(e.offset, 6);
        assert!(e.message.contains("\"if\""), "{}", e.message);
        let e = Template::parse("{{ $value | nope }}").unwrap_err();
        assert_eq!(e.offset, 12);
        let e = Template::parse("{{ query \"up\" }}").unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(Template::parse("{{ $value").is_err());
        assert!(Template::parse("{{ humanize }}").is_err());
        assert!(Template::parse("{{ $foo }}").is_err());
        assert!(Template::parse("{{ (humanize $value) }}").is_err());
    }
}
