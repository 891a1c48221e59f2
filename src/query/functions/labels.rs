//! Label sets of function output: setting one label (`label_replace`, `label_join`,
//! `histogram_quantiles`) and Prometheus's check that one step's output has no label set
//! twice. A leaf of the function library: the per-step functions and the classic histograms
//! both use it, and it uses neither.

use std::collections::HashSet;

use crate::model::Labels;
use crate::query::{QueryError, Vector};

/// `l` with label `name` set to `value` (removed when `value` is empty). Names are not
/// re-validated: callers check the one they set.
pub(super) fn with_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut pairs = Vec::with_capacity(l.len() + 1);
    let mut placed = value.is_empty();
    for (n, v) in l.iter() {
        if n == name {
            continue;
        }
        if !placed && n > name {
            pairs.push((name.to_string(), value.to_string()));
            placed = true;
        }
        pairs.push((n.to_string(), v.to_string()));
    }
    if !placed {
        pairs.push((name.to_string(), value.to_string()));
    }
    Labels::from_sorted_unchecked(pairs)
}

/// Fails as Prometheus does when two samples of one step share a label set.
pub(super) fn check_unique(v: &Vector) -> Result<(), QueryError> {
    let mut seen = HashSet::with_capacity(v.len());
    if v.iter().all(|s| seen.insert(&*s.metric)) {
        Ok(())
    } else {
        Err(QueryError::Execution(
            "vector cannot contain metrics with the same labelset".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::query::Sample;

    #[test]
    fn with_label_keeps_labels_sorted() {
        let l = Labels::new([("b", "2"), ("d", "4")]).unwrap();
        let show = |l: &Labels| l.to_string();
        assert_eq!(show(&with_label(&l, "a", "1")), r#"{a="1", b="2", d="4"}"#);
        assert_eq!(show(&with_label(&l, "c", "3")), r#"{b="2", c="3", d="4"}"#);
        assert_eq!(show(&with_label(&l, "e", "5")), r#"{b="2", d="4", e="5"}"#);
        assert_eq!(show(&with_label(&l, "b", "9")), r#"{b="9", d="4"}"#);
        assert_eq!(show(&with_label(&l, "d", "")), r#"{b="2"}"#);
        assert_eq!(show(&with_label(&l, "x", "")), r#"{b="2", d="4"}"#);
    }

    #[test]
    fn with_label_on_the_empty_set() {
        let empty = Labels::new(Vec::<(&str, &str)>::new()).unwrap();
        assert_eq!(with_label(&empty, "a", "1").to_string(), r#"{a="1"}"#);
        assert!(with_label(&empty, "a", "").is_empty());
    }

    fn sample(pairs: &[(&str, &str)], f: f64) -> Sample {
        Sample {
            h: None,
            metric: Arc::new(Labels::new(pairs.iter().copied()).unwrap()),
            t: 0,
            f,
            drop_name: false,
        }
    }

    #[test]
    fn unique_label_sets_pass_and_a_repeat_fails_with_prometheus_text() {
        assert!(check_unique(&Vector::new()).is_ok());
        let a = sample(&[("job", "a")], 1.0);
        let b = sample(&[("job", "b")], 1.0);
        assert!(check_unique(&vec![a.clone(), b.clone()]).is_ok());
        // Same labels, different values: still one label set twice.
        let again = sample(&[("job", "a")], 2.0);
        let err = check_unique(&vec![a, b, again]).unwrap_err();
        assert!(
            matches!(&err, QueryError::Execution(m)
                if m == "vector cannot contain metrics with the same labelset"),
            "{err:?}"
        );
    }
}
