//! The manifest: which blocks are live, tombstones, metric metadata. Replaced atomically
//! (temporary file, sync, rename, directory sync) whenever one of those changes.
//!
//! A line-oriented text file (docs/format/manifest.md), closed by a CRC32 line over every
//! byte before it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::labels::{MatchOp, Matcher, MetricKind, MetricMeta, MetricType};
use crate::vfs::Vfs;

/// File name inside the database directory.
pub const MANIFEST: &str = "MANIFEST";
const FIRST_LINE: &str = "tsq-manifest 1";

/// A deletion that still applies to some blocks.
#[derive(Debug, Clone)]
pub struct Tombstone {
    /// Applies to blocks whose sequence number is smaller.
    pub seq: u64,
    /// Which series.
    pub matchers: Vec<Matcher>,
    /// First deleted timestamp.
    pub mint: i64,
    /// Last deleted timestamp.
    pub maxt: i64,
}

/// The manifest's contents.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Next sequence number to hand out (blocks and deletions share the counter).
    pub next_seq: u64,
    /// Live blocks: (sequence number, file name), in sequence order.
    pub blocks: Vec<(u64, String)>,
    /// Tombstones.
    pub tombstones: Vec<Tombstone>,
    /// Metric metadata by metric name.
    pub meta: BTreeMap<String, MetricMeta>,
}

fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Splits a line into words and quoted strings.
fn tokens(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        'n' => s.push('\n'),
                        c => s.push(c),
                    },
                    c => s.push(c),
                }
            }
            out.push(s);
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            out.push(s);
        }
    }
    Some(out)
}

impl Manifest {
    /// Sets a metric's metadata; metadata equal to the default removes the entry (the
    /// default is what a metric without an entry has, and no line is stored for it).
    pub fn set_meta(&mut self, metric: String, meta: MetricMeta) {
        if meta.is_default() {
            self.meta.remove(&metric);
        } else {
            self.meta.insert(metric, meta);
        }
    }

