//! A YAML document as a tree of nodes that remember where they are in the file.
//!
//! Built from `saphyr-parser`'s event stream (each event carries its span), so that every
//! rule-file error can name `file:line:column`. Anchors and aliases are resolved by copying
//! the anchored node.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A position in the source: 1-based line and column (in characters), and the character
/// index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar with its style (plain, quoted, literal `|`, folded `>`).
    Scalar(String, ScalarStyle),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(Node, Node)>),
}

/// One node and where it starts and ends (character indices into the source).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The content.
    pub kind: Kind,
    /// Where the node starts.
    pub pos: Pos,
    /// Character index of the start.
    pub start: usize,
    /// Character index just past the end.
    pub end: usize,
}

impl Node {
    /// True for `~`, `null`, and empty plain scalars.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s, ScalarStyle::Plain) if matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What kind of node this is, for error messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "null",
            Kind::Scalar(..) => "a scalar",
            Kind::Seq(_) => "a sequence",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// The source text indexed by character, to turn character indices into positions.
pub struct Source {
    chars: Vec<char>,
    /// (line, col) of each character index (one past the end included).
    pos: Vec<Pos>,
}

impl Source {
    /// Indexes `text`.
    pub fn new(text: &str) -> Self {
        let chars: Vec<char> = text.chars().collect();
        let mut pos = Vec::with_capacity(chars.len() + 1);
        let (mut line, mut col) = (1, 1);
        for &c in &chars {
            pos.push(Pos { line, col });
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        pos.push(Pos { line, col });
        Source { chars, pos }
    }

    /// The position of character index `i` (clamped to the end).
    pub fn pos(&self, i: usize) -> Pos {
        self.pos[i.min(self.pos.len() - 1)]
    }

    /// The characters.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

enum Frame {
    Seq(Node, Vec<Node>, usize),
    Map(Node, Vec<(Node, Node)>, Option<Node>, usize),
}

/// Parses the first document of `text` (an empty stream gives `None`). Later documents are
/// an error: a rule file holds one.
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let err = |e: saphyr_parser::ScanError| YamlError {
        pos: Pos {
            line: e.marker().line(),
            col: e.marker().col() + 1,
        },
        message: e.info().to_string(),
    };
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut docs = 0;
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(err)?;
        let node = match ev {
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return Err(YamlError {
                        pos: pos_of(&span),
                        message: "expected one YAML document, found a second one".into(),
                    });
                }
                continue;
            }
            Event::Scalar(v, style, anchor, _) => {
                let n = Node {
                    kind: Kind::Scalar(v.into_owned(), style),
                    pos: pos_of(&span),
                    start: span.start.index(),
                    end: span.end.index(),
                };
                if anchor > 0 {
                    anchors.insert(anchor, n.clone());
                }
                n
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => n.clone(),
                None => {
                    return Err(YamlError {
                        pos: pos_of(&span),
                        message: "alias to an unknown anchor".into(),
                    })
                }
            },
            Event::SequenceStart(anchor, _) => {
                let n = Node {
                    kind: Kind::Seq(Vec::new()),
                    pos: pos_of(&span),
                    start: span.start.index(),
                    end: span.end.index(),
                };
                stack.push(Frame::Seq(n, Vec::new(), anchor));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                let n = Node {
                    kind: Kind::Map(Vec::new()),
                    pos: pos_of(&span),
                    start: span.start.index(),
                    end: span.end.index(),
                };
                stack.push(Frame::Map(n, Vec::new(), None, anchor));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(mut n, items, anchor)) => {
                    n.end = items.last().map_or(span.end.index(), |i| i.end);
                    n.kind = Kind::Seq(items);
                    if anchor > 0 {
                        anchors.insert(anchor, n.clone());
                    }
                    n
                }
                _ => unreachable!("the parser balances sequences"),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(mut n, items, _, anchor)) => {
                    n.end = items.last().map_or(span.end.index(), |i| i.1.end);
                    n.kind = Kind::Map(items);
                    if anchor > 0 {
                        anchors.insert(anchor, n.clone());
                    }
                    n
                }
                _ => unreachable!("the parser balances mappings"),
            },
            _ => continue,
        };
        match stack.last_mut() {
            Some(Frame::Seq(_, items, _)) => items.push(node),
            Some(Frame::Map(_, items, key, _)) => match key.take() {
                None => *key = Some(node),
                Some(k) => items.push((k, node)),
            },
            None => root = Some(node),
        }
    }
    Ok(root)
}

