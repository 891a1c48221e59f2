//! Waiting for a line of a running agent's log.

use std::time::{Duration, Instant};

use super::Agent;

/// Waits (at most 30 s) for a log line containing `needle` and returns it. Lines read while
/// waiting are consumed, so a later wait only sees later lines.
pub fn wait_log(a: &Agent, needle: &str) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Ok(l) = a.lines.recv_timeout(Duration::from_millis(200))
            && l.contains(needle)
        {
            return l;
        }
    }
    panic!("log line {needle:?} not seen");
}
