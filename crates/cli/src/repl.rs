//! `tsq repl`: interactive queries.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::output::{self, OutputFormat};
use crate::query::{engine, evaluate, QuerySpec};
use crate::timearg::{now_ms, parse_duration, parse_time};

/// Arguments of `tsq repl`.
#[derive(Args, Debug)]
pub struct ReplArgs {
    /// PromQL semantics.
    #[arg(long, default_value = "promql3", value_parser = ["promql3", "prometheus-2.42"])]
    profile: String,
}

const HELP: &str = "Enter a PromQL expression; end a line with \\ to continue it.
  .help                 this text
  .format FMT           table | csv | json | prom-json | chart
  .time T               evaluate instant queries at T (RFC 3339, Unix seconds, now, now-1h)
  .range START END STEP range queries (e.g. .range now-1h now 1m); .range off to stop
  .quit                 leave";

pub fn run(db_path: &Path, args: ReplArgs) -> Result<ExitCode> {
    let db = crate::open_ro(db_path)?;
    let engine = engine(&args.profile, "5m")?;
    let mut format = OutputFormat::Table;
    let mut time: Option<i64> = None;
    let mut range: Option<(i64, i64, i64)> = None;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let mut buf = String::new();
    eprintln!("tsq repl on {} (.help for help)", db_path.display());
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
        let input = input.trim();
        if input.is_empty() {
            continue;
        }
        let mut words = input.split_whitespace();
        match words.next() {
            Some(".quit") | Some(".exit") => break,
            Some(".help") => println!("{HELP}"),
            Some(".format") => match words
                .next()
                .map(|f| <OutputFormat as clap::ValueEnum>::from_str(f, true))
            {
                Some(Ok(f)) => format = f,
                _ => println!("formats: table, csv, json, prom-json, chart"),
            },
            Some(".time") => match words.next().map(parse_time) {
                Some(Ok(t)) => time = Some(t),
                Some(Err(e)) => println!("{e}"),
                None => time = None,
            },
            Some(".range") => {
                let w: Vec<&str> = words.collect();
                match w.as_slice() {
                    ["off"] => range = None,
                    [s, e, st] => match (parse_time(s), parse_time(e), parse_duration(st)) {
                        (Ok(s), Ok(e), Ok(st)) => range = Some((s, e, st)),
                        _ => println!("usage: .range START END STEP"),
                    },
                    _ => println!("usage: .range START END STEP | .range off"),
                }
            }
            Some(cmd) if cmd.starts_with('.') => {
                println!("unknown command {cmd}; .help lists them")
            }
            _ => {
                let spec = QuerySpec {
                    expr: input.to_string(),
                    range,
                    time: time.unwrap_or_else(now_ms),
                };
                match evaluate(&db, &engine, &spec) {
                    Ok(res) => output::render(&mut out, &res, format, &spec, None)?,
                    Err(e) => println!("{e:#}"),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
