//! Validation of `pattern("...")` strings: symbols, `.`, concatenation, `|`, `( )` and the
//! greedy (`* + ? {n} {n,} {n,m}`) and reluctant (`??` `*?` `+?` `{n,m}?`) quantifiers.
//!
//! Grammar (whitespace separates elements and is otherwise ignored):
//!
//! ```text
//! alt    := concat ('|' concat)*
//! concat := item+
//! item   := atom [quant ['?']]
//! atom   := SYMBOL | '.' | '(' alt ')'
//! quant  := '*' | '+' | '?' | '{' n '}' | '{' n ',' '}' | '{' n ',' m '}'
//! ```

/// The syntax tree of a `pattern("...")` string; each leaf consumes one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternNode {
    /// A symbol: the step must satisfy its condition.
    Sym(String),
    /// `.`: any step.
    Any,
    /// Elements one after the other.
    Concat(Vec<PatternNode>),
    /// `a | b | ...`: the first alternative is preferred.
    Alt(Vec<PatternNode>),
    /// `node{min,max}`; `max` `None` is unbounded; `greedy` false for the reluctant forms.
    Repeat {
        /// The repeated element.
        node: Box<PatternNode>,
        /// Fewest repetitions.
        min: u32,
        /// Most repetitions, unbounded when `None`.
        max: Option<u32>,
        /// Prefer more repetitions (`*`), or fewer (`*?`).
        greedy: bool,
    },
}

impl PatternNode {
    /// Whether any quantifier in the tree is reluctant.
    pub fn has_reluctant(&self) -> bool {
        match self {
            PatternNode::Sym(_) | PatternNode::Any => false,
            PatternNode::Concat(v) | PatternNode::Alt(v) => v.iter().any(|n| n.has_reluctant()),
            PatternNode::Repeat { node, greedy, .. } => !greedy || node.has_reluctant(),
        }
    }
}

/// Largest repetition count accepted in `{n,m}`.
const MAX_REPEAT: u32 = 10_000;

/// Whether `s` is a valid symbol name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_symbol(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
    used: Vec<String>,
    depth: usize,
}

