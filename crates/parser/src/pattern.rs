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

/// Largest repetition count accepted in `{n,m}`.
const MAX_REPEAT: u64 = 10_000;

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

    fn alt(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth > 64 {
            return Err((self.i, "pattern too deeply nested".into()));
        }
        self.concat()?;
        while self.peek() == Some(b'|') {
            self.i += 1;
            self.concat()?;
        }
        self.depth -= 1;
        Ok(())
    }

    fn concat(&mut self) -> Res<()> {
        let mut n = 0;
        loop {
            match self.peek() {
                None | Some(b'|') | Some(b')') => break,
                _ => {
                    self.item()?;
                    n += 1;
                }
            }
        }
        if n == 0 {
            return Err((self.i, "empty alternative".into()));
        }
        Ok(())
    }

    fn number(&mut self) -> Res<u64> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if start == self.i {
            return Err((start, "expected a number in {...}".into()));
        }
        let txt = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        match txt.parse::<u64>() {
            Ok(v) if v <= MAX_REPEAT => Ok(v),
            _ => Err((start, format!("repetition count above {MAX_REPEAT}"))),
        }
    }

    fn item(&mut self) -> Res<()> {
        let c = self.peek().unwrap_or(0);
        let start = self.i;
        match c {
            b'.' => self.i += 1,
            b'(' => {
                self.i += 1;
                self.alt()?;
                if self.peek() != Some(b')') {
                    return Err((self.i, "missing \")\"".into()));
                }
                self.i += 1;
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
                    self.used.push(sym);
                }
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
        }
        // Quantifier directly after the atom (no whitespace in between).
        let q = self.s.get(self.i).copied();
        match q {
            Some(b'*' | b'+' | b'?') => self.i += 1,
            Some(b'{') => {
                self.i += 1;
                let n = self.number()?;
                if self.s.get(self.i) == Some(&b',') {
                    self.i += 1;
                    if self.s.get(self.i) != Some(&b'}') {
                        let at = self.i;
                        let m = self.number()?;
                        if m < n {
                            return Err((at, format!("repetition {{{n},{m}}} has max below min")));
                        }
                    }
                }
                if self.s.get(self.i) != Some(&b'}') {
                    return Err((self.i, "expected \"}\" to close the repetition".into()));
                }
                self.i += 1;
            }
            _ => return Ok(()),
        }
        // Reluctant marker.
        if self.s.get(self.i) == Some(&b'?') {
            self.i += 1;
        }
        if matches!(self.s.get(self.i), Some(b'*' | b'+' | b'?' | b'{')) {
            return Err((self.i, "repeated quantifier".into()));
        }
        Ok(())
    }
}

/// Validates a pattern; returns the symbols it uses (in order of first use) or the byte
/// index and message of the first error.
pub(crate) fn validate(pattern: &str) -> Result<Vec<String>, (usize, String)> {
    let mut p = P {
        s: pattern.as_bytes(),
        i: 0,
        used: Vec::new(),
        depth: 0,
    };
    if p.peek().is_none() {
        return Err((0, "empty pattern".into()));
    }
    p.alt()?;
    if p.peek().is_some() {
        return Err((p.i, "unexpected \")\"".into()));
    }
    Ok(p.used)
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_and_rejects() {
        assert_eq!(validate("D E{5,} R").unwrap(), vec!["D", "E", "R"]);
        assert!(validate("(A|B)+? . C{2,3}? D?? E*?").is_ok());
        assert!(validate("A{3} B{1,}").is_ok());
        for bad in [
            "", "A|", "(A", "A)", "*A", "A**", "A{3,2}", "A{", "A{x}", "A ! B", "()",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