/// Maps a character index of a scalar's value to the character index in the source that
/// produced it: walks the value and the source together, matching equal characters and
/// skipping what the value does not hold (quotes, escapes, indentation, folded line breaks,
/// block headers). Exact for plain and quoted single-line scalars and for literal blocks;
/// best effort (the nearest source character) for folded text and escapes.
pub fn value_to_source(src: &Source, node: &Node, value: &str, target: usize) -> usize {
    let chars = src.chars();
    let end = node.end.min(chars.len());
    let mut j = node.start.min(end);
    if let Kind::Scalar(_, ScalarStyle::Literal | ScalarStyle::Folded) = node.kind {
        // The span may start at the header (`|`, `>-`, `|2` and any comment): skip it up to
        // its line break. When it starts at the content, only spaces precede it on its line.
        let mut b = j;
        while b > 0 && chars[b - 1] == ' ' {
            b -= 1;
        }
        let at_content = b == 0 || chars[b - 1] == '\n';
        if !at_content {
            while j < end && chars[j] != '\n' {
                j += 1;
            }
            j = (j + 1).min(end);
        }
        // The content starts after the block's indentation.
        while j < end && chars[j] == ' ' {
            j += 1;
        }
    } else if let Kind::Scalar(_, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted) = node.kind
    {
        j = (j + 1).min(end);
    }
    for (i, c) in value.chars().enumerate() {
        if c.is_whitespace() {
            if i == target {
                return j;
            }
            if j < end && chars[j].is_whitespace() {
                j += 1;
            }
            continue;
        }
        let k = (j..end).find(|&k| chars[k] == c).unwrap_or(j);
        if i == target {
            return k;
        }
        j = (k + 1).min(end);
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_get<'a>(n: &'a Node, key: &str) -> &'a Node {
        match &n.kind {
            Kind::Map(items) => {
                &items
                    .iter()
                    .find(|(k, _)| matches!(&k.kind, Kind::Scalar(s, _) if s == key))
                    .unwrap()
                    .1
            }
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn nodes_know_their_positions() {
        let text = "a:\n  b: [1, 2]\n  c: 'x'\n";
        let root = parse(text).unwrap().unwrap();
        let a = map_get(&root, "a");
        assert_eq!(a.pos, Pos { line: 2, col: 3 });
        let c = map_get(a, "c");
        assert_eq!(c.pos, Pos { line: 3, col: 6 });
        assert!(matches!(&c.kind, Kind::Scalar(s, ScalarStyle::SingleQuoted) if s == "x"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
        assert_eq!(parse("").unwrap(), None);
    }

    #[test]
    fn anchors_resolve() {
        let root = parse("a: &x {k: v}\nb: *x\n").unwrap().unwrap();
        assert_eq!(map_get(&root, "b").kind, map_get(&root, "a").kind);
    }

    fn locate(text: &str, key: &str, needle: &str) -> Pos {
        let src = Source::new(text);
        let root = parse(text).unwrap().unwrap();
        let n = map_get(&root, key);
        let Kind::Scalar(v, _) = &n.kind else {
            panic!()
        };
        let target = v[..v.find(needle).unwrap()].chars().count();
        src.pos(value_to_source(&src, n, v, target))
    }

    #[test]
    fn value_positions_map_back_to_the_source() {
        // Plain: column of `foo` is 8.
        assert_eq!(
            locate("expr: a + foo\n", "expr", "foo"),
            Pos { line: 1, col: 11 }
        );
        assert_eq!(
            locate("expr: \"a + \\\"foo\"\n", "expr", "foo"),
            Pos { line: 1, col: 14 }
        );
        // Literal block: line 3, after the 4-space indentation and `  `.
        let text = "expr: |\n    sum(x)\n      > bad\n";
        assert_eq!(locate(text, "expr", "bad"), Pos { line: 3, col: 9 });
        // Folded plain scalar over two lines.
        let text = "expr: sum(x)\n  > bad\n";
        assert_eq!(locate(text, "expr", "bad"), Pos { line: 2, col: 5 });
    }
}
