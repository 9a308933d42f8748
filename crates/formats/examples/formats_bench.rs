//! Generation and parse throughput of the formats crate.
//!
//! ```text
//! cargo run --release -p tsq-formats --example formats_bench -- gen workload openmetrics /tmp/w.om [days]
//! cargo run --release -p tsq-formats --example formats_bench -- parse openmetrics /tmp/w.om
//! cargo run --release -p tsq-formats --example formats_bench -- stream workload [days]
//! ```

use std::time::Instant;
use tsq_formats::gen::{devops, workload, Dataset, DevopsParams, WorkloadParams};
use tsq_formats::{parse, Event, Format, ParseError, ParseOptions, SeriesCache};

fn dataset(name: &str, days: Option<u32>) -> Dataset {
    match name {
        "devops" => devops(&DevopsParams {
            days: days.unwrap_or(1),
            ..DevopsParams::default()
        }),
        _ => workload(&WorkloadParams {
            days: days.unwrap_or(7),
            ..WorkloadParams::default()
        }),
    }
}

/// CPU time of this thread, seconds (the machine is shared: wall time overstates).
fn cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|x| x.parse::<f64>().ok())
        })
        .map_or(0.0, |ns| ns / 1e9)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen") => {
            let ds = dataset(&args[1], args.get(4).and_then(|d| d.parse().ok()));
            let f = std::io::BufWriter::new(std::fs::File::create(&args[3]).expect("create"));
            let t = Instant::now();
            match args[2].as_str() {
                "influx" => drop(ds.write_influx(f).expect("write")),
                _ => drop(ds.write_openmetrics(f).expect("write")),
            }
            let side = format!("{}.json", args[3]);
            std::fs::write(
                &side,
                serde_json::to_string_pretty(&ds.sidecar_json()).expect("json"),
            )
            .expect("sidecar");
            eprintln!(
                "wrote {} ({} series) in {:.2?}",
                args[3],
                ds.series().len(),
                t.elapsed()
            );
        }
        Some("stream") => {
            let ds = dataset(&args[1], args.get(2).and_then(|d| d.parse().ok()));
            let t = cpu();
            let mut n = 0u64;
            let mut sum = 0.0;
            ds.for_each_sample(|_, _, v| {
                n += 1;
                sum += v;
                Ok::<(), ()>(())
            })
            .expect("stream");
            let el = cpu() - t;
            eprintln!(
                "{n} samples in {el:.2}s: {:.1} M samples/s (checksum {sum})",
                n as f64 / el / 1e6
            );
        }
        Some("parse") => {
            let format = Format::parse(&args[1]).expect("format");
            let input = std::fs::read(&args[2]).expect("read");
            let opts = ParseOptions::new(format);
            // 1. Parse only.
            let t = Instant::now();
            let c = cpu();
            let mut sum = 0.0;
            let s = parse(&input, &opts, |ev| {
                if let Event::Sample(r) = ev {
                    sum += r.value;
                }
                Ok::<(), std::convert::Infallible>(())
            })
            .expect("parse");
            let el = cpu() - c;
            eprintln!("wall {:.2?}", t.elapsed());
            eprintln!(
                "parse only (CPU time): {} lines, {} samples in {el:.2}s: {:.1} M lines/s, {:.1} M samples/s, {:.0} MB/s",
                s.lines,
                s.samples,
                s.lines as f64 / el / 1e6,
                s.samples as f64 / el / 1e6,
                input.len() as f64 / el / 1e6
            );
            // 2. Parse + series cache (std HashMap, SipHash) + Labels on a miss.
            let c = cpu();
            let mut cache: SeriesCache<u32> = SeriesCache::new();
            let mut ids = 0u64;
            let mut n_ids = 0u32;
            let mut next_id = || {
                n_ids += 1;
                n_ids
            };
            parse(&input, &opts, |ev| {
                if let Event::Sample(r) = ev {
                    let id = cache
                        .get_or_insert(r.series_key, |_labels| Ok::<u32, ParseError>(next_id()))
                        .expect("key");
                    ids += u64::from(id);
                }
                Ok::<(), std::convert::Infallible>(())
            })
            .expect("parse");
            let el = cpu() - c;
            eprintln!(
                "parse + SeriesCache (CPU time): {} series, {:.1} M samples/s ({sum} {ids})",
                cache.len(),
                s.samples as f64 / el / 1e6
            );
        }
        _ => eprintln!("usage: formats_bench gen|parse|stream ..."),
    }
}
