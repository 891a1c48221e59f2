//! Debian's prometheus-node-exporter as a real scrape target, and polling with a deadline.
//! Included with `#[path]` by the tests that scrape it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running node_exporter on a free loopback port, killed on drop.
pub struct NodeExporter {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

impl NodeExporter {
    /// Starts node_exporter; .ci/run installs the package.
    pub fn start() -> NodeExporter {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(find("prometheus-node-exporter"))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        NodeExporter { child, addr }
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(bin: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{bin} not found: install Debian's prometheus-node-exporter (.ci/run does)")
        })
}

fn free_port() -> u16 {
    // node_exporter cannot report a port it picked itself, so reserve one and release it.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Calls `f` until it returns `Some`, failing the test after `deadline`.
pub async fn poll<T>(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
