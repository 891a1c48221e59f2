//! Wall and on-CPU time of a benchmark's measured work, summed over every iteration criterion
//! runs, so a bench can print samples per second both ways (on a loaded machine the on-CPU
//! figure is the steadier one).

use std::time::{Duration, Instant};

/// Nanoseconds this thread has spent on a CPU, where Linux tells it.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Samples and time summed over every iteration criterion ran, warm-up included.
#[derive(Default)]
pub struct Tally {
    samples: u64,
    wall: Duration,
    cpu_ns: Option<u64>,
}

impl Tally {
    /// Runs `f`, which appends `samples` samples, and counts its time.
    pub fn time(&mut self, samples: u64, f: impl FnOnce()) -> Duration {
        let cpu = thread_cpu_ns();
        let start = Instant::now();
        f();
        let wall = start.elapsed();
        self.samples += samples;
        self.wall += wall;
        self.cpu_ns = match (cpu, thread_cpu_ns()) {
            (Some(a), Some(b)) => Some(self.cpu_ns.unwrap_or(0) + b.saturating_sub(a)),
            _ => None,
        };
        wall
    }

    /// Prints samples per second, wall and on CPU.
    pub fn report(&self, what: &str) {
        let per_s = |secs: f64| self.samples as f64 / secs / 1e6;
        let cpu = self.cpu_ns.map_or(String::from("n/a"), |ns| {
            format!("{:.2}", per_s(ns as f64 / 1e9))
        });
        println!(
            "{what}: {} samples, {:.2}M samples/s wall, {cpu}M samples/s on CPU",
            self.samples,
            per_s(self.wall.as_secs_f64()),
        );
    }
}
