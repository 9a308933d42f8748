//! `tsq repl`: interactive queries.
//!
//! On a terminal (standard input and output both TTYs) lines are read with `rustyline`:
//! line editing, a persistent history file and TAB completion of functions, aggregation
//! operators, keywords, metric names, label names and values, and the dot-commands.
//! Otherwise (a pipe, a file, `TERM=dumb` is left to rustyline) lines are read plainly from
//! standard input, with the same commands and the same output.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use tsq::exec::Engine;
use tsq::parser::printer::aggregate_op_str;
use tsq::parser::AggregateOp;
use tsq::storage::Db;

use crate::output::{self, OutputFormat};
use crate::query::{engine, evaluate, QuerySpec};
use crate::timearg::{now_ms, parse_duration, parse_time};

/// Arguments of `tsq repl`.
#[derive(Args, Debug)]
pub struct ReplArgs {
    /// PromQL semantics.
    #[arg(long, default_value = "promql3", value_parser = ["promql3", "prometheus-2.42"])]
    profile: String,
    /// History file (on a terminal). Default: $TSQ_HISTORY, else
    /// $XDG_STATE_HOME/tsq/history, else ~/.tsq_history.
    #[arg(long, value_name = "FILE", conflicts_with = "no_history")]
    history: Option<PathBuf>,
    /// Keep no history file (also: TSQ_HISTORY set to the empty string).
    #[arg(long)]
    no_history: bool,
}

const HELP: &str = "Enter a PromQL expression; end a line with \\ to continue it.
  .help                 this text
  .format FMT           table | csv | json | prom-json | chart
  .time T               evaluate instant queries at T (RFC 3339, Unix seconds, now, now-1h)
  .range START END STEP range queries (e.g. .range now-1h now 1m); .range off to stop
  .quit                 leave";

/// The dot-commands, for completion.
const DOT_COMMANDS: &[&str] = &[".help", ".format", ".time", ".range", ".quit", ".exit"];

/// The output formats `.format` takes.
const FORMATS: &[&str] = &["table", "csv", "json", "prom-json", "chart"];

/// PromQL keywords and binary operators spelled as words.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "start()",
    "end()",
    "inf",
    "nan",
    "seasons",
    "smoothed",
    "anchored",
    "within",
    "for",
];

/// Keywords after which a parenthesis holds label names.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The state of a session: what the dot-commands set.
struct Session<'a> {
    db: &'a Db,
    engine: Engine,
    format: OutputFormat,
    time: Option<i64>,
    range: Option<(i64, i64, i64)>,
}

/// What to do after one input.
enum Flow {
    Continue,
    Quit,
}

impl Session<'_> {
    /// Runs one complete input (a dot-command or an expression), printing to `out`.
    fn dispatch(&mut self, input: &str, out: &mut impl Write) -> Result<Flow> {
        let input = input.trim();
        if input.is_empty() {
            return Ok(Flow::Continue);
        }
        let mut words = input.split_whitespace();
        match words.next() {
            Some(".quit") | Some(".exit") => return Ok(Flow::Quit),
            Some(".help") => writeln!(out, "{HELP}")?,
            Some(".format") => match words
                .next()
                .map(|f| <OutputFormat as clap::ValueEnum>::from_str(f, true))
            {
                Some(Ok(f)) => self.format = f,
                _ => writeln!(out, "formats: table, csv, json, prom-json, chart")?,
            },
            Some(".time") => match words.next().map(parse_time) {
                Some(Ok(t)) => self.time = Some(t),
                Some(Err(e)) => writeln!(out, "{e}")?,
                None => self.time = None,
            },
            Some(".range") => {
                let w: Vec<&str> = words.collect();
                match w.as_slice() {
                    ["off"] => self.range = None,
                    [s, e, st] => match (parse_time(s), parse_time(e), parse_duration(st)) {
                        (Ok(s), Ok(e), Ok(st)) => self.range = Some((s, e, st)),
                        _ => writeln!(out, "usage: .range START END STEP")?,
                    },
                    _ => writeln!(out, "usage: .range START END STEP | .range off")?,
                }
            }
            Some(cmd) if cmd.starts_with('.') => {
                writeln!(out, "unknown command {cmd}; .help lists them")?
            }
            _ => {
                let spec = QuerySpec {
                    expr: input.to_string(),
                    range: self.range,
                    time: self.time.unwrap_or_else(now_ms),
                };
                match evaluate(self.db, &self.engine, &spec) {
                    Ok(res) => output::render(out, &res, self.format, &spec, None)?,
                    Err(e) => writeln!(out, "{e:#}")?,
                }
            }
        }
        Ok(Flow::Continue)
    }
}

