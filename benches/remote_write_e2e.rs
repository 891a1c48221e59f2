//! End to end: a backlog of samples in the WAL forwarded by the real queue (tailer, shards,
//! encoding, snappy, HTTP over loopback) to a null receiver that runs in a child process, so
//! only tidemark's CPU is counted. Prints samples per second of wall time, samples per
//! CPU-second of the tidemark process (all its threads: the figure per core), and CPU-seconds
//! per million samples forwarded. Not a criterion bench.
//!
//! The WAL holds `ROUNDS` scrapes of `SERIES` node_exporter-shaped series, written before the
//! queue starts; the queue's recorded position is the WAL's start, as after an outage. With
//! one shard every request holds one scrape (2,000 series, one sample each: labels travel
//! with every sample, the steady state's cost); with four, a request holds four samples per
//! series. tidemark's threads are pinned to CPU 0 and the receiver to CPU 1 when `taskset`
//! is there, so the wall-clock figure is one core's.
//!
//! `cargo bench --bench remote_write_e2e`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidemark::config::Config;
use tidemark::model::Labels;
use tidemark::remote_write::{RemoteWrite, stats};
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options};

const SERIES: usize = 2000;
const ROUNDS: usize = 3000;

/// CPU time of this process (every thread), from /proc.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The null receiver: answers every request 200 and discards the body.
fn null_receiver() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    println!("{}", l.local_addr().map(|a| a.port()).unwrap_or(0));
    let _ = std::io::stdout().flush();
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        std::thread::spawn(move || {
            let Ok(c) = s.try_clone() else { return };
            let mut r = BufReader::new(c);
            let mut body = Vec::new();
            loop {
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                body.resize(len, 0);
                if r.read_exact(&mut body).is_err()
                    || s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .is_err()
                {
                    return;
                }
            }
        });
    }
}

fn series() -> Vec<Labels> {
    let modes = [
        "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
    ];
    (0..SERIES)
        .map(|i| {
            Labels::new([
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("cpu", (i / 8).to_string()),
                ("instance", format!("host-{:03}.example.org:9100", i / 64)),
                ("job", "node".to_string()),
                ("mode", modes[i % 8].to_string()),
            ])
            .unwrap_or_else(|e| panic!("labels: {e}"))
        })
        .collect()
}

fn run(shards: usize, port: u16) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let opts = Options {
        fsync: FsyncPolicy::Interval(Duration::from_secs(60)),
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts).unwrap_or_else(|e| panic!("open: {e}"));
    let name = format!("bench-{shards}");
    // The remote's position is recorded at the WAL's start, then the backlog is written.
    let f = db.wal_follower();
    f.hold(&name)
        .unwrap_or_else(|e| panic!("hold: {e}"))
        .persist()
        .unwrap_or_else(|e| panic!("persist: {e}"));
    let labels = series();
    let t0 = 1_712_000_000_000i64;
    let mut refs = Vec::new();
    for k in 0..ROUNDS {
        let mut app = db.appender();
        for (i, l) in labels.iter().enumerate() {
            let t = t0 + k as i64 * 15_000 + (i % 5) as i64;
            let v = ((i * 7_919 + k * 104_729) % 1_000_003) as f64 / 8.0;
            if k == 0 {
                refs.push(
                    app.append(l, t, v)
                        .unwrap_or_else(|e| panic!("append: {e}")),
                );
            } else {
                app.append_ref(refs[i], t, v)
                    .unwrap_or_else(|e| panic!("append: {e}"));
            }
        }
        app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
    }
    let total = (SERIES * ROUNDS) as u64;
    let yaml = format!(
        "remote_write:\n  - url: http://127.0.0.1:{port}/api/v1/write\n    name: {name}\n    queue_config:\n      min_shards: {shards}\n      max_shards: {shards}\n      batch_send_deadline: 100ms\n"
    );
    let cfg = Config::parse(&yaml, "bench.yml").unwrap_or_else(|e| panic!("config: {e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(shards.max(1))
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let cpu0 = process_cpu();
    let began = Instant::now();
    let (wall, cpu) = rt.block_on(async {
        let mut rw = RemoteWrite::new(f.clone());
        rw.apply(&cfg)
            .await
            .unwrap_or_else(|e| panic!("apply: {e}"));
        let sent = || {
            stats::global()
                .active()
                .into_iter()
                .find(|(n, _, _)| *n == name)
                .map_or(0, |(_, _, s)| s.sent)
        };
        while sent() < total {
            assert!(
                began.elapsed() < Duration::from_secs(300),
                "forwarding stalled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let out = (began.elapsed(), process_cpu() - cpu0);
        rw.stop().await;
        out
    });
    let bytes = stats::global().queue(&name, &format!("http://127.0.0.1:{port}/api/v1/write"));
    let bytes = bytes.bytes_sent.load(std::sync::atomic::Ordering::Relaxed);
    let cpu_s = cpu.as_secs_f64();
    println!(
        "{shards} shard(s): {total} samples ({:.2} B/sample on the wire) in {:.2}s wall ({:.0} samples/s); {:.2} CPU-s: {:.0} samples per CPU-second, {:.3} CPU-s per million samples",
        bytes as f64 / total as f64,
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        cpu_s,
        total as f64 / cpu_s,
        cpu_s / (total as f64 / 1e6)
    );
    drop(rt);
    db.close().unwrap_or_else(|e| panic!("close: {e}"));
}

fn main() {
    if std::env::var_os("TIDEMARK_NULL_RECEIVER").is_some() {
        return null_receiver();
    }
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("exe: {e}"));
    let mut child = Command::new(exe)
        .env("TIDEMARK_NULL_RECEIVER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("receiver: {e}"));
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let port: u16 = line.trim().parse().unwrap_or_else(|e| panic!("port: {e}"));
    // Threads inherit the affinity of the thread that creates them: pin before any exists.
    let pin = |cpu: &str, pid: u32| {
        Command::new("taskset")
            .args(["-a", "-c", "-p", cpu, &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let pinned = pin("0", std::process::id()) && pin("1", child.id());
    println!(
        "tidemark {}",
        if pinned {
            "pinned to CPU 0, receiver to CPU 1"
        } else {
            "not pinned (no taskset)"
        }
    );
    for shards in [1, 4] {
        run(shards, port);
    }
    let _ = child.kill();
    let _ = child.wait();
}
