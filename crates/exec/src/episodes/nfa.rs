//! Row pattern matching over steps: a `pattern("...")` tree compiled to a Thompson NFA and
//! run as a Pike VM, so matching never backtracks: O(steps x pattern) per search (times the
//! `within` length in steps when one is given, since threads are then told apart by start).
//!
//! Which match is reported: the leftmost start; at that start, the longest match when every
//! quantifier is greedy, otherwise the match the quantifiers prefer (greedy as many, reluctant
//! as few as possible, earlier alternatives first; the order a backtracking matcher would try
//! them in). Matches are never empty; the search resumes after the end of each match.

use std::collections::HashSet;

use tsq_parser::PatternNode;

/// Most instructions a compiled pattern may have (`{n,m}` copies its element).
const MAX_PROGRAM: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inst {
    /// Consume a step at which symbol `.0` holds.
    Sym(u8),
    /// Consume any step.
    Any,
    /// Continue at both; the first is preferred.
    Split(u32, u32),
    Jmp(u32),
    Match,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    insts: Vec<Inst>,
    nsyms: usize,
    longest: bool,
}

/// Per symbol within one match: first and last step index consumed, and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SymStat {
    pub first: usize,
    pub last: usize,
    pub count: u32,
}

/// A match: steps `start..end`, with per-symbol statistics (indexed like the symbol table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Match {
    pub start: usize,
    pub end: usize,
    pub stats: Vec<SymStat>,
}

struct Compiler<'a> {
    syms: &'a [String],
    insts: Vec<Inst>,
}