/// Runs `tsq repl`: rustyline on a terminal, plain lines from standard input otherwise.
pub fn run(db_path: &Path, args: ReplArgs) -> Result<ExitCode> {
    let db = crate::open_ro(db_path)?;
    let mut session = Session {
        db: &db,
        engine: engine(&args.profile, "5m")?,
        format: OutputFormat::Table,
        time: None,
        range: None,
    };
    eprintln!("tsq repl on {} (.help for help)", db_path.display());
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        run_terminal(&mut session, history_path(&args))
    } else {
        run_plain(&mut session)
    }
}

/// Lines from standard input as they come (pipes, files, tests).
fn run_plain(session: &mut Session<'_>) -> Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let mut buf = String::new();
    loop {
        write!(out, "{}", if buf.is_empty() { "tsq> " } else { "...> " })?;
        out.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if let Some(cont) = line.strip_suffix('\\') {
            buf.push_str(cont);
            buf.push('\n');
            continue;
        }
        buf.push_str(line);
        let input = std::mem::take(&mut buf);
        if let Flow::Quit = session.dispatch(&input, &mut out)? {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the history is kept, if anywhere: `--no-history` or an empty `TSQ_HISTORY` keep
/// none; otherwise `--history`, `TSQ_HISTORY`, `$XDG_STATE_HOME/tsq/history`, `~/.tsq_history`.
fn history_path(args: &ReplArgs) -> Option<PathBuf> {
    if args.no_history {
        return None;
    }
    if let Some(p) = &args.history {
        return Some(p.clone());
    }
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(v) = std::env::var_os("TSQ_HISTORY") {
        return (!v.is_empty()).then(|| PathBuf::from(v));
    }
    if let Some(state) = nonempty("XDG_STATE_HOME") {
        return Some(PathBuf::from(state).join("tsq").join("history"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".tsq_history"))
}

/// Lines read with rustyline: editing, history, completion.
fn run_terminal(session: &mut Session<'_>, history: Option<PathBuf>) -> Result<ExitCode> {
    let config = Config::builder()
        .max_history_size(10_000)?
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut rl: Editor<ReplHelper<'_>, DefaultHistory> = Editor::with_config(config)?;
    rl.set_helper(Some(ReplHelper::new(session.db)));
    if let Some(path) = &history {
        match rl.load_history(path) {
            Ok(()) => {}
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("warning: history {}: {e}", path.display()),
        }
    }
    let mut history_ok = true;
    let mut out = std::io::stdout();
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() { "tsq> " } else { "...> " };
        let line = match rl.readline(prompt) {
            Ok(line) => line,
            // Ctrl-C drops the input being typed, as in a shell.
            Err(ReadlineError::Interrupted) => {
                buf.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        if let Some(cont) = line.strip_suffix('\\') {
            buf.push_str(cont);
            buf.push('\n');
            continue;
        }
        buf.push_str(&line);
        let input = std::mem::take(&mut buf);
        if !input.trim().is_empty() {
            let _ = rl.add_history_entry(input.as_str());
            // Appended at once, so that a killed session keeps what it was asked.
            if let (Some(path), true) = (&history, history_ok) {
                if let Err(e) = append_history(&mut rl, path) {
                    eprintln!("warning: history {}: {e} (not saved)", path.display());
                    history_ok = false;
                }
            }
        }
        if let Flow::Quit = session.dispatch(&input, &mut out)? {
            break;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn append_history(rl: &mut Editor<ReplHelper<'_>, DefaultHistory>, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    rl.append_history(path)?;
    Ok(())
}

/// TAB completion from the function table, the grammar's words and the database's labels.
struct ReplHelper<'a> {
    db: &'a Db,
    /// Label values (and `__name__`'s, the metric names) asked so far; the database is a
    /// read-only snapshot, so they do not change during the session.
    values: RefCell<HashMap<String, Vec<String>>>,
    names: RefCell<Option<Vec<String>>>,
}

impl<'a> ReplHelper<'a> {
    fn new(db: &'a Db) -> Self {
        ReplHelper {
            db,
            values: RefCell::new(HashMap::new()),
            names: RefCell::new(None),
        }
    }

    fn label_names(&self) -> Vec<String> {
        self.names
            .borrow_mut()
            .get_or_insert_with(|| self.db.label_names().unwrap_or_default())
            .clone()
    }

    fn label_values(&self, name: &str) -> Vec<String> {
        self.values
            .borrow_mut()
            .entry(name.to_string())
            .or_insert_with(|| self.db.label_values(name).unwrap_or_default())
            .clone()
    }

    /// The candidates for the text before the cursor: (start of the replaced part, pairs).
    fn candidates(&self, before: &str) -> (usize, Vec<Pair>) {
        let trimmed = before.trim_start();
        if trimmed.starts_with('.') {
            return complete_dot_command(before);
        }
        let scan = scan(before);
        if let Some((quote_at, quote)) = scan.open_string {
            // Inside a quoted label value: `name op "prefix`.
            if scan.stack.last().map(|(c, _)| *c) != Some('{') {
                return (before.len(), Vec::new());
            }
            let Some(label) = label_before_operator(&before[..quote_at]) else {
                return (before.len(), Vec::new());
            };
            let prefix = &before[quote_at + 1..];
            let pairs = self
                .label_values(label)
                .into_iter()
                .filter(|v| v.starts_with(prefix))
                .map(|v| {
                    let mut r = escape(&v, quote);
                    r.push(quote);
                    Pair {
                        display: v,
                        replacement: r,
                    }
                })
                .collect();
            return (quote_at + 1, pairs);
        }
        let start = word_start(before);
        let word = &before[start..];
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            return (start, Vec::new());
        }
        let label_context = match scan.stack.last() {
            Some(('{', _)) => true,
            Some(('(', at)) => {
                let head = before[..*at].trim_end();
                let kw = &head[word_start(head)..];
                LABEL_LIST_KEYWORDS
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(kw))
            }
            Some(('[', _)) => return (start, Vec::new()),
            _ => false,
        };
        let mut pairs: Vec<Pair> = Vec::new();
        let mut add = |name: &str, suffix: &str| {
            if name.starts_with(word) {
                pairs.push(Pair {
                    display: format!("{name}{suffix}"),
                    replacement: format!("{name}{suffix}"),
                });
            }
        };
        if label_context {
            for n in self.label_names() {
                add(&n, "");
            }
        } else {
            for f in tsq::parser::functions() {
                add(f.name, "(");
            }
            for op in &AggregateOp::ALL {
                add(aggregate_op_str(*op), "");
            }
            for k in KEYWORDS {
                add(k, "");
            }
            for m in self.label_values("__name__") {
                add(&m, "");
            }
        }
        pairs.sort_by(|a, b| a.replacement.cmp(&b.replacement));
        pairs.dedup_by(|a, b| a.replacement == b.replacement);
        (start, pairs)
    }
}

fn complete_dot_command(before: &str) -> (usize, Vec<Pair>) {
    let lead = before.len() - before.trim_start().len();
    let rest = &before[lead..];
    let pairs = |words: &[&str], prefix: &str, suffix: &str| -> Vec<Pair> {
        words
            .iter()
            .filter(|w| w.starts_with(prefix))
            .map(|w| Pair {
                display: w.to_string(),
                replacement: format!("{w}{suffix}"),
            })
            .collect()
    };
    match rest.split_once(char::is_whitespace) {
        None => (lead, pairs(DOT_COMMANDS, rest, "")),
        Some((cmd, args)) => {
            let args_at = before.len() - args.len();
            let arg_lead = args.len() - args.trim_start().len();
            let arg = &args[arg_lead..];
            if arg.contains(char::is_whitespace) {
                return (before.len(), Vec::new());
            }
            let words: &[&str] = match cmd {
                ".format" => FORMATS,
                ".range" => &["off", "now"],
                ".time" => &["now"],
                _ => &[],
            };
            (args_at + arg_lead, pairs(words, arg, ""))
        }
    }
}

/// Where the identifier (metric, label, function, keyword) that ends `s` begins.
fn word_start(s: &str) -> usize {
    s.char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
        .last()
        .map_or(s.len(), |(i, _)| i)
}

/// The label name in `s` = `... name op ` (op one of `=`, `!=`, `=~`, `!~`).
fn label_before_operator(s: &str) -> Option<&str> {
    let s = s.trim_end();
    let s = ["=~", "!~", "!=", "="]
        .iter()
        .find_map(|op| s.strip_suffix(op))?
        .trim_end();
    let name = &s[word_start(s)..];
    (!name.is_empty()).then_some(name)
}

fn escape(value: &str, quote: char) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Brackets and strings open at the end of a partial expression.
struct Scan {
    /// The unclosed brackets, innermost last, with their byte offsets.
    stack: Vec<(char, usize)>,
    /// An unclosed string literal: where its quote is, and which quote.
    open_string: Option<(usize, char)>,
}

fn scan(s: &str) -> Scan {
    let mut stack = Vec::new();
    let mut open_string: Option<(usize, char)> = None;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if let Some((_, q)) = open_string {
            if c == '\\' && q != '`' {
                chars.next();
            } else if c == q {
                open_string = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => open_string = Some((i, c)),
            '#' => {
                // A comment runs to the end of the line.
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' | '{' | '[' => stack.push((c, i)),
            ')' | '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
    }
    Scan { stack, open_string }
}

impl Completer for ReplHelper<'_> {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(self.candidates(&line[..pos]))
    }
}

impl Hinter for ReplHelper<'_> {
    type Hint = String;
}

impl Highlighter for ReplHelper<'_> {}

impl Validator for ReplHelper<'_> {}

impl Helper for ReplHelper<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper_db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut app = db.appender();
        for (svc, code) in [("api", "200"), ("api", "5xx"), ("checkout", "200")] {
            let r = app
                .series_ref(&tsq::storage::Labels::new([
                    ("__name__", "http_requests_total"),
                    ("service", svc),
                    ("code", code),
                ]))
                .unwrap();
            app.add(r, 1000, 1.0);
        }
        app.commit().unwrap();
        (dir, db)
    }

    fn complete(h: &ReplHelper<'_>, before: &str) -> (usize, Vec<String>) {
        let (start, pairs) = h.candidates(before);
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn completes_by_context() {
        let (_dir, db) = helper_db();
        let h = ReplHelper::new(&db);
        assert_eq!(
            complete(&h, "label_rep"),
            (0, vec!["label_replace(".to_string()])
        );
        assert_eq!(
            complete(&h, "sum(rate(http_req"),
            (9, vec!["http_requests_total".to_string()])
        );
        let (_, agg) = complete(&h, "count");
        assert!(agg.contains(&"count".to_string()), "{agg:?}");
        assert!(agg.contains(&"count_values".to_string()), "{agg:?}");
        assert!(agg.contains(&"count_over_time(".to_string()), "{agg:?}");
        assert_eq!(
            complete(&h, "http_requests_total{serv"),
            (20, vec!["service".to_string()])
        );
        assert_eq!(
            complete(&h, "http_requests_total{service=\"ch"),
            (29, vec!["checkout\"".to_string()])
        );
        assert_eq!(
            complete(&h, "http_requests_total{code!~'"),
            (27, vec!["200'".to_string(), "5xx'".to_string()])
        );
        assert_eq!(complete(&h, "sum by (se"), (8, vec!["service".to_string()]));
        assert_eq!(complete(&h, "sum(x) witho").1, vec!["without".to_string()]);
        assert_eq!(complete(&h, "rate(x[5"), (7, vec![]));
        assert_eq!(complete(&h, ".fo"), (0, vec![".format".to_string()]));
        assert_eq!(
            complete(&h, ".format pr"),
            (8, vec!["prom-json".to_string()])
        );
        assert_eq!(
            complete(&h, "x{a=\"{\"} + foo{b=\"").1,
            Vec::<String>::new()
        );
    }

    #[test]
    fn history_path_follows_flags() {
        let args = |history: Option<&str>, no_history| ReplArgs {
            profile: "promql3".into(),
            history: history.map(PathBuf::from),
            no_history,
        };
        assert_eq!(history_path(&args(Some("/x"), true)), None);
        assert_eq!(
            history_path(&args(Some("/x/h"), false)),
            Some(PathBuf::from("/x/h"))
        );
    }
}
