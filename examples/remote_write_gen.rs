//! Pushes a synthetic WAL shape to a remote-write receiver (tidemark's or Prometheus's), for
//! scripts/bench-replay.sh: SERIES series with a sample every INTERVAL seconds over HOURS hours
//! ending at END_MS, sent in time order (every series gets its samples of one window before any
//! series gets the next window's), so a receiver that refuses samples far behind its newest one
//! (Prometheus refuses those older than half a block behind) takes all of them.
//!
//! The same arguments produce the same bodies byte for byte, so two receivers fed by two runs
//! hold the same shape. Values: a third of the series are counters, a third constant gauges and
//! a third gauges that move on every sample, so the WAL compresses like a real one would.
//!
//! Usage: remote_write_gen HOST:PORT PATH SERIES HOURS INTERVAL_S END_MS
//! Environment: WINDOW=20 samples per series per request, BATCH=5000 series per request,
//! SENDERS=2 concurrent connections.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Instant;

use prost::Message;
use tidemark::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

struct Shape {
    addr: String,
    path: String,
    series: u64,
    steps: u64,
    interval_ms: i64,
    start_ms: i64,
    window: u64,
    batch: u64,
    senders: u64,
}

fn env_u64(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name} must be a positive integer, got {v:?}")),
        Err(_) => Ok(default),
    }
}

fn parse() -> Result<Shape, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [addr, path, series, hours, interval, end] = a.as_slice() else {
        return Err("usage: remote_write_gen HOST:PORT PATH SERIES HOURS INTERVAL_S END_MS".into());
    };
    let num = |s: &str, what: &str| -> Result<u64, String> {
        s.parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{what} must be a positive integer, got {s:?}"))
    };
    let series = num(series, "SERIES")?;
    let hours = num(hours, "HOURS")?;
    let interval = num(interval, "INTERVAL_S")?;
    let end: i64 = end
        .parse()
        .map_err(|_| format!("END_MS must be an integer, got {end:?}"))?;
    let steps = hours * 3600 / interval;
    let interval_ms = (interval * 1000) as i64;
    Ok(Shape {
        addr: addr.clone(),
        path: path.clone(),
        series,
        steps,
        interval_ms,
        start_ms: end - (steps as i64 - 1) * interval_ms,
        window: env_u64("WINDOW", 20)?,
        batch: env_u64("BATCH", 5000)?,
        senders: env_u64("SENDERS", 2)?,
    })
}

#[path = "support/replay_shape.rs"]
mod replay_shape;
use replay_shape::value;

fn labels(i: u64) -> Vec<Label> {
    replay_shape::label_pairs(i)
        .into_iter()
        .map(|(name, value)| Label {
            name: name.into(),
            value,
        })
        .collect()
}

/// One request: series `lo..hi`, steps `s0..s1`.
fn body(sh: &Shape, lo: u64, hi: u64, s0: u64, s1: u64) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: (lo..hi)
            .map(|i| TimeSeries {
                labels: labels(i),
                samples: (s0..s1)
                    .map(|s| Sample {
                        value: value(i, s),
                        timestamp: sh.start_ms + s as i64 * sh.interval_ms,
                    })
                    .collect(),
                exemplars: Vec::new(),
                histograms: Vec::new(),
            })
            .collect(),
        metadata: Vec::new(),
    };
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

fn post(sh: &Shape, body: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect(&sh.addr).map_err(|e| format!("connect {}: {e}", sh.addr))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        sh.path,
        sh.addr,
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| format!("send: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    let status = text.split(' ').nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(format!(
            "answer: {}",
            text.chars().take(600).collect::<String>()
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let sh = match parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let began = Instant::now();
    let batches: Vec<(u64, u64)> = (0..sh.series)
        .step_by(sh.batch as usize)
        .map(|lo| (lo, (lo + sh.batch).min(sh.series)))
        .collect();
    let mut s0 = 0;
    while s0 < sh.steps {
        let s1 = (s0 + sh.window).min(sh.steps);
        // Every sender takes every SENDERS-th batch of this window; the window ends when all do.
        let failed = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..sh.senders)
                .map(|k| {
                    let (sh, batches) = (&sh, &batches);
                    scope.spawn(move || {
                        for (lo, hi) in batches.iter().skip(k as usize).step_by(sh.senders as usize)
                        {
                            post(sh, &body(sh, *lo, *hi, s0, s1))?;
                        }
                        Ok::<(), String>(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("sender panicked".into()))
                        .err()
                })
                .next()
        });
        if let Some(e) = failed {
            eprintln!("steps {s0}..{s1}: {e}");
            return ExitCode::FAILURE;
        }
        s0 = s1;
    }
    let samples = sh.series * sh.steps;
    let secs = began.elapsed().as_secs_f64();
    println!(
        "sent {samples} samples ({} series x {} steps) in {secs:.1} s, {:.0} samples/s",
        sh.series,
        sh.steps,
        samples as f64 / secs
    );
    ExitCode::SUCCESS
}