impl Compiler<'_> {
    fn push(&mut self, i: Inst) -> Result<u32, String> {
        if self.insts.len() >= MAX_PROGRAM {
            return Err(format!(
                "pattern too large: more than {MAX_PROGRAM} states after expanding repetitions"
            ));
        }
        self.insts.push(i);
        Ok((self.insts.len() - 1) as u32)
    }

    fn pc(&self) -> u32 {
        self.insts.len() as u32
    }

    fn node(&mut self, n: &PatternNode) -> Result<(), String> {
        match n {
            PatternNode::Sym(s) => {
                let Some(i) = self.syms.iter().position(|x| x == s) else {
                    return Err(format!("pattern symbol {s:?} is not defined"));
                };
                self.push(Inst::Sym(i as u8))?;
            }
            PatternNode::Any => {
                self.push(Inst::Any)?;
            }
            PatternNode::Concat(v) => {
                for x in v {
                    self.node(x)?;
                }
            }
            PatternNode::Alt(v) => {
                // Split(a, next) a Jmp(end) next: Split(b, next') b Jmp(end) ... last
                let mut jumps = Vec::new();
                for (k, x) in v.iter().enumerate() {
                    if k + 1 < v.len() {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.node(x)?;
                        jumps.push(self.push(Inst::Jmp(0))?);
                        let next = self.pc();
                        self.insts[split as usize] = Inst::Split(split + 1, next);
                    } else {
                        self.node(x)?;
                    }
                }
                let end = self.pc();
                for j in jumps {
                    self.insts[j as usize] = Inst::Jmp(end);
                }
            }
            PatternNode::Repeat {
                node,
                min,
                max,
                greedy,
            } => {
                for _ in 0..*min {
                    self.node(node)?;
                }
                let split = |body: u32, out: u32| {
                    if *greedy {
                        Inst::Split(body, out)
                    } else {
                        Inst::Split(out, body)
                    }
                };
                match max {
                    None => {
                        let l = self.push(Inst::Split(0, 0))?;
                        self.node(node)?;
                        self.push(Inst::Jmp(l))?;
                        let out = self.pc();
                        self.insts[l as usize] = split(l + 1, out);
                    }
                    Some(m) => {
                        let mut splits = Vec::new();
                        for _ in *min..*m {
                            splits.push(self.push(Inst::Split(0, 0))?);
                            self.node(node)?;
                        }
                        let out = self.pc();
                        for s in splits {
                            self.insts[s as usize] = split(s + 1, out);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Program {
    /// Compiles `tree` whose symbols are numbered by their position in `syms` (at most 64).
    pub fn compile(tree: &PatternNode, syms: &[String]) -> Result<Program, String> {
        if syms.len() > 64 {
            return Err("a pattern may define at most 64 symbols".into());
        }
        let mut c = Compiler {
            syms,
            insts: Vec::new(),
        };
        c.node(tree)?;
        c.push(Inst::Match)?;
        Ok(Program {
            insts: c.insts,
            nsyms: syms.len(),
            longest: !tree.has_reluctant(),
        })
    }

    /// Every non-overlapping match in `steps` (bit `i` of `steps[j]`: symbol `i` holds at step
    /// `j`), left to right. `max_len`: most steps a match may span.
    pub fn find_all(&self, steps: &[u64], max_len: Option<usize>) -> Vec<Match> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < steps.len() {
            match self.search(steps, pos, max_len) {
                Some(m) => {
                    pos = m.end;
                    out.push(m);
                }
                None => break,
            }
        }
        out
    }

    /// The first match starting at or after `from`.
    fn search(&self, steps: &[u64], from: usize, max_len: Option<usize>) -> Option<Match> {
        let n = steps.len();
        let mut vm = Vm {
            prog: self,
            by_start: max_len.is_some(),
            seen_pc: vec![u32::MAX; self.insts.len()],
            seen_pair: HashSet::new(),
            generation: 0,
            stack: Vec::new(),
        };
        let mut clist: Vec<Thread> = Vec::new();
        let mut best: Option<Match> = None;
        let mut j = from;
        vm.new_generation();
        loop {
            if best.is_none() && j < n {
                let t = Thread {
                    pc: 0,
                    start: j,
                    stats: vec![SymStat::default(); self.nsyms].into_boxed_slice(),
                };
                vm.add(&mut clist, t);
            }
            vm.new_generation();
            let mut nlist = Vec::new();
            for th in clist.drain(..) {
                match self.insts[th.pc as usize] {
                    Inst::Match => {
                        if th.start == j {
                            continue; // empty match
                        }
                        if self.longest {
                            let better = match &best {
                                None => true,
                                Some(b) => th.start < b.start || (th.start == b.start && j > b.end),
                            };
                            if better {
                                best = Some(Match {
                                    start: th.start,
                                    end: j,
                                    stats: th.stats.to_vec(),
                                });
                            }
                        } else {
                            best = Some(Match {
                                start: th.start,
                                end: j,
                                stats: th.stats.to_vec(),
                            });
                            break; // lower-priority threads are cut
                        }
                    }
                    Inst::Sym(b) => {
                        if j < n && steps[j] & (1u64 << b) != 0 && fits(max_len, th.start, j) {
                            let mut th = th;
                            let s = &mut th.stats[b as usize];
                            if s.count == 0 {
                                s.first = j;
                            }
                            s.last = j;
                            s.count += 1;
                            th.pc += 1;
                            vm.add(&mut nlist, th);
                        }
                    }
                    Inst::Any => {
                        if j < n && fits(max_len, th.start, j) {
                            let mut th = th;
                            th.pc += 1;
                            vm.add(&mut nlist, th);
                        }
                    }
                    Inst::Split(..) | Inst::Jmp(_) => {}
                }
            }
            if self.longest {
                if let Some(b) = &best {
                    let s = b.start;
                    nlist.retain(|t| t.start <= s);
                }
            }
            clist = nlist;
            j += 1;
            if j > n || (clist.is_empty() && best.is_some()) {
                break;
            }
        }
        best
    }
}

fn fits(max_len: Option<usize>, start: usize, j: usize) -> bool {
    max_len.is_none_or(|m| j + 1 - start <= m)
}

struct Thread {
    pc: u32,
    start: usize,
    stats: Box<[SymStat]>,
}

struct Vm<'p> {
    prog: &'p Program,
    /// With a length limit, threads at the same state but different starts differ (the later
    /// one may still fit), so they are told apart by (state, start).
    by_start: bool,
    seen_pc: Vec<u32>,
    seen_pair: HashSet<(u32, usize)>,
    generation: u32,
    stack: Vec<Thread>,
}

impl Vm<'_> {
    fn new_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == u32::MAX {
            self.seen_pc.iter_mut().for_each(|g| *g = u32::MAX);
            self.generation = 0;
        }
        self.seen_pair.clear();
    }

    /// Adds `t` and everything reachable from it without consuming a step, in priority order;
    /// a state already in the list (reached by a thread of higher priority) is skipped.
    fn add(&mut self, list: &mut Vec<Thread>, t: Thread) {
        self.stack.push(t);
        while let Some(t) = self.stack.pop() {
            let fresh = if self.by_start {
                self.seen_pair.insert((t.pc, t.start))
            } else {
                let g = &mut self.seen_pc[t.pc as usize];
                let fresh = *g != self.generation;
                *g = self.generation;
                fresh
            };
            if !fresh {
                continue;
            }
            match self.prog.insts[t.pc as usize] {
                Inst::Jmp(x) => self.stack.push(Thread { pc: x, ..t }),
                Inst::Split(x, y) => {
                    self.stack.push(Thread {
                        pc: y,
                        start: t.start,
                        stats: t.stats.clone(),
                    });
                    self.stack.push(Thread { pc: x, ..t });
                }
                _ => list.push(t),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `pattern` over a string where each char is a step holding the symbol of that
    /// (upper-case) letter, `_` holding none; returns the matches as (start, end).
    fn run(pattern: &str, input: &str, max_len: Option<usize>) -> Vec<(usize, usize)> {
        let tree = tsq_parser::parse_pattern(pattern).unwrap();
        let syms: Vec<String> = ('A'..='Z').map(|c| c.to_string()).collect();
        let p = Program::compile(&tree, &syms).unwrap();
        let steps: Vec<u64> = input
            .chars()
            .map(|c| {
                if c.is_ascii_uppercase() {
                    1u64 << (c as u8 - b'A')
                } else {
                    0
                }
            })
            .collect();
        p.find_all(&steps, max_len)
            .into_iter()
            .map(|m| (m.start, m.end))
            .collect()
    }

    #[test]
    fn leftmost_longest_for_greedy_patterns() {
        assert_eq!(run("A B+", "_ABBB_AB", None), vec![(1, 5), (6, 8)]);
        // Priority order would stop at "A" (A? takes it, then (A B)? fails); longest is AB.
        assert_eq!(run("A? (A B)?", "AB", None), vec![(0, 2)]);
        assert_eq!(run("A|A B", "AB", None), vec![(0, 2)]);
        assert_eq!(run("A{2,3}", "AAAAAAA", None), vec![(0, 3), (3, 6)]);
        assert_eq!(run("A{2}", "A_AA", None), vec![(2, 4)]);
        assert_eq!(run(". A", "BA", None), vec![(0, 2)]);
    }

    #[test]
    fn reluctant_quantifiers_prefer_fewer() {
        assert_eq!(run("A+?", "AAA", None), vec![(0, 1), (1, 2), (2, 3)]);
        assert_eq!(run("A .*? B", "A__B__B", None), vec![(0, 4)]);
        assert_eq!(run("A .* B", "A__B__B", None), vec![(0, 7)]);
        assert_eq!(run("A B{1,3}?", "ABBB", None), vec![(0, 2)]);
        assert_eq!(run("A?? B", "AB", None), vec![(0, 2)]);
    }

    #[test]
    fn never_empty_and_resumes_after_a_match() {
        assert_eq!(run("A*", "_AA_A", None), vec![(1, 3), (4, 5)]);
        assert_eq!(run("(A A)+", "AAAAA", None), vec![(0, 4)]);
    }

    #[test]
    fn within_limits_the_span() {
        // The only match from 0 spans 5 steps; with a limit of 4 it is rejected, and the
        // search finds none starting later either.
        assert_eq!(
            run("A .* B", "A___B", Some(4)),
            Vec::<(usize, usize)>::new()
        );
        assert_eq!(run("A .* B", "A___B", Some(5)), vec![(0, 5)]);
        // A later start still fits where the earlier one does not.
        assert_eq!(run("A+ B", "AAAAB", Some(3)), vec![(2, 5)]);
        assert_eq!(run("A .* B", "A_A_B", Some(3)), vec![(2, 5)]);
    }

    #[test]
    fn symbol_statistics() {
        let tree = tsq_parser::parse_pattern("A B+ A").unwrap();
        let syms = vec!["A".to_string(), "B".to_string()];
        let p = Program::compile(&tree, &syms).unwrap();
        let m = &p.find_all(&[0, 1, 2, 2, 1], None)[0];
        assert_eq!((m.start, m.end), (1, 5));
        assert_eq!(
            m.stats[0],
            SymStat {
                first: 1,
                last: 4,
                count: 2
            }
        );
        assert_eq!(
            m.stats[1],
            SymStat {
                first: 2,
                last: 3,
                count: 2
            }
        );
    }

    #[test]
    fn agrees_with_a_brute_force_matcher() {
        // Exhaustive check for greedy patterns: leftmost start, longest end, by trying every
        // (start, end) with a backtracking recogniser.
        fn accepts(n: &PatternNode, s: &[u8]) -> Vec<usize> {
            // All lengths of prefixes of s that n matches.
            match n {
                PatternNode::Sym(x) => {
                    if !s.is_empty() && s[0] == x.as_bytes()[0] {
                        vec![1]
                    } else {
                        vec![]
                    }
                }
                PatternNode::Any => {
                    if s.is_empty() {
                        vec![]
                    } else {
                        vec![1]
                    }
                }
                PatternNode::Concat(v) => {
                    let mut ends = vec![0usize];
                    for x in v {
                        let mut next = Vec::new();
                        for &e in &ends {
                            for l in accepts(x, &s[e..]) {
                                next.push(e + l);
                            }
                        }
                        next.sort();
                        next.dedup();
                        ends = next;
                    }
                    ends
                }
                PatternNode::Alt(v) => {
                    let mut all: Vec<usize> = v.iter().flat_map(|x| accepts(x, s)).collect();
                    all.sort();
                    all.dedup();
                    all
                }
                PatternNode::Repeat { node, min, max, .. } => {
                    let mut ends = vec![0usize];
                    let mut out = Vec::new();
                    let mut k = 0u32;
                    loop {
                        if k >= *min {
                            out.extend(ends.iter().copied());
                        }
                        if max.is_some_and(|m| k >= m) || ends.is_empty() || k > 20 {
                            break;
                        }
                        let mut next = Vec::new();
                        for &e in &ends {
                            for l in accepts(node, &s[e..]) {
                                if l > 0 {
                                    next.push(e + l);
                                }
                            }
                        }
                        next.sort();
                        next.dedup();
                        ends = next;
                        k += 1;
                    }
                    out.sort();
                    out.dedup();
                    out
                }
            }
        }
        let patterns = [
            "A B* A",
            "(A|B)+ C",
            "A? B{1,2} (A|C)*",
            ". A{2,}",
            "(A B|A)+ B?",
        ];
        let mut rng = 0x9e3779b97f4a7c15u64;
        for p in patterns {
            let tree = tsq_parser::parse_pattern(p).unwrap();
            for _ in 0..300 {
                let len = (rng % 9) as usize;
                let s: String = (0..len)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        ['A', 'B', 'C', '_'][(rng % 4) as usize]
                    })
                    .collect();
                rng = rng.wrapping_add(0x632be59bd9b4e019);
                let mut want = Vec::new();
                let b = s.as_bytes();
                let mut pos = 0;
                while pos < b.len() {
                    let mut found = None;
                    for st in pos..b.len() {
                        if let Some(&l) = accepts(&tree, &b[st..]).iter().filter(|&&l| l > 0).max()
                        {
                            found = Some((st, st + l));
                            break;
                        }
                    }
                    match found {
                        Some(m) => {
                            want.push(m);
                            pos = m.1;
                        }
                        None => break,
                    }
                }
                assert_eq!(run(p, &s, None), want, "pattern {p:?} on {s:?}");
            }
        }
    }
}