    /// The text form.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        s.push_str(FIRST_LINE);
        s.push('\n');
        s.push_str(&format!("next-seq {}\n", self.next_seq));
        for (seq, name) in &self.blocks {
            s.push_str(&format!("block {seq} {name}\n"));
        }
        for t in &self.tombstones {
            s.push_str(&format!(
                "tombstone {} {} {} {}",
                t.seq,
                t.mint,
                t.maxt,
                t.matchers.len()
            ));
            for m in &t.matchers {
                s.push(' ');
                s.push_str(match m.op {
                    MatchOp::Equal => "=",
                    MatchOp::NotEqual => "!=",
                    MatchOp::Regex => "=~",
                    MatchOp::NotRegex => "!~",
                });
                s.push(' ');
                quote(&mut s, &m.name);
                s.push(' ');
                quote(&mut s, &m.value);
            }
            s.push('\n');
        }
        for (name, m) in self.meta.iter().filter(|(_, m)| !m.is_default()) {
            s.push_str("meta ");
            quote(&mut s, name);
            s.push_str(&format!(" {} {} ", m.metric_type.as_str(), m.kind.as_str()));
            quote(&mut s, &m.unit);
            s.push(' ');
            quote(&mut s, &m.help);
            s.push('\n');
        }
        let crc = crc32fast::hash(s.as_bytes());
        s.push_str(&format!("crc {crc:08x}\n"));
        s
    }

    /// Parses the text form, verifying the checksum.
    pub fn decode(path: &Path, data: &[u8]) -> Result<Manifest> {
        let bad = |line: usize, why: &str| {
            Error::corrupted(path, line as u64, format!("line {line}: {why}"))
        };
        let text = std::str::from_utf8(data).map_err(|_| bad(0, "not UTF-8"))?;
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or_else(|| bad(1, "empty"))?;
        let (body, last) = text.split_at(body_end);
        // Exactly `crc <8 lower-case hex digits>\n`: the line is outside the checksum, so no
        // variation of it (extra whitespace, a damaged newline) may pass.
        let stored = last
            .strip_prefix("crc ")
            .and_then(|h| h.strip_suffix('\n'))
            .filter(|h| h.len() == 8 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                bad(
                    body.lines().count() + 1,
                    "missing or damaged crc line (truncated?)",
                )
            })?;
        let got = crc32fast::hash(body.as_bytes());
        if got != stored {
            return Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                offset: 0,
                what: "manifest".into(),
                expected: stored,
                got,
            });
        }
        let mut m = Manifest::default();
        for (i, line) in body.lines().enumerate() {
            let n = i + 1;
            if n == 1 {
                if line != FIRST_LINE {
                    return Err(bad(n, "unknown manifest version"));
                }
                continue;
            }
            let t = tokens(line).ok_or_else(|| bad(n, "unterminated string"))?;
            let num = |k: usize| -> Result<i64> {
                t.get(k)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad(n, "expected a number"))
            };
            match t.first().map(String::as_str) {
                Some("next-seq") => m.next_seq = num(1)? as u64,
                Some("block") => {
                    let name = t.get(2).ok_or_else(|| bad(n, "missing block name"))?;
                    m.blocks.push((num(1)? as u64, name.clone()));
                }
                Some("tombstone") => {
                    let count = num(4)? as usize;
                    if t.len() != 5 + count * 3 {
                        return Err(bad(n, "wrong matcher count"));
                    }
                    let mut matchers = Vec::new();
                    for k in 0..count {
                        let op = match t[5 + k * 3].as_str() {
                            "=" => MatchOp::Equal,
                            "!=" => MatchOp::NotEqual,
                            "=~" => MatchOp::Regex,
                            "!~" => MatchOp::NotRegex,
                            _ => return Err(bad(n, "bad matcher operator")),
                        };
                        let mm = Matcher::new(op, &t[6 + k * 3], &t[7 + k * 3], true)
                            .map_err(|_| bad(n, "bad regex"))?;
                        matchers.push(mm);
                    }
                    m.tombstones.push(Tombstone {
                        seq: num(1)? as u64,
                        mint: num(2)?,
                        maxt: num(3)?,
                        matchers,
                    });
                }
                Some("meta") => {
                    if t.len() != 6 {
                        return Err(bad(n, "meta needs 5 fields"));
                    }
                    let metric_type =
                        MetricType::parse(&t[2]).ok_or_else(|| bad(n, "bad metric type"))?;
                    let kind = match t[3].as_str() {
                        "kpi" => MetricKind::Kpi,
                        "health" => MetricKind::Health,
                        _ => return Err(bad(n, "bad metric kind")),
                    };
                    // Lines with the default (written before 2026-11-28) are dropped.
                    m.set_meta(
                        t[1].clone(),
                        MetricMeta {
                            metric_type,
                            kind,
                            unit: t[4].clone(),
                            help: t[5].clone(),
                        },
                    );
                }
                _ => return Err(bad(n, "unknown line")),
            }
        }
        Ok(m)
    }

    /// Reads the manifest of a database directory; `None` when there is none yet.
    pub fn load(vfs: &dyn Vfs, dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST);
        if !vfs.exists(&path) {
            return Ok(None);
        }
        let data = vfs.read(&path).map_err(|e| Error::io("read", &path, e))?;
        Manifest::decode(&path, &data).map(Some)
    }

    /// Writes the manifest atomically and durably.
    pub fn store(&self, vfs: &dyn Vfs, dir: &Path) -> Result<()> {
        let tmp = dir.join("MANIFEST.tmp");
        let path = dir.join(MANIFEST);
        let mut f = vfs.create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(self.encode().as_bytes())
            .map_err(|e| Error::io("write", &tmp, e))?;
        f.sync().map_err(|e| Error::io("sync", &tmp, e))?;
        drop(f);
        vfs.rename(&tmp, &path)
            .map_err(|e| Error::io("rename", &tmp, e))?;
        vfs.sync_dir(dir).map_err(|e| Error::io("sync", dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detected() {
        let mut m = Manifest {
            next_seq: 9,
            ..Default::default()
        };
        m.blocks.push((3, "0000000000000003.blk".into()));
        m.tombstones.push(Tombstone {
            seq: 7,
            mint: -5,
            maxt: 10,
            matchers: vec![Matcher::new(MatchOp::Regex, "job", "a \"b\"\n.*", true).unwrap()],
        });
        m.meta.insert(
            "up".into(),
            MetricMeta {
                metric_type: MetricType::Gauge,
                kind: MetricKind::Kpi,
                unit: "".into(),
                help: "is \"up\"".into(),
            },
        );
        let text = m.encode();
        let back = Manifest::decode(Path::new("M"), text.as_bytes()).unwrap();
        assert_eq!(back.encode(), text);
        assert_eq!(back.meta, m.meta);
        // Metadata equal to the default takes no line, and setting it removes an entry.
        let mut d = m.clone();
        d.meta.insert("plain".into(), MetricMeta::default());
        assert_eq!(d.encode(), text);
        d.set_meta("up".into(), MetricMeta::default());
        assert!(!d.meta.contains_key("up"));
        assert!(!d.encode().contains("meta "));
        assert_eq!(back.tombstones[0].matchers[0].value, "a \"b\"\n.*");
        let mut bad = text.clone().into_bytes();
        bad[20] ^= 1;
        assert!(Manifest::decode(Path::new("M"), &bad).is_err());
        assert!(Manifest::decode(Path::new("M"), &text.as_bytes()[..text.len() - 5]).is_err());
    }
}
