//! What a store holds, read back whole: every series (any `__name__`) over all time, values as
//! bits so NaNs and stale markers compare exactly. Tests compare it with what they wrote.

use std::collections::BTreeMap;

use tidemark::model::{Labels, MatchOp, Matcher};
use tidemark::storage::Querier;

/// Series → `(timestamp, value bits)` in time order.
pub type Store = BTreeMap<Labels, Vec<(i64, u64)>>;

/// Everything `q` sees.
pub fn read_all(q: &Querier) -> Store {
    let all = Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap();
    q.select(&[all], i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.labels,
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect()
}
