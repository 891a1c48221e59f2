//! Matcher resolution over an inverted index, shared by the head and by blocks.
//!
//! Pure set logic over postings lists; it must never touch files or locks itself.

use crate::model::{MatchOp, Matcher};

/// What matcher resolution needs from an index: sorted postings per label pair, the values of a
/// label, and every series.
pub(crate) trait IndexReader {
    /// Series identifier within this index.
    type Id: Ord + Copy;
    /// Sorted ids of series with `name="value"`.
    fn postings(&self, name: &str, value: &str) -> Vec<Self::Id>;
    /// Every value label `name` takes in this index.
    fn label_values(&self, name: &str) -> Vec<String>;
    /// Sorted ids of every series.
    fn all_ids(&self) -> Vec<Self::Id>;
}

/// Sorted ids of the series that satisfy every matcher.
///
/// Matchers that cannot match the empty string select through postings and intersect; matchers
/// that do match it (`a=""`, `a!="x"`, `a!~"x"`) subtract the series they exclude, so a missing
/// label counts as empty, as in Prometheus. All ids are scanned only when no matcher selects.
pub(crate) fn select_ids<I: IndexReader>(ix: &I, matchers: &[Matcher]) -> Vec<I::Id> {
    let (selecting, excluding): (Vec<&Matcher>, Vec<&Matcher>) =
        matchers.iter().partition(|m| !m.matches_empty());
    // Equality first: it is the cheapest and usually the most selective.
    let mut selecting = selecting;
    selecting.sort_by_key(|m| !matches!(m.op, MatchOp::Equal));

    let mut ids: Option<Vec<I::Id>> = None;
    for m in selecting {
        let found = match m.op {
            MatchOp::Equal => ix.postings(&m.name, &m.value),
            _ => union_matching(ix, m, true),
        };
        ids = Some(match ids {
            None => found,
            Some(cur) => intersect(&cur, &found),
        });
        if ids.as_ref().is_some_and(Vec::is_empty) {
            return Vec::new();
        }
    }
    let mut ids = ids.unwrap_or_else(|| ix.all_ids());
    for m in excluding {
        let drop = union_matching(ix, m, false);
        if !drop.is_empty() {
            ids = subtract(&ids, &drop);
        }
    }
    ids
}

/// Union of the postings of every value of `m.name` for which `m.matches(value) == want`.
fn union_matching<I: IndexReader>(ix: &I, m: &Matcher, want: bool) -> Vec<I::Id> {
    let mut out = Vec::new();
    for v in ix.label_values(&m.name) {
        if m.matches(&v) == want {
            out.extend(ix.postings(&m.name, &v));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn intersect<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    struct Naive(Vec<Labels>);
    impl IndexReader for Naive {
        type Id = usize;
        fn postings(&self, name: &str, value: &str) -> Vec<usize> {
            (0..self.0.len())
                .filter(|&i| self.0[i].get(name) == Some(value))
                .collect()
        }
        fn label_values(&self, name: &str) -> Vec<String> {
            let mut v: Vec<String> = self
                .0
                .iter()
                .filter_map(|l| l.get(name).map(str::to_string))
                .collect();
            v.sort();
            v.dedup();
            v
        }
        fn all_ids(&self) -> Vec<usize> {
            (0..self.0.len()).collect()
        }
    }

    #[test]
    fn resolution_equals_a_scan_for_every_operator() {
        let mut series = Vec::new();
        for i in 0..40u32 {
            let mut pairs = vec![("__name__".to_string(), format!("m{}", i % 3))];
            if i % 2 == 0 {
                pairs.push(("job".into(), format!("j{}", i % 5)));
            }
            if i % 7 != 0 {
                pairs.push(("path".into(), format!("/a/{}", i % 4)));
            }
            series.push(Labels::new(pairs).unwrap());
        }
        let ix = Naive(series.clone());
        let ops = [
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::Regex,
            MatchOp::NotRegex,
        ];
        let vals = ["", "j1", "j.*", "j1|j3", "/a/2", "m0", ".+", "nope"];
        for name in ["__name__", "job", "path", "missing"] {
            for op in ops {
                for v in vals {
                    let m = Matcher::new(op, name, v).unwrap();
                    let second = Matcher::new(MatchOp::NotEqual, "job", "j2").unwrap();
                    for ms in [vec![m.clone()], vec![m.clone(), second]] {
                        let want: Vec<usize> = (0..series.len())
                            .filter(|&i| ms.iter().all(|m| m.matches_labels(&series[i])))
                            .collect();
                        assert_eq!(select_ids(&ix, &ms), want, "{ms:?}");
                    }
                }
            }
        }
    }
}
