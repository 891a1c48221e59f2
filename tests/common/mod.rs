//! Running the real binary in integration tests: start `tidemark run`, learn the address it
//! listens on from its log, and kill it if a test fails before shutting it down.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `tidemark run` child process; killed on drop.
pub struct Agent {
    /// The process.
    pub child: Child,
    /// Its stderr (the log), line by line.
    pub lines: mpsc::Receiver<String>,
    /// `http://host:port` of its API.
    pub api: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    /// Starts `tidemark run --listen 127.0.0.1:0 ARGS...` and waits for its listen address.
    pub fn start(args: &[&std::ffi::OsStr]) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["run", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut agent = Agent {
            child,
            lines,
            api: String::new(),
        };
        agent.api = loop {
            let line = agent
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("tidemark never said where it listens");
            if let Some(i) = line.find("address=") {
                let addr: String = line[i + 8..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                break format!("http://{addr}");
            }
        };
        agent
    }

    /// Waits (at most 30 s) for the process to exit and returns how it did.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let end = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(std::time::Instant::now() < end, "tidemark did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then asserts a clean exit (status 0).
    pub fn stop(&mut self) {
        self.signal("-TERM");
        let st = self.wait_exit();
        assert!(st.success(), "exit status after SIGTERM: {st:?}");
    }

    /// Sends a signal (`-TERM`, `-HUP`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }
}
