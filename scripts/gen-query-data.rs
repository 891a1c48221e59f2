//! Writes a query benchmark's data set as text, or lists its benchmarked queries. Built by
//! scripts/bench-query-vs-prometheus.sh and scripts/bench-dashboard.sh with plain `rustc`, so it
//! needs no Cargo target of its own. Two data sets:
//! - `day`: benches/support/query_data.rs, 10,000 series over 24 h;
//! - `dashboard`: benches/support/dashboard_data.rs, 2,505 series of a demo service over 6 h.
//!
//! gen-query-data data START_MS FILE                   the day starting at START_MS (a UTC
//!                                                     midnight), as OpenMetrics
//! gen-query-data queries                              the day's queries, `name<TAB>promql`
//! gen-query-data dashboard-data START_MS FILE FORMAT  the dashboard's 6 h from START_MS (a
//!                                                     multiple of 6 h); FORMAT `openmetrics`
//!                                                     or `prometheus` (timestamps in ms)
//! gen-query-data dashboard-queries                    the dashboard's panels, likewise

#[path = "../benches/support/query_data.rs"]
mod query_data;

#[path = "../benches/support/dashboard_data.rs"]
mod dashboard_data;

use std::io::{BufWriter, Write};
use std::process::ExitCode;

fn write(
    file: &str,
    f: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<u64>,
) -> ExitCode {
    let written = std::fs::File::create(file).and_then(|file| {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let n = f(&mut out)?;
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

/// START_MS, which must be a multiple of `align` so the data fills one block window.
fn start(arg: &str, align: i64, what: &str) -> Option<i64> {
    match arg.parse::<i64>() {
        Ok(s) if s % align == 0 => Some(s),
        Ok(_) => {
            eprintln!("START_MS should be {what}, so the data fills one block");
            None
        }
        Err(_) => {
            eprintln!("START_MS must be an integer, got {arg:?}");
            None
        }
    }
}

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
        ["dashboard-queries"] => {
            for (name, q) in dashboard_data::QUERIES {
                println!("{name}\t{q}");
            }
            ExitCode::SUCCESS
        }
        ["data", s, file] => {
            let Some(s) = start(s, query_data::DAY_MS, "a UTC midnight") else {
                return ExitCode::FAILURE;
            };
            write(file, |out| query_data::write_openmetrics(s, out))
        }
        ["dashboard-data", s, file, format] => {
            let prometheus_text = match *format {
                "openmetrics" => false,
                "prometheus" => true,
                _ => {
                    eprintln!("FORMAT is openmetrics or prometheus, got {format:?}");
                    return ExitCode::from(2);
                }
            };
            let Some(s) = start(s, dashboard_data::SPAN_MS, "a multiple of 6 h") else {
                return ExitCode::FAILURE;
            };
            write(file, |out| {
                query_data::write_text(
                    |f| dashboard_data::all_series(s).into_iter().for_each(f),
                    prometheus_text,
                    out,
                )
            })
        }
        _ => {
            eprintln!(
                "usage: gen-query-data data START_MS FILE | queries\n       \
                 | dashboard-data START_MS FILE openmetrics|prometheus | dashboard-queries"
            );
            ExitCode::from(2)
        }
    }
}
