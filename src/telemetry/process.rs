//! What Prometheus's process collector reports, read from `/proc/self` on Linux: CPU time,
//! memory, file descriptors. Elsewhere every value is absent and its series is left out.

/// The process's resource use at one moment; `None` where it could not be read.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
}

/// Clock ticks per second in `/proc/<pid>/stat`: `USER_HZ`, part of the kernel's user-space
/// ABI and 100 on every architecture Rust targets on Linux (reading it at run time would need
/// `sysconf`, which std does not expose).
const USER_HZ: f64 = 100.0;

/// Reads this process's figures.
pub(super) fn read() -> ProcessStats {
    if !cfg!(target_os = "linux") {
        return ProcessStats::default();
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    ProcessStats {
        cpu_seconds: stat.as_deref().and_then(cpu_seconds),
        resident_bytes: status.as_deref().and_then(|s| status_kib(s, "VmRSS:")),
        virtual_bytes: status.as_deref().and_then(|s| status_kib(s, "VmSize:")),
        open_fds,
        max_fds: limits.as_deref().and_then(max_open_files),
    }
}

/// `utime + stime` from `/proc/<pid>/stat`, in seconds. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS:   1234 kB`), in bytes.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as a process may set.
        let stat = "4242 (tide mark) x) S 1 4242 4242 0 -1 4194560 2719 0 0 0 1377 291 0 0 20 0 \
                    9 0 123456 1549139968 11873 18446744073709551615\n";
        assert_eq!(cpu_seconds(stat), Some(16.68));
        assert_eq!(cpu_seconds("garbage"), None);
        assert_eq!(cpu_seconds("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_and_limits_lines() {
        let status =
            "Name:\ttidemark\nVmPeak:\t 1600000 kB\nVmSize:\t 1512832 kB\nVmRSS:\t   47492 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(47_492 * 1024));
        assert_eq!(status_kib(status, "VmSize:"), Some(1_512_832 * 1024));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1048576              1048576              files     \n";
        assert_eq!(max_open_files(limits), Some(1_048_576));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_readable() {
        let p = read();
        assert!(p.resident_bytes.unwrap() > 1 << 20);
        assert!(p.virtual_bytes.unwrap() >= p.resident_bytes.unwrap());
        // stdin, stdout and stderr at least.
        assert!(p.open_fds.unwrap() >= 3);
        assert!(p.max_fds.unwrap() >= p.open_fds.unwrap());
        assert!(p.cpu_seconds.unwrap() >= 0.0);
    }
}
