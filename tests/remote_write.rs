//! Remote write end to end: the real binary scrapes a local target and forwards to a real
//! VictoriaMetrics (Debian's `victoria-metrics`) and a real Prometheus
//! (`--web.enable-remote-write-receiver`), and to a scripted backend. Every sample tidemark
//! stored (read back with `tidemark dump`) must be in the backend: in steady state, across a
//! backend outage longer than several retry rounds, and across a SIGKILL of tidemark while the
//! backend is down. A refused batch is dropped and counted, and later batches flow.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tidemark::model::STALE_NAN_BITS;
use tidemark::remote_write::proto::WriteRequest;

mod common;
use common::Agent;
#[path = "common/log.rs"]
mod log;
use log::wait_log;

/// A sample as compared across systems: labels, milliseconds, value bits.
type Key = (BTreeMap<String, String>, i64, u64);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A backend process, killed on drop.
struct Backend {
    child: Child,
    port: u16,
    what: &'static str,
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Backend {
    /// Stops it as an operator would (SIGTERM) and waits for it to exit.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "{} did not exit", self.what);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Polls `url` until it answers 200.
fn wait_ok(url: &str, what: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if http_get(url).is_some_and(|(code, _)| code == 200) {
            return;
        }
        assert!(Instant::now() < end, "{what} never became ready at {url}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain blocking GET: status and body.
fn http_get(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_at(rest.find('/')?);
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn start_vm(data: &Path, port: u16) -> Backend {
    let child = Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", data.display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-search.latencyOffset=0s")
        .arg("-loggerLevel=ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("victoria-metrics not installed (apt-get install victoria-metrics)");
    let b = Backend {
        child,
        port,
        what: "victoria-metrics",
    };
    wait_ok(&b.url("/health"), "victoria-metrics");
    b
}

/// Starts `cmd` (given a free port) until its `ready` path answers 200, on a fresh port each
/// time another process took the port between choosing and binding it.
fn start_backend(what: &'static str, ready: &str, cmd: impl Fn(u16) -> Command) -> Backend {
    for _ in 0..5 {
        let port = free_port();
        let child = cmd(port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} not installed (apt-get install {what}): {e}"));
        let mut b = Backend { child, port, what };
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if b.child.try_wait().unwrap().is_some() {
                break;
            }
            if http_get(&b.url(ready)).is_some_and(|(c, _)| c == 200) {
                return b;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(b);
    }
    panic!("{what} did not start");
}

/// Starts VictoriaMetrics on a fresh port.
fn start_vm_fresh(data: &Path) -> Backend {
    start_backend("victoria-metrics", "/health", |port| {
        let mut c = Command::new("victoria-metrics");
        c.arg(format!("-storageDataPath={}", data.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-search.latencyOffset=0s")
            .arg("-loggerLevel=ERROR");
        c
    })
}

/// A scrape target whose values change irregularly from scrape to scrape; `rw_test_flaky`
/// disappears after the 4th scrape, so its series gets a staleness marker.
fn serve_target() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut n: u64 = 0;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut total = 0u64;
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|k| k > 2) {
                line.clear();
            }
            n += 1;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            total += 1 + x % 97;
            let temp = (x % 10_000) as f64 / 137.0 - 20.0;
            let mut body = format!(
                "# TYPE rw_test_requests_total counter\nrw_test_requests_total{{path=\"/a\"}} {total}\nrw_test_requests_total{{path=\"/b \\\"q\\\"\"}} {}\n# TYPE rw_test_temperature gauge\nrw_test_temperature{{room=\"lab\"}} {temp}\nrw_test_dropped {}\n",
                total * 3 + n,
                n
            );
            if n <= 4 {
                body.push_str(&format!("rw_test_flaky {}\n", n as f64 * 0.5));
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn write_config(dir: &Path, target: &str, remote: &str, extra: &str) -> PathBuf {
    let cfg = format!(
        "global:
  scrape_interval: 300ms
  scrape_timeout: 250ms
  external_labels:
    replica: a
scrape_configs:
  - job_name: rwtest
    static_configs:
      - targets: [\"{target}\"]
remote_write:
  - url: {remote}
    name: backend
    remote_timeout: 2s
{extra}    queue_config:
      batch_send_deadline: 100ms
      min_backoff: 20ms
      max_backoff: 200ms
"
    );
    let p = dir.join("tidemark.yml");
    std::fs::write(&p, cfg).unwrap();
    p
}

fn start_agent(cfg: &Path, data: &Path) -> Agent {
    Agent::start(&[
        "--config".as_ref(),
        cfg.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ])
}

/// Parses `name{a="b",...}` with escapes into a label map.
fn parse_series(s: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], &s[i + 1..s.len() - 1]),
        None => (s, ""),
    };
    m.insert("__name__".to_string(), name.to_string());
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => v.push('\n'),
                    Some(o) => v.push(o),
                    None => {}
                },
                '"' => break,
                o => v.push(o),
            }
        }
        m.insert(key.trim_start_matches(',').to_string(), v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    m
}

/// Every sample tidemark stored, with the external labels remote write adds.
fn stored(data: &Path) -> Vec<Key> {
    let o = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["dump", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut out = Vec::new();
    for line in String::from_utf8(o.stdout).unwrap().lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let mut parts = line.rsplitn(3, ' ');
        let ts: f64 = parts.next().unwrap().parse().unwrap();
        let v: f64 = parts.next().unwrap().parse().unwrap();
        let mut labels = parse_series(parts.next().unwrap());
        labels.insert("replica".into(), "a".into());
        out.push((labels, (ts * 1000.0).round() as i64, v.to_bits()));
    }
    assert!(out.len() > 30, "too little stored: {}", out.len());
    out
}

/// Every raw sample VictoriaMetrics holds.
fn vm_samples(vm: &Backend) -> Vec<Key> {
    let (code, body) =
        http_get(&vm.url("/api/v1/export?match%5B%5D=%7B__name__%3D~%22.%2B%22%7D")).unwrap();
    assert_eq!(code, 200, "{body}");
    let mut out = Vec::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let labels: BTreeMap<String, String> = v["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let ts = v["timestamps"].as_array().unwrap();
        let vals = v["values"].as_array().unwrap();
        for (t, x) in ts.iter().zip(vals) {
            let x = x.as_f64().unwrap_or(f64::NAN);
            out.push((labels.clone(), t.as_i64().unwrap(), x.to_bits()));
        }
    }
    out
}

fn counts(v: &[Key]) -> HashMap<Key, usize> {
    let mut m = HashMap::new();
    for k in v {
        *m.entry(k.clone()).or_default() += 1;
    }
    m
}

/// Samples with a NaN value: staleness markers, which VictoriaMetrics keeps its own way.
fn is_stale(k: &Key) -> bool {
    f64::from_bits(k.2).is_nan()
}

/// How a backend keeps values: exactly (Prometheus), or as VictoriaMetrics does, to about 12
/// significant decimal digits.
#[derive(Clone, Copy, PartialEq)]
enum Values {
    Exact,
    Decimal12,
}

/// The key with its value as the backend can keep it.
fn as_kept(k: &Key, v: Values) -> Key {
    match v {
        Values::Exact => k.clone(),
        Values::Decimal12 => {
            let x = f64::from_bits(k.2);
            let r: f64 = format!("{x:.10e}").parse().unwrap_or(x);
            (k.0.clone(), k.1, r.to_bits())
        }
    }
}

/// Waits until the backend holds every stored sample; with `exact`, also nothing else and
/// nothing twice.
fn assert_arrived(want: &[Key], got: impl Fn() -> Vec<Key>, exact: bool, values: Values) {
    let want: Vec<Key> = want
        .iter()
        .filter(|k| !is_stale(k))
        .map(|k| as_kept(k, values))
        .collect();
    let want_n = counts(&want);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let have: Vec<Key> = got()
            .into_iter()
            .filter(|k| !is_stale(k))
            .map(|k| as_kept(&k, values))
            .collect();
        let have_n = counts(&have);
        let missing: Vec<&Key> = want_n.keys().filter(|k| !have_n.contains_key(*k)).collect();
        if missing.is_empty() {
            if exact {
                let extra: Vec<&Key> = have_n.keys().filter(|k| !want_n.contains_key(*k)).collect();
                assert!(
                    extra.is_empty(),
                    "backend has samples tidemark never stored: {extra:?}"
                );
                let twice: Vec<(&Key, &usize)> = have_n.iter().filter(|(_, n)| **n > 1).collect();
                assert!(twice.is_empty(), "duplicated in the backend: {twice:?}");
            }
            return;
        }
        assert!(
            Instant::now() < end,
            "{} of {} stored samples never arrived, e.g. {:?}",
            missing.len(),
            want_n.len(),
            &missing[..missing.len().min(3)]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of a self-metric line starting with `prefix` (labels included).
fn metric(agent: &Agent, prefix: &str) -> Option<f64> {
    let (_, body) = http_get(&format!("{}/metrics", agent.api))?;
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn wait_metric(agent: &Agent, prefix: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = metric(agent, prefix)
            && ok(v)
        {
            return v;
        }
        assert!(Instant::now() < end, "metric {prefix} never as expected");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SENT: &str = "tidemark_remote_storage_samples_total{remote_name=\"backend\"";

#[test]
fn every_stored_sample_reaches_victoria_metrics_once() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = start_vm_fresh(&tmp.path().join("vm"));
    let cfg = write_config(tmp.path(), &serve_target(), &vm.url("/api/v1/write"), "");
    let data = tmp.path().join("data");
    let mut agent = start_agent(&cfg, &data);
    wait_metric(&agent, SENT, |v| v >= 60.0);
    std::thread::sleep(Duration::from_millis(1500));
    let shards = metric(&agent, "tidemark_remote_storage_shards{").unwrap();
    assert!(shards >= 1.0);
    agent.stop();
    // (`dump` leaves staleness markers out; the scripted backend's test sees them sent.)
    let want = stored(&data);
    assert!(want.iter().any(|k| k.0["__name__"] == "rw_test_flaky"));
    assert_arrived(&want, || vm_samples(&vm), true, Values::Decimal12);
}

#[test]
fn an_outage_of_several_retry_rounds_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let vm_data = tmp.path().join("vm");
    let vm = start_vm_fresh(&vm_data);
    let port = vm.port;
    let cfg = write_config(tmp.path(), &serve_target(), &vm.url("/api/v1/write"), "");
    let data = tmp.path().join("data");
    let mut agent = start_agent(&cfg, &data);
    let before = wait_metric(&agent, SENT, |v| v > 20.0);
    vm.stop();
    // With backoff 20ms..200ms, 2.5s is well over ten retry rounds.
    let retried = "tidemark_remote_storage_samples_retried_total{remote_name=\"backend\"";
    wait_metric(&agent, retried, |v| v > 0.0);
    std::thread::sleep(Duration::from_millis(2500));
    let pending = metric(&agent, "tidemark_remote_storage_samples_pending{").unwrap();
    assert!(pending > 0.0, "scrapes during the outage wait to be sent");
    let vm = start_vm(&vm_data, port);
    wait_metric(&agent, SENT, |v| v > before + pending);
    agent.stop();
    assert_arrived(&stored(&data), || vm_samples(&vm), true, Values::Decimal12);
}

#[test]
fn a_sigkill_while_the_backend_is_down_resumes_from_the_recorded_position() {
    let tmp = tempfile::tempdir().unwrap();
    let vm_data = tmp.path().join("vm");
    let vm = start_vm_fresh(&vm_data);
    let port = vm.port;
    let cfg = write_config(tmp.path(), &serve_target(), &vm.url("/api/v1/write"), "");
    let data = tmp.path().join("data");
    let mut agent = start_agent(&cfg, &data);
    wait_metric(&agent, SENT, |v| v > 20.0);
    vm.stop();
    std::thread::sleep(Duration::from_millis(2000));
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    drop(agent);
    let position = data.join("remote_write").join("backend.position");
    assert!(position.exists(), "no recorded position");

    let vm = start_vm(&vm_data, port);
    let mut agent = start_agent(&cfg, &data);
    wait_log(&agent, "resumes from its recorded position");
    // Everything from before the kill, and a few scrapes after the restart.
    std::thread::sleep(Duration::from_millis(1500));
    agent.stop();
    // At least once: a resent batch may be stored twice, nothing may be missing.
    assert_arrived(&stored(&data), || vm_samples(&vm), false, Values::Decimal12);
}

/// One request the scripted backend received.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    headers: HashMap<String, String>,
    req: WriteRequest,
}

/// A remote-write backend that answers from a script (then 200), recording every request.
fn scripted_backend(
    script: Vec<(u16, Option<&'static str>)>,
) -> (String, Arc<Mutex<Vec<Received>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1/write", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let rec = got.clone();
    let n = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (rec, n, script) = (rec.clone(), n.clone(), script.clone());
            std::thread::spawn(move || serve_writes(s, &rec, &n, &script));
        }
    });
    (url, got)
}

fn serve_writes(
    mut s: TcpStream,
    rec: &Mutex<Vec<Received>>,
    n: &AtomicU64,
    script: &[(u16, Option<&'static str>)],
) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = WriteRequest::decode(raw.as_slice()).unwrap();
        let i = n.fetch_add(1, Ordering::SeqCst) as usize;
        rec.lock().unwrap().push(Received {
            at: Instant::now(),
            headers,
            req,
        });
        let (code, retry_after) = script.get(i).copied().unwrap_or((200, None));
        let reason = match code {
            200 => "OK",
            400 => "Bad Request",
            429 => "Too Many Requests",
            _ => "Service Unavailable",
        };
        let extra = retry_after.map_or(String::new(), |v| format!("Retry-After: {v}\r\n"));
        let msg = if code == 200 { "" } else { "scripted refusal" };
        let _ = write!(
            s,
            "HTTP/1.1 {code} {reason}\r\n{extra}Content-Length: {}\r\n\r\n{msg}",
            msg.len()
        );
    }
}

fn samples_of(r: &Received) -> Vec<(BTreeMap<String, String>, i64, u64)> {
    r.req
        .timeseries
        .iter()
        .flat_map(|ts| {
            let labels: BTreeMap<String, String> = ts
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            ts.samples
                .iter()
                .map(move |s| (labels.clone(), s.timestamp, s.value.to_bits()))
        })
        .collect()
}

#[test]
fn a_refused_batch_is_dropped_and_counted_retries_wait_and_later_batches_flow() {
    let tmp = tempfile::tempdir().unwrap();
    // 400: dropped. 503: retried after the backoff. 429 with Retry-After: retried after 1s.
    let (url, got) = scripted_backend(vec![(400, None), (503, None), (429, Some("1"))]);
    std::fs::write(tmp.path().join("password"), "s3cret\n").unwrap();
    let extra = "    headers:
      X-Scope-OrgID: tenant-7
    basic_auth:
      username: tm
      password_file: password
    write_relabel_configs:
      - source_labels: [__name__]
        regex: rw_test_dropped
        action: drop
";
    let cfg = write_config(tmp.path(), &serve_target(), &url, extra);
    let data = tmp.path().join("data");
    let mut agent = start_agent(&cfg, &data);
    let failed = "tidemark_remote_storage_samples_failed_total{remote_name=\"backend\"";
    wait_metric(&agent, failed, |v| v > 0.0);
    // Past the flaky series' end, and a few more batches.
    wait_metric(&agent, SENT, |v| v > 80.0);
    let relabel = "tidemark_remote_storage_samples_dropped_total{remote_name=\"backend\",url=";
    let dropped_line = http_get(&format!("{}/metrics", agent.api)).unwrap().1;
    assert!(
        dropped_line.lines().any(|l| l.starts_with(relabel)
            && l.contains("reason=\"relabel\"")
            && !l.ends_with(" 0")),
        "relabel drops not counted"
    );
    let failed_n = metric(&agent, failed).unwrap();
    let batches_failed = metric(
        &agent,
        "tidemark_remote_storage_batches_failed_total{remote_name=\"backend\"",
    )
    .unwrap();
    let retried = metric(
        &agent,
        "tidemark_remote_storage_samples_retried_total{remote_name=\"backend\"",
    )
    .unwrap();
    agent.stop();

    let reqs = got.lock().unwrap().clone();
    assert!(reqs.len() >= 6, "{} requests", reqs.len());
    for r in &reqs {
        let h = &r.headers;
        assert_eq!(h["content-encoding"], "snappy");
        assert_eq!(h["content-type"], "application/x-protobuf");
        assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
        assert!(h["user-agent"].starts_with("tidemark/"));
        assert_eq!(h["x-scope-orgid"], "tenant-7");
        // "tm:s3cret", the password read from its file and trimmed.
        assert_eq!(h["authorization"], "Basic dG06czNjcmV0");
        for ts in &r.req.timeseries {
            assert!(
                ts.labels
                    .iter()
                    .any(|l| l.name == "replica" && l.value == "a")
            );
            assert!(!ts.labels.iter().any(|l| l.value == "rw_test_dropped"));
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            assert!(
                names.windows(2).all(|w| w[0] < w[1]),
                "labels unsorted: {names:?}"
            );
        }
    }
    // The refused batch is counted, never sent again, and later batches carry newer samples.
    let refused = samples_of(&reqs[0]);
    assert_eq!(failed_n as usize, refused.len());
    assert_eq!(batches_failed, 1.0);
    let later: Vec<_> = reqs[1..].iter().flat_map(samples_of).collect();
    assert!(
        refused.iter().all(|s| !later.contains(s)),
        "a refused sample was resent"
    );
    let newest_refused = refused.iter().map(|s| s.1).max().unwrap();
    assert!(later.iter().any(|s| s.1 > newest_refused));
    // The 503'd batch came again after the backoff, then after the 429's Retry-After, intact.
    assert_eq!(samples_of(&reqs[1]), samples_of(&reqs[2]));
    assert_eq!(samples_of(&reqs[2]), samples_of(&reqs[3]));
    assert_eq!(reqs[3].headers["retry-attempt"], "2");
    assert!(reqs[3].at - reqs[2].at >= Duration::from_millis(950));
    assert_eq!(retried as usize, 2 * samples_of(&reqs[1]).len());
    // Staleness markers are sent like any sample.
    let stale = later
        .iter()
        .any(|s| s.0["__name__"] == "rw_test_flaky" && s.2 == STALE_NAN_BITS);
    assert!(stale, "no staleness marker for the series that disappeared");
}

#[test]
fn prometheus_receives_every_stored_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let minimal = tmp.path().join("prometheus.yml");
    std::fs::write(&minimal, "global:\n  scrape_interval: 1m\n").unwrap();
    let prom = start_backend("prometheus", "/-/ready", |port| {
        let mut c = Command::new("prometheus");
        c.arg("--web.enable-remote-write-receiver")
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--config.file={}", minimal.display()));
        c
    });
    let cfg = write_config(tmp.path(), &serve_target(), &prom.url("/api/v1/write"), "");
    let data = tmp.path().join("data");
    let mut agent = start_agent(&cfg, &data);
    wait_metric(&agent, SENT, |v| v > 60.0);
    agent.stop();
    let want = stored(&data);
    let query = |_: ()| -> Vec<Key> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (code, body) = http_get(&prom.url(&format!(
            "/api/v1/query?query=%7Breplica%3D%22a%22%7D%5B1h%5D&time={}",
            now + 1
        )))
        .unwrap();
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut out = Vec::new();
        for s in v["data"]["result"].as_array().unwrap() {
            let labels: BTreeMap<String, String> = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            for p in s["values"].as_array().unwrap() {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                let x: f64 = p[1].as_str().unwrap().parse().unwrap();
                out.push((labels.clone(), t, x.to_bits()));
            }
        }
        out
    };
    // Prometheus's query API hides staleness markers; everything else must be there, once.
    assert_arrived(&want, || query(()), true, Values::Exact);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_restarts_a_changed_queue_from_its_position_without_resending() {
    use tidemark::config::Config;
    use tidemark::model::Labels;
    use tidemark::remote_write::RemoteWrite;
    use tidemark::storage::wal::FsyncPolicy;
    use tidemark::storage::{Db, Options};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let (url, got) = scripted_backend(vec![]);
    let opts = Options {
        fsync: FsyncPolicy::Interval(Duration::from_secs(60)),
        ..Options::default()
    };
    let db = Db::open(&tmp.path().join("data"), opts).unwrap();
    let cfg = |deadline: &str, external: &str| {
        Config::parse(
            &format!(
                "global:\n  external_labels: {{{external}}}\nremote_write:\n  - url: {url}\n    name: r\n    queue_config:\n      batch_send_deadline: {deadline}\n"
            ),
            "reload.yml",
        )
        .unwrap()
    };
    let series: Vec<Labels> = (0..10)
        .map(|i| Labels::new([("__name__", "reload_m"), ("i", &i.to_string()[..])]).unwrap())
        .collect();
    let append = |from: i64, to: i64| {
        for k in from..to {
            let mut app = db.appender();
            for (i, l) in series.iter().enumerate() {
                let v = ((k * 7 + i as i64 * 13) % 97) as f64 / 3.0;
                app.append(l, 1_712_000_000_000 + k * 1_000 + i as i64 % 3, v)
                    .unwrap();
            }
            app.commit().unwrap();
        }
    };
    let received = |n: usize| {
        let got = got.clone();
        async move {
            let end = Instant::now() + Duration::from_secs(30);
            loop {
                let all: Vec<_> = got.lock().unwrap().iter().flat_map(samples_of).collect();
                if all.len() >= n {
                    return all;
                }
                assert!(
                    Instant::now() < end,
                    "{} of {n} samples received",
                    all.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut rw = RemoteWrite::new(db.wal_follower());
    rw.apply(&cfg("50ms", "")).await.unwrap();
    append(0, 30);
    received(300).await;
    // The same settings keep the queue; new ones restart it from its recorded position.
    rw.apply(&cfg("50ms", "")).await.unwrap();
    rw.apply(&cfg("80ms", "dc: x")).await.unwrap();
    assert_eq!(rw.len(), 1);
    append(30, 50);
    let all = received(500).await;
    rw.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all_now: Vec<_> = got.lock().unwrap().iter().flat_map(samples_of).collect();
    assert_eq!(all_now.len(), all.len(), "nothing more after the stop");
    let keys: std::collections::BTreeSet<(String, i64)> =
        all.iter().map(|s| (s.0["i"].clone(), s.1)).collect();
    assert_eq!(keys.len(), 500, "every sample once, none resent");
    // Only the restarted queue adds the new external label.
    let with_dc = all.iter().filter(|s| s.0.contains_key("dc")).count();
    assert_eq!(with_dc, 200);
    db.close().unwrap();
}
