//! The tokenizer: turns the query text into tokens with byte offsets.
//!
//! Numbers and durations are recognised with `nom` combinators; everything else is a
//! hand-written scanner so that every error carries the exact offset of the offending
//! character.

use nom::{
    branch::alt,
    bytes::complete::{tag, tag_no_case, take_while1},
    character::complete::{char as nchar, one_of},
    combinator::{opt, recognize},
    multi::{many0_count, many1_count},
    sequence::{pair, preceded, tuple},
    IResult,
};

/// A token kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Tok {
    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`; its text is the token's span.
    Ident,
    /// A number literal (hex, octal, decimal, exponent; `Inf`/`NaN` are identifiers).
    Number(f64),
    /// A duration literal such as `1h30m`, in milliseconds.
    Duration(i64),
    /// A string literal, decoded: an index into the strings returned by [`lex`].
    Str(u32),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    EqlC,
    Neq,
    Gt,
    Lt,
    Ge,
    Le,
    Assign,
    ReMatch,
    ReNoMatch,
    TrimUpper,
    TrimLower,
    At,
    Eof,
}

/// A token with its byte span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

/// A lexing error: byte offset and message.
pub(crate) type LexError = (usize, String);

/// Milliseconds per duration unit, from the largest.
pub(crate) const UNITS: &[(&str, i64)] = &[
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn digits(i: &str) -> IResult<&str, &str> {
    recognize(pair(
        take_while1(|c: char| c.is_ascii_digit()),
        many0_count(preceded(
            nchar('_'),
            take_while1(|c: char| c.is_ascii_digit()),
        )),
    ))(i)
}

fn hex_number(i: &str) -> IResult<&str, &str> {
    recognize(tuple((
        nchar('0'),
        one_of("xX"),
        opt(nchar('_')),
        take_while1(|c: char| c.is_ascii_hexdigit()),
        many0_count(preceded(
            nchar('_'),
            take_while1(|c: char| c.is_ascii_hexdigit()),
        )),
    )))(i)
}

fn decimal_number(i: &str) -> IResult<&str, &str> {
    let exponent = tuple((one_of("eE"), opt(one_of("+-")), digits));
    let with_int = recognize(tuple((digits, opt(pair(nchar('.'), opt(digits))))));
    let frac_only = recognize(pair(nchar('.'), digits));
    recognize(pair(alt((with_int, frac_only)), opt(exponent)))(i)
}

/// One `<digits><unit>` component of a duration.
fn duration_part(i: &str) -> IResult<&str, (&str, &str)> {
    pair(
        take_while1(|c: char| c.is_ascii_digit()),
        alt((
            tag("ms"),
            tag("y"),
            tag("w"),
            tag("d"),
            tag("h"),
            tag("m"),
            tag("s"),
        )),
    )(i)
}

/// Parses a whole duration literal (`1h30m`, `500ms`); units in decreasing order, each at
/// most once. Returns milliseconds.
pub(crate) fn duration_value(s: &str) -> Result<i64, String> {
    let bad = || format!("not a valid duration string: {s:?}");
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut last_unit = None::<usize>;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let (r, (num, unit)) = duration_part(rest).map_err(|_| bad())?;
        let idx = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(bad)?;
        if let Some(prev) = last_unit {
            if idx <= prev {
                return Err(bad());
            }
        }
        last_unit = Some(idx);
        let n: i64 = num
            .parse()
            .map_err(|_| "duration out of range".to_string())?;
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "duration out of range".to_string())?;
        rest = r;
    }
    Ok(total)
}

fn number_value(text: &str) -> Option<f64> {
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    if let Some(hex) = clean
        .strip_prefix("0x")
        .or_else(|| clean.strip_prefix("0X"))
    {
        let mut v = 0f64;
        for c in hex.chars() {
            v = v * 16.0 + f64::from(c.to_digit(16)?);
        }
        return Some(v);
    }
    // As Go's strconv.ParseInt(s, 0, 64), which Prometheus tries first: a leading 0 means
    // octal.
    if clean.len() > 1
        && clean.starts_with('0')
        && clean.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        let mut v = 0f64;
        for c in clean[1..].chars() {
            v = v * 8.0 + f64::from(c.to_digit(8)?);
        }
        return Some(v);
    }
    clean.parse::<f64>().ok()
}

/// The tokens of an input (the last one is [`Tok::Eof`]) and its decoded string literals.
pub(crate) type Lexed = (Vec<Token>, Vec<String>);

/// Tokenizes the whole input.
pub(crate) fn lex(src: &str) -> Result<Lexed, LexError> {
    let bytes = src.as_bytes();
    let mut toks = Vec::with_capacity(src.len() / 2 + 2);
    let mut strings: Vec<String> = Vec::new();
    let mut push_str = |s: String| {
        strings.push(s);
        Tok::Str((strings.len() - 1) as u32)
    };
    let mut i = 0;
    // Inside `[...]` a colon always separates range and step, and names never contain one.
    let mut brackets = 0usize;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let single = |t: Tok| Token {
            tok: t,
            start,
            end: start + 1,
        };
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' => toks.push(single(Tok::LParen)),
            b')' => toks.push(single(Tok::RParen)),
            b'{' => toks.push(single(Tok::LBrace)),
            b'}' => toks.push(single(Tok::RBrace)),
            b'[' => {
                brackets += 1;
                toks.push(single(Tok::LBracket))
            }
            b']' => {
                brackets = brackets.saturating_sub(1);
                toks.push(single(Tok::RBracket))
            }
            b',' => toks.push(single(Tok::Comma)),
            b'+' => toks.push(single(Tok::Add)),
            b'-' => toks.push(single(Tok::Sub)),
            b'*' => toks.push(single(Tok::Mul)),
            b'/' => toks.push(single(Tok::Div)),
            b'%' => toks.push(single(Tok::Mod)),
            b'^' => toks.push(single(Tok::Pow)),
            b'@' => toks.push(single(Tok::At)),
            b'=' | b'!' | b'<' | b'>' => {
                let next = bytes.get(i + 1).copied();
                let (tok, len) = match (c, next) {
                    (b'=', Some(b'=')) => (Tok::EqlC, 2),
                    (b'=', Some(b'~')) => (Tok::ReMatch, 2),
                    (b'=', _) => (Tok::Assign, 1),
                    (b'!', Some(b'=')) => (Tok::Neq, 2),
                    (b'!', Some(b'~')) => (Tok::ReNoMatch, 2),
                    (b'!', _) => return Err((i, "unexpected character after '!'".into())),
                    (b'<', Some(b'=')) => (Tok::Le, 2),
                    (b'<', Some(b'/')) => (Tok::TrimUpper, 2),
                    (b'<', _) => (Tok::Lt, 1),
                    (b'>', Some(b'=')) => (Tok::Ge, 2),
                    (b'>', Some(b'/')) => (Tok::TrimLower, 2),
                    _ => (Tok::Gt, 1),
                };
                toks.push(Token {
                    tok,
                    start,
                    end: start + len,
                });
                i += len;
                continue;
            }
            b':' if brackets > 0
                || !matches!(bytes.get(i + 1), Some(&b) if is_ident_start(b as char)) =>
            {
                toks.push(single(Tok::Colon))
            }
            b'"' | b'\'' => {
                let (s, end) = lex_quoted(src, i)?;
                toks.push(Token {
                    tok: push_str(s),
                    start,
                    end,
                });
                i = end;
                continue;
            }
            b'`' => match src[i + 1..].find('`') {
                Some(n) => {
                    let end = i + 1 + n + 1;
                    toks.push(Token {
                        tok: push_str(src[i + 1..end - 1].to_string()),
                        start,
                        end,
                    });
                    i = end;
                    continue;
                }
                None => return Err((i, "unterminated raw string".into())),
            },
            b'0'..=b'9' | b'.' => {
                let (tok, end) = lex_number(src, i)?;
                toks.push(Token { tok, start, end });
                i = end;
                continue;
            }
            _ if is_ident_start(c as char) && (brackets == 0 || c != b':') => {
                let mut j = i;
                while j < bytes.len()
                    && is_ident_char(bytes[j] as char)
                    && (brackets == 0 || bytes[j] != b':')
                {
                    j += 1;
                }
                toks.push(Token {
                    tok: Tok::Ident,
                    start,
                    end: j,
                });
                i = j;
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err((i, format!("unexpected character {ch:?}")));
            }
        }
        i += 1;
    }
    toks.push(Token {
        tok: Tok::Eof,
        start: src.len(),
        end: src.len(),
    });
    Ok((toks, strings))
}

fn lex_number(src: &str, i: usize) -> Result<(Tok, usize), LexError> {
    let rest = &src[i..];
    // A number or duration must not run into letters, digits, `_` or `.`.
    let glued = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let bad = |len: usize| {
        let end = rest[len..]
            .find(|c: char| !glued(c))
            .map_or(rest.len(), |n| n + len);
        (
            i,
            format!("bad number or duration syntax: {:?}", &rest[..end]),
        )
    };
    // Duration first: digits followed by a unit.
    let dur_len = recognize(many1_count(duration_part))(rest)
        .map(|(r, _)| rest.len() - r.len())
        .unwrap_or(0);
    if dur_len > 0 && !rest[dur_len..].starts_with(glued) {
        let v = duration_value(&rest[..dur_len]).map_err(|e| (i, e))?;
        return Ok((Tok::Duration(v), i + dur_len));
    }
    let res = hex_number(rest).or_else(|_: nom::Err<nom::error::Error<&str>>| decimal_number(rest));
    match res {
        Ok((r, text)) => {
            let len = rest.len() - r.len();
            if r.starts_with(glued) {
                return Err(bad(len));
            }
            let v = number_value(text).ok_or_else(|| bad(len))?;
            Ok((Tok::Number(v), i + len))
        }
        Err(_) => {
            if rest.starts_with('.') {
                Err((i, "unexpected character '.'".into()))
            } else {
                Err(bad(0))
            }
        }
    }
}

/// Decodes a single- or double-quoted string starting at `i`; returns it and the end offset.
fn lex_quoted(src: &str, i: usize) -> Result<(String, usize), LexError> {
    let bytes = src.as_bytes();
    let quote = bytes[i];
    let mut out: Vec<u8> = Vec::new();
    let mut j = i + 1;
    loop {
        let Some(&b) = bytes.get(j) else {
            return Err((i, "unterminated quoted string".into()));
        };
        match b {
            b'\n' => return Err((i, "unterminated quoted string".into())),
            _ if b == quote => {
                j += 1;
                break;
            }
            b'\\' => {
                let esc_at = j;
                let Some(&e) = bytes.get(j + 1) else {
                    return Err((i, "unterminated quoted string".into()));
                };
                j += 2;
                let hex = |j: &mut usize, n: usize| -> Result<u32, LexError> {
                    let s = src
                        .get(*j..*j + n)
                        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()));
                    let s = s.ok_or_else(|| (esc_at, "invalid escape sequence".to_string()))?;
                    *j += n;
                    Ok(u32::from_str_radix(s, 16).unwrap_or(0))
                };
                match e {
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    b'\\' => out.push(b'\\'),
                    _ if e == quote => out.push(e),
                    b'x' => out.push(hex(&mut j, 2)? as u8),
                    b'u' | b'U' => {
                        let v = hex(&mut j, if e == b'u' { 4 } else { 8 })?;
                        let ch = char::from_u32(v).ok_or_else(|| {
                            (
                                esc_at,
                                "escape sequence is invalid Unicode code point".to_string(),
                            )
                        })?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    b'0'..=b'7' => {
                        let s = src
                            .get(j - 1..j + 2)
                            .filter(|s| s.bytes().all(|b| (b'0'..=b'7').contains(&b)));
                        let s = s.ok_or_else(|| (esc_at, "invalid escape sequence".to_string()))?;
                        let v = u32::from_str_radix(s, 8).unwrap_or(0);
                        if v > 255 {
                            return Err((esc_at, "octal escape value > 255".into()));
                        }
                        out.push(v as u8);
                        j += 2;
                    }
                    _ => {
                        let ch = src[esc_at + 1..].chars().next().unwrap_or('?');
                        return Err((esc_at, format!("unknown escape sequence {ch:?}")));
                    }
                }
            }
            _ => {
                out.push(b);
                j += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(|s| (s, j))
        .map_err(|_| (i, "string is not valid UTF-8 after escapes".into()))
}

/// Recognises `inf`/`nan` (any case) used as a number.
pub(crate) fn special_number(text: &str) -> Option<f64> {
    let r: IResult<&str, &str> = alt((tag_no_case("inf"), tag_no_case("nan")))(text);
    match r {
        Ok(("", t)) if t.eq_ignore_ascii_case("inf") => Some(f64::INFINITY),
        Ok(("", _)) => Some(f64::NAN),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().0.into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(
            toks("0x1f 1_000 1e3 .5 010 09"),
            vec![
                Tok::Number(31.0),
                Tok::Number(1000.0),
                Tok::Number(1000.0),
                Tok::Number(0.5),
                Tok::Number(8.0),
                Tok::Number(9.0),
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("1h30m 5ms"),
            vec![Tok::Duration(5_400_000), Tok::Duration(5), Tok::Eof]
        );
        assert!(lex("30m1h").is_err());
        assert!(lex("5x").is_err());
        assert!(lex("1.5h").is_err());
    }

    #[test]
    fn strings() {
        let (_, strings) = lex(r#""a\n\x41\u00e9\101" 'it\'s' `r\aw`"#).unwrap();
        assert_eq!(strings, vec!["a\nAéA", "it's", "r\\aw"]);
        assert_eq!(
            toks(r#""a" 'b' `c`"#),
            vec![Tok::Str(0), Tok::Str(1), Tok::Str(2), Tok::Eof]
        );
        assert!(lex(r#""\'""#).is_err());
        assert!(lex("\"abc").is_err());
    }
}
