//! The real binary with damaged blocks: a block whose chunk bytes were flipped before the start
//! is found by the background scrub, and one damaged while the agent runs is found by the query
//! that reads it. Each is moved into `<data>/quarantine/`, counted in
//! `tidemark_blocks_quarantined_total` and warned about in the log; every answer is a 200 from
//! the remaining blocks (with a warning naming the block left out), no response carries a file
//! path, and `inspect` lists the quarantined blocks.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tidemark::storage::sstable::Block;

mod common;
use common::Agent;
#[path = "common/log.rs"]
mod log;
use log::wait_log;

const DAY_MS: i64 = 86_400_000;
/// A UTC midnight.
const T0: i64 = 1_764_979_200_000;

fn tidemark(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(args)
        .output()
        .unwrap()
}

/// One series with 240 samples (one hour at 15s) on days 0, 2 and 4, valued 1, 2 and 3: three
/// blocks in three different days, so no compaction merges them.
fn write_input(path: &Path) {
    let mut text = String::from("# TYPE demo_value gauge\n");
    for (day, v) in [(0i64, 1), (2, 2), (4, 3)] {
        for i in 0..240i64 {
            let t = T0 + day * DAY_MS + i * 15_000;
            text.push_str(&format!(
                "demo_value{{host=\"a\"}} {v} {}.{:03}\n",
                t / 1000,
                t % 1000
            ));
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(path, text).unwrap();
}

/// Block files, oldest first, with their ids.
fn blocks(data: &Path) -> Vec<(PathBuf, String)> {
    let mut v: Vec<(i64, PathBuf, String)> = std::fs::read_dir(data.join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .map(|p| {
            let b = Block::open(&p).unwrap();
            (b.meta().mint, p, b.meta().id.to_string())
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p, id)| (p, id)).collect()
}

/// Flips a byte in the middle of the block's first chunk, in place (same file, so an agent
/// that has the block open reads the damage).
fn damage_chunk(path: &Path) {
    let b = Block::open(path).unwrap();
    let (_, chunks) = b.series(0).unwrap();
    let at = chunks[0].offset + u64::from(chunks[0].len) / 2;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    byte[0] ^= 0x10;
    f.write_all_at(&byte, at).unwrap();
    f.sync_all().unwrap();
}

/// GETs `url`; fails the test on anything but 200 or on a body naming the data directory.
async fn get_ok(http: &reqwest::Client, url: &str, data: &Path) -> String {
    let r = http.get(url).send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{url}: {body}");
    let tmp = data.parent().unwrap().to_str().unwrap();
    assert!(
        !body.contains(tmp) && !body.contains(".sst"),
        "{url}: a file path in the response: {body}"
    );
    body
}

fn quarantined_metric(metrics: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("tidemark_blocks_quarantined_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// The values of the one series a range query answered, as a set.
fn values(body: &str) -> (Vec<String>, Vec<String>) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["status"], "success", "{body}");
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out.dedup();
    let warnings = v["warnings"]
        .as_array()
        .map(|w| w.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    (out, warnings)
}

/// A data directory under `dir` holding the test's samples, written by `tidemark import`.
fn imported(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let input = dir.join("in.om");
    write_input(&input);
    let o = tidemark(&[
        "import".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        input.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_blocks_are_quarantined_and_queries_answer_from_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = imported(tmp.path());
    let files = blocks(&data);
    assert_eq!(files.len(), 3);
    let (old, old_id) = files[0].clone();
    let (mid, mid_id) = files[1].clone();
    damage_chunk(&old);

    let cfg = tmp.path().join("tidemark.yml");
    std::fs::write(&cfg, "scrape_configs: []\n").unwrap();
    let mut agent = Agent::start(&[
        "--config".as_ref(),
        cfg.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let api = agent.api.clone();
    let start = (T0 - 60_000) / 1000;
    let end = (T0 + 5 * DAY_MS) / 1000;
    let range =
        format!("{api}/api/v1/query_range?query=demo_value&start={start}&end={end}&step=60");

    // Whether the scrub or this query meets the damaged block first, the answer is the other
    // two blocks.
    let (vals, _) = values(&get_ok(&http, &range, &data).await);
    assert_eq!(vals, ["2", "3"]);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = get_ok(&http, &format!("{api}/metrics"), &data).await;
        if quarantined_metric(&m) == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "block not quarantined: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = wait_log(&agent, "corrupt block quarantined");
    assert!(line.contains("WARN") && line.contains(&old_id), "{line}");
    assert!(!old.exists());
    assert!(
        data.join("quarantine")
            .join(old.file_name().unwrap())
            .exists()
    );

    // Damage after the agent checked the block: the query that reads it finds it.
    damage_chunk(&mid);
    let (vals, warnings) = values(&get_ok(&http, &range, &data).await);
    assert_eq!(vals, ["3"]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&mid_id) && warnings[0].contains("corrupt"),
        "{warnings:?}"
    );
    let line = wait_log(&agent, "corrupt block quarantined");
    assert!(line.contains(&mid_id), "{line}");
    let m = get_ok(&http, &format!("{api}/metrics"), &data).await;
    assert_eq!(quarantined_metric(&m), Some(2.0), "{m}");
    // Every read endpoint over the damaged days answers.
    let day2 = (T0 + 2 * DAY_MS) / 1000 + 600;
    let v: serde_json::Value = serde_json::from_str(
        &get_ok(
            &http,
            &format!("{api}/api/v1/query?query=demo_value&time={day2}"),
            &data,
        )
        .await,
    )
    .unwrap();
    assert_eq!(v["data"]["result"], serde_json::json!([]));
    get_ok(
        &http,
        &format!("{api}/api/v1/series?match[]=demo_value&start={start}&end={end}"),
        &data,
    )
    .await;
    get_ok(
        &http,
        &format!("{api}/api/v1/labels?start={start}&end={end}"),
        &data,
    )
    .await;
    get_ok(&http, &format!("{api}/federate?match[]=demo_value"), &data).await;

    // inspect, beside the running agent, lists both as quarantined and the last one as served.
    let o = tidemark(&[
        "inspect".as_ref(),
        "--json".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["blocks"].as_array().unwrap().len(), 1, "{v}");
    let q = v["quarantinedBlocks"].as_array().unwrap();
    assert_eq!(q.len(), 2, "{v}");
    assert!(
        q.iter().all(|b| b["reason"]
            .as_str()
            .unwrap()
            .contains("chunk CRC32C mismatch")),
        "{v}"
    );
    let o = tidemark(&["inspect".as_ref(), "--data-dir".as_ref(), data.as_os_str()]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches("QUARANTINED")
            .count(),
        2
    );

    agent.stop();
    // Quarantined blocks stay out after a restart.
    let agent = Agent::start(&[
        "--config".as_ref(),
        cfg.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    let range = range.replace(&api, &agent.api);
    let (vals, warnings) = values(&get_ok(&http, &range, &data).await);
    assert_eq!(vals, ["3"]);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn inspect_reports_a_damaged_block_as_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let data = imported(tmp.path());
    let (victim, _) = blocks(&data)[1].clone();
    damage_chunk(&victim);
    let o = tidemark(&[
        "inspect".as_ref(),
        "--json".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["blocks"].as_array().unwrap().len(), 2, "{v}");
    let refused = v["refusedBlocks"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{v}");
    assert_eq!(refused[0]["path"], victim.to_str().unwrap());
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("chunks section"),
        "{v}"
    );
    // inspect reads only: the block stays where it is.
    assert!(victim.exists());
    let o = tidemark(&["inspect".as_ref(), "--data-dir".as_ref(), data.as_os_str()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("CORRUPT"));
}
