//! The series shape of the restart comparison (issue 13), shared by `remote_write_gen` (which
//! pushes it to a server) and `replay_memory` (which commits it into a `Db` in-process), so
//! the two always describe the same data.

/// Label pairs of series `i`: 50 metric names, one `idx` per series, 1,000 series per
/// `instance`, one job.
pub fn label_pairs(i: u64) -> [(&'static str, String); 4] {
    let host = i / 1000;
    [
        ("__name__", format!("replay_metric_{}", i % 50)),
        ("idx", i.to_string()),
        (
            "instance",
            format!(
                "10.{}.{}.{}:9100",
                host >> 16,
                (host >> 8) & 255,
                host & 255
            ),
        ),
        ("job", "replay".into()),
    ]
}

/// Series `i`'s value at `step`: a third counters, a third constant gauges, a third gauges
/// that move on every sample.
pub fn value(i: u64, step: u64) -> f64 {
    match i % 3 {
        0 => (step * (i % 7 + 1)) as f64,
        1 => (i % 100) as f64,
        _ => {
            // A cheap hash of (i, step).
            let mut x =
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
            x ^= x >> 29;
            (x % 100_000) as f64 / 100.0
        }
    }
}
