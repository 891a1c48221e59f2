//! The shared test data (`shared/`: exposition fixtures, PromQL conformance scripts), which
//! sits beside the checkout: `../shared` from the crate root, or higher up for a checkout
//! nested deeper. The one way tests and benches find it: integration tests include this file
//! with `#[path = "common/fixtures.rs"]`, benches with `#[path]` from `benches/support/`, the
//! library's unit tests through `crate::fixtures`.

use std::path::{Path, PathBuf};

/// The path of `rel` (`fixtures/exposition/x.prom`, `promql-testdata`) inside the shared
/// directory. Panics, saying where it looked, when the directory or `rel` is missing: a test
/// without its data must fail, never pass vacuously.
pub fn shared(rel: &str) -> PathBuf {
    find_shared(Path::new(env!("CARGO_MANIFEST_DIR")), rel).unwrap_or_else(|e| panic!("{e}"))
}

/// `rel` inside the first `shared/` directory above `crate_root` (its parent first).
fn find_shared(crate_root: &Path, rel: &str) -> Result<PathBuf, String> {
    let Some(dir) = crate_root
        .ancestors()
        .skip(1)
        .map(|a| a.join("shared"))
        .find(|d| d.is_dir())
    else {
        return Err(format!(
            "no shared/ directory beside {} or above it: the shared test data (fixtures, \
             PromQL conformance scripts) must be checked out as ../shared",
            crate_root.display()
        ));
    };
    let path = dir.join(rel);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing from the shared test data",
            path.display()
        ))
    }
}

// No `use` here: where this file is included into a bench (no test harness) the test
// functions are dropped, and an import would be unused.
#[cfg(test)]
mod tests {
    #[test]
    fn found_beside_the_crate_or_higher_up_and_missing_data_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let crate_root = tmp.path().join("wt/tidemark");
        std::fs::create_dir_all(&crate_root).unwrap();
        // No shared/ above: an error naming the crate root (unless the machine has a
        // shared/ above the temporary directory, which is then no part of this one).
        match super::find_shared(&crate_root, "x") {
            Err(e) => {
                assert!(e.contains("no shared/ directory"), "{e}");
                assert!(e.contains(&crate_root.display().to_string()), "{e}");
            }
            Ok(p) => assert!(!p.starts_with(tmp.path()), "{}", p.display()),
        }
        // Two levels up (a worktree inside a directory of worktrees).
        std::fs::create_dir_all(tmp.path().join("shared/fixtures")).unwrap();
        std::fs::write(tmp.path().join("shared/fixtures/a.prom"), "a 1\n").unwrap();
        assert_eq!(
            super::find_shared(&crate_root, "fixtures/a.prom").unwrap(),
            tmp.path().join("shared/fixtures/a.prom")
        );
        // Beside the crate wins over higher up.
        std::fs::create_dir_all(tmp.path().join("wt/shared/fixtures")).unwrap();
        std::fs::write(tmp.path().join("wt/shared/fixtures/a.prom"), "a 2\n").unwrap();
        assert_eq!(
            super::find_shared(&crate_root, "fixtures/a.prom").unwrap(),
            tmp.path().join("wt/shared/fixtures/a.prom")
        );
        // A shared/ without the file: named in the error, not skipped.
        let e = super::find_shared(&crate_root, "fixtures/b.prom").unwrap_err();
        assert!(
            e.contains("fixtures/b.prom") && e.contains("missing"),
            "{e}"
        );
        // A crate root's own shared/ is not the shared data (only directories above count).
        std::fs::create_dir_all(crate_root.join("shared/fixtures")).unwrap();
        std::fs::write(crate_root.join("shared/fixtures/a.prom"), "a 3\n").unwrap();
        assert_eq!(
            super::find_shared(&crate_root, "fixtures/a.prom").unwrap(),
            tmp.path().join("wt/shared/fixtures/a.prom")
        );
    }

    #[test]
    fn the_checkout_has_its_shared_data() {
        assert!(super::shared("fixtures/exposition").is_dir());
    }
}
