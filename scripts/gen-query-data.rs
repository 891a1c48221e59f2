//! Writes the query benchmark's day (benches/support/query_data.rs) as OpenMetrics text, or
//! lists the benchmarked queries. Built by scripts/bench-query-vs-prometheus.sh with plain
//! `rustc`, so it needs no Cargo target of its own.
//!
//! gen-query-data data START_MS FILE   the day starting at START_MS (a UTC midnight)
//! gen-query-data queries              one `name<TAB>promql` line per query

#[path = "../benches/support/query_data.rs"]
mod query_data;

use std::io::{BufWriter, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["queries"] => {
            for (name, q) in query_data::QUERIES {
                println!("{name}\t{q}");
            }
            ExitCode::SUCCESS
        }
        ["data", start, file] => {
            let Ok(start) = start.parse::<i64>() else {
                eprintln!("START_MS must be an integer, got {start:?}");
                return ExitCode::FAILURE;
            };
            if start % query_data::DAY_MS != 0 {
                eprintln!("START_MS should be a UTC midnight, so the day fills one 24h block");
                return ExitCode::FAILURE;
            }
            let written = std::fs::File::create(file).and_then(|f| {
                let mut out = BufWriter::with_capacity(1 << 20, f);
                let n = query_data::write_openmetrics(start, &mut out)?;
                out.flush()?;
                Ok(n)
            });
            match written {
                Ok(n) => {
                    eprintln!("wrote {n} samples to {file}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("writing {file}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("usage: gen-query-data data START_MS FILE | gen-query-data queries");
            ExitCode::from(2)
        }
    }
}
