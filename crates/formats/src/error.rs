//! Parse errors with positions.

use std::fmt;

/// A syntax error in an input file: where it is and what was expected.
///
/// `Display` prints `line:column: message`; the CLI prefixes the file name, giving the
/// familiar `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters (Unicode scalar values), not bytes.
    pub column: usize,
    /// What was wrong, usually `expected ...`.
    pub message: String,
}

impl ParseError {
    /// Builds an error at a byte offset of `line_text` (the column is converted to characters).
    pub fn at(
        line: usize,
        line_text: &str,
        byte_offset: usize,
        message: impl Into<String>,
    ) -> Self {
        let mut off = byte_offset.min(line_text.len());
        while !line_text.is_char_boundary(off) {
            off -= 1;
        }
        ParseError {
            line,
            column: line_text[..off].chars().count() + 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Why [`parse`](crate::parse) stopped: a syntax error in the input, or an error returned by
/// the caller's callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseFailure<E> {
    /// The input is invalid (and `skip_invalid` was off).
    Syntax(ParseError),
    /// The callback returned an error; parsing stopped at that record.
    Callback(E),
}

impl<E: fmt::Display> fmt::Display for ParseFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseFailure::Syntax(e) => e.fmt(f),
            ParseFailure::Callback(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ParseFailure<E> {}

/// A problem inside one line: byte offset within the line and message. Converted to a
/// [`ParseError`] (with character column) by the driver.
#[derive(Debug)]
pub(crate) struct LineError {
    pub(crate) offset: usize,
    pub(crate) message: String,
}

impl LineError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        LineError {
            offset,
            message: message.into(),
        }
    }
}

/// A line-level failure: syntax or callback.
pub(crate) enum Fail<E> {
    Syntax(LineError),
    Callback(E),
}

impl<E> From<LineError> for Fail<E> {
    fn from(e: LineError) -> Self {
        Fail::Syntax(e)
    }
}

/// Shorthand: a syntax error at `offset`.
pub(crate) fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, LineError> {
    Err(LineError::new(offset, message))
}