type Res<T> = Result<T, (usize, String)>;

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn alt(&mut self) -> Res<PatternNode> {
        self.depth += 1;
        if self.depth > 64 {
            return Err((self.i, "pattern too deeply nested".into()));
        }
        let mut alts = vec![self.concat()?];
        while self.peek() == Some(b'|') {
            self.i += 1;
            alts.push(self.concat()?);
        }
        self.depth -= 1;
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(PatternNode::Any)
        } else {
            PatternNode::Alt(alts)
        })
    }

    fn concat(&mut self) -> Res<PatternNode> {
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'|') | Some(b')') => break,
                _ => items.push(self.item()?),
            }
        }
        match items.len() {
            0 => Err((self.i, "empty alternative".into())),
            1 => Ok(items.pop().unwrap_or(PatternNode::Any)),
            _ => Ok(PatternNode::Concat(items)),
        }
    }

    fn number(&mut self) -> Res<u32> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if start == self.i {
            return Err((start, "expected a number in {...}".into()));
        }
        let txt = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        match txt.parse::<u32>() {
            Ok(v) if v <= MAX_REPEAT => Ok(v),
            _ => Err((start, format!("repetition count above {MAX_REPEAT}"))),
        }
    }

    fn item(&mut self) -> Res<PatternNode> {
        let c = self.peek().unwrap_or(0);
        let start = self.i;
        let atom = match c {
            b'.' => {
                self.i += 1;
                PatternNode::Any
            }
            b'(' => {
                self.i += 1;
                let inner = self.alt()?;
                if self.peek() != Some(b')') {
                    return Err((self.i, "missing \")\"".into()));
                }
                self.i += 1;
                inner
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
                {
                    self.i += 1;
                }
                let sym = std::str::from_utf8(&self.s[start..self.i])
                    .unwrap_or("")
                    .to_string();
                if !self.used.contains(&sym) {
                    self.used.push(sym.clone());
                }
                PatternNode::Sym(sym)
            }
            b'*' | b'+' | b'?' | b'{' => {
                return Err((start, "quantifier without an element to repeat".into()))
            }
            _ => {
                let ch = std::str::from_utf8(&self.s[start..])
                    .ok()
                    .and_then(|s| s.chars().next())
                    .unwrap_or('?');
                return Err((start, format!("unexpected character {ch:?}")));
            }
        };
        // Quantifier directly after the atom (no whitespace in between).
        let q = self.s.get(self.i).copied();
        let (min, max) = match q {
            Some(b'*') => (0, None),
            Some(b'+') => (1, None),
            Some(b'?') => (0, Some(1)),
            Some(b'{') => {
                self.i += 1;
                let n = self.number()?;
                let mut m = Some(n);
                if self.s.get(self.i) == Some(&b',') {
                    self.i += 1;
                    m = None;
                    if self.s.get(self.i) != Some(&b'}') {
                        let at = self.i;
                        let hi = self.number()?;
                        if hi < n {
                            return Err((at, format!("repetition {{{n},{hi}}} has max below min")));
                        }
                        m = Some(hi);
                    }
                }
                if self.s.get(self.i) != Some(&b'}') {
                    return Err((self.i, "expected \"}\" to close the repetition".into()));
                }
                (n, m)
            }
            _ => return Ok(atom),
        };
        self.i += 1;
        // Reluctant marker.
        let greedy = self.s.get(self.i) != Some(&b'?');
        if !greedy {
            self.i += 1;
        }
        if matches!(self.s.get(self.i), Some(b'*' | b'+' | b'?' | b'{')) {
            return Err((self.i, "repeated quantifier".into()));
        }
        Ok(PatternNode::Repeat {
            node: Box::new(atom),
            min,
            max,
            greedy,
        })
    }
}

/// Validates a pattern; returns the symbols it uses (in order of first use) or the byte
/// index and message of the first error.
pub(crate) fn validate(pattern: &str) -> Result<Vec<String>, (usize, String)> {
    parse_with_symbols(pattern).map(|(_, used)| used)
}

/// Parses a pattern string (already validated when it came through the query parser) into
/// its tree; on error, the byte index and message of the first problem.
pub fn parse_pattern(pattern: &str) -> Result<PatternNode, (usize, String)> {
    parse_with_symbols(pattern).map(|(tree, _)| tree)
}

fn parse_with_symbols(pattern: &str) -> Result<(PatternNode, Vec<String>), (usize, String)> {
    let mut p = P {
        s: pattern.as_bytes(),
        i: 0,
        used: Vec::new(),
        depth: 0,
    };
    if p.peek().is_none() {
        return Err((0, "empty pattern".into()));
    }
    let tree = p.alt()?;
    if p.peek().is_some() {
        return Err((p.i, "unexpected \")\"".into()));
    }
    Ok((tree, p.used))
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_and_rejects() {
        assert_eq!(validate("D E{5,} R").unwrap(), vec!["D", "E", "R"]);
        assert!(validate("(A|B)+? . C{2,3}? D?? E*?").is_ok());
        assert!(validate("A{3} B{1,}").is_ok());
        assert_eq!(
            super::parse_pattern("A B{2,}? (A|.)").unwrap(),
            super::PatternNode::Concat(vec![
                super::PatternNode::Sym("A".into()),
                super::PatternNode::Repeat {
                    node: Box::new(super::PatternNode::Sym("B".into())),
                    min: 2,
                    max: None,
                    greedy: false
                },
                super::PatternNode::Alt(vec![
                    super::PatternNode::Sym("A".into()),
                    super::PatternNode::Any
                ]),
            ])
        );
        for bad in [
            "", "A|", "(A", "A)", "*A", "A**", "A{3,2}", "A{", "A{x}", "A ! B", "()",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
