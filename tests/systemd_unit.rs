//! The shipped systemd unit is valid and hardened: `systemd-analyze verify` accepts it and
//! `systemd-analyze security` rates its exposure 2.0 or lower (.ci/run installs systemd).

use std::path::Path;
use std::process::Command;

/// The unit with ExecStart pointing at the binary under test, so verify can check it exists.
fn unit_under_test(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/tidemark.service");
    let text = std::fs::read_to_string(&src).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/bin/tidemark run"),
        "the unit must start /usr/local/bin/tidemark as the README installs it"
    );
    let text = text.replace("/usr/local/bin/tidemark", env!("CARGO_BIN_EXE_tidemark"));
    let path = dir.join("tidemark.service");
    std::fs::write(&path, text).unwrap();
    path
}

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze must be installed (Debian package systemd; .ci/run installs it)")
}

#[test]
fn unit_verifies_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    let out = systemd_analyze(&["verify", unit.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify printed warnings:\n{stderr}"
    );
}

#[test]
fn unit_exposure_is_at_most_2_0() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    // --threshold is in tenths of the printed exposure level: 20 means 2.0.
    let out = systemd_analyze(&[
        "security",
        "--offline=true",
        "--threshold=20",
        "--no-pager",
        unit.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let level = stdout
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for tidemark.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}"));
    assert!(
        out.status.success() && level <= 2.0,
        "exposure {level} is above 2.0:\n{stdout}"
    );
}
