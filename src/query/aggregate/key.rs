//! The part of a label set that decides which group a series joins (`by`/`without` of an
//! aggregation) or which series it matches (`on`/`ignoring` of a binary operator), hashed
//! without building a label set per sample.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use promql_parser::parser::LabelModifier;

use crate::model::{Labels, METRIC_NAME};
use crate::query::Metric;

/// A label pair as a sorted label list holds it, owned or borrowed.
pub(crate) trait Pair {
    /// The label name.
    fn name(&self) -> &str;
    /// The label value.
    fn value(&self) -> &str;
}

impl Pair for (String, String) {
    fn name(&self) -> &str {
        &self.0
    }
    fn value(&self) -> &str {
        &self.1
    }
}

impl Pair for (&str, &str) {
    fn name(&self) -> &str {
        self.0
    }
    fn value(&self) -> &str {
        self.1
    }
}

/// Which labels form the key.
#[derive(Debug, Clone)]
pub(crate) enum KeySpec<'a> {
    /// Only these names (sorted, unique): `by (…)`, `on (…)`, and no modifier at all (none).
    Only(Vec<&'a str>),
    /// Every label except these names (sorted, unique) and `__name__`: `without (…)`,
    /// `ignoring (…)`.
    AllBut(Vec<&'a str>),
}

impl<'a> KeySpec<'a> {
    /// `by`/`on` over `names`, in any order and possibly repeated.
    pub(crate) fn only(names: impl IntoIterator<Item = &'a str>) -> Self {
        KeySpec::Only(sorted_unique(names))
    }

    /// `without`/`ignoring` over `names`; `__name__` is always left out too.
    pub(crate) fn all_but(names: impl IntoIterator<Item = &'a str>) -> Self {
        KeySpec::AllBut(sorted_unique(names))
    }

    /// The key a modifier names: `by`/`on (…)` or `without`/`ignoring (…)`.
    pub(crate) fn of(modifier: &'a LabelModifier) -> Self {
        match modifier {
            LabelModifier::Include(ls) => KeySpec::only(ls.labels.iter().map(String::as_str)),
            LabelModifier::Exclude(ls) => KeySpec::all_but(ls.labels.iter().map(String::as_str)),
        }
    }

    /// True for `by`/`on`, false for `without`/`ignoring`.
    pub(crate) fn is_only(&self) -> bool {
        matches!(self, KeySpec::Only(_))
    }

    /// The listed names, sorted.
    pub(crate) fn names(&self) -> &[&'a str] {
        match self {
            KeySpec::Only(n) | KeySpec::AllBut(n) => n,
        }
    }

    /// True when every series has the same (empty) key, so grouping needs no hashing.
    pub(crate) fn is_empty_key(&self) -> bool {
        matches!(self, KeySpec::Only(names) if names.is_empty())
    }

    /// The selected pairs of `pairs` (sorted by name), in name order.
    pub(crate) fn select<'s, 'p, P: Pair>(&'s self, pairs: &'p [P]) -> Selected<'s, 'a, 'p, P> {
        Selected {
            spec: self,
            pairs,
            pos: 0,
        }
    }

    /// A hash of the selected pairs; `buf` is scratch space reused between calls.
    pub(crate) fn hash<P: Pair>(&self, pairs: &[P], buf: &mut Vec<u8>) -> u64 {
        hash_pairs(self.select(pairs).map(|p| (p.name(), p.value())), buf)
    }

    /// True when `a` and `b` have the same key.
    pub(crate) fn same_key<A: Pair, B: Pair>(&self, a: &[A], b: &[B]) -> bool {
        let mut sa = self.select(a);
        let mut sb = self.select(b);
        loop {
            match (sa.next(), sb.next()) {
                (None, None) => return true,
                (Some(x), Some(y)) if x.name() == y.name() && x.value() == y.value() => {}
                _ => return false,
            }
        }
    }

    /// The key as a label set: an aggregation's output labels, or the match group of a
    /// binary operation (Prometheus's `MatchLabels`).
    pub(crate) fn key_labels<P: Pair>(&self, pairs: &[P]) -> Labels {
        Labels::from_sorted_unchecked(
            self.select(pairs)
                .map(|p| (p.name().to_string(), p.value().to_string()))
                .collect(),
        )
    }
}

fn sorted_unique<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = names.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Iterator over the pairs a [`KeySpec`] selects.
pub(crate) struct Selected<'s, 'a, 'p, P> {
    spec: &'s KeySpec<'a>,
    pairs: &'p [P],
    // Index into the spec's names for `Only`, into `pairs` for `AllBut`.
    pos: usize,
}

impl<'p, P: Pair> Iterator for Selected<'_, '_, 'p, P> {
    type Item = &'p P;

    fn next(&mut self) -> Option<&'p P> {
        match self.spec {
            KeySpec::Only(names) => {
                // Few names and a sorted label list: a binary search per name beats a scan of
                // every label.
                while let Some(name) = names.get(self.pos) {
                    self.pos += 1;
                    if let Ok(i) = self.pairs.binary_search_by(|p| p.name().cmp(name)) {
                        return Some(&self.pairs[i]);
                    }
                }
                None
            }
            KeySpec::AllBut(names) => {
                while let Some(p) = self.pairs.get(self.pos) {
                    self.pos += 1;
                    if p.name() != METRIC_NAME && names.binary_search(&p.name()).is_err() {
                        return Some(p);
                    }
                }
                None
            }
        }
    }
}

/// A hasher for keys that already are good 64-bit hashes.
#[derive(Default)]
pub(crate) struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u64 keys; fold them in so the hasher stays correct.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Hash map over precomputed 64-bit hashes.
pub(crate) type PrehashedMap<K, V> = HashMap<K, V, BuildHasherDefault<PrehashedHasher>>;

const NO_NEXT: u32 = u32::MAX;

/// Assigns dense ordinals (0, 1, 2…) to distinct keys. Keys are looked up by hash, and a hash
/// hit is confirmed by the caller's comparison with the ordinal's representative, so two keys
/// whose hashes collide still get different ordinals.
#[derive(Default)]
pub(crate) struct KeyIndex {
    first: PrehashedMap<u64, u32>,
    // Per ordinal, the next ordinal with the same hash.
    next: Vec<u32>,
}

impl KeyIndex {
    /// The ordinal of the key with hash `hash` for which `same(ordinal)` holds.
    pub(crate) fn find(&self, hash: u64, mut same: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut ord = *self.first.get(&hash)?;
        while ord != NO_NEXT {
            if same(ord as usize) {
                return Some(ord as usize);
            }
            ord = self.next[ord as usize];
        }
        None
    }

    /// As [`KeyIndex::find`], or a new ordinal (`true`) when the key is not there yet; the
    /// caller then records the representative of that ordinal.
    pub(crate) fn find_or_insert(
        &mut self,
        hash: u64,
        same: impl FnMut(usize) -> bool,
    ) -> (usize, bool) {
        if let Some(ord) = self.find(hash, same) {
            return (ord, false);
        }
        let ord = self.next.len() as u32;
        let prev = self.first.insert(hash, ord).unwrap_or(NO_NEXT);
        self.next.push(prev);
        (ord as usize, true)
    }
}

/// A hasher for pointer-sized keys: addresses are aligned, so their low bits need mixing.
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_usize(&mut self, n: usize) {
        // Tuples of addresses arrive one after the other.
        self.0 = self.0.rotate_left(26) ^ n as u64;
    }
}

/// What an evaluation node remembers about each series across steps, by the address of its
/// shared label set. Holding a clone of every [`Metric`] keeps that address from being reused
/// for another label set, so a hit is always the same series.
///
/// It pays only when steps bring the same label sets; when they do not (an upstream node that
/// builds new label sets at every step), it stands aside for a number of steps that doubles
/// each time a probe finds it still useless.
pub(crate) struct SeriesCache<V> {
    map: HashMap<usize, (Metric, V), BuildHasherDefault<AddrHasher>>,
    hits: usize,
    misses: usize,
    /// Steps left to run without the cache.
    bypass: u32,
    /// The next bypass length.
    backoff: u32,
}

impl<V> Default for SeriesCache<V> {
    fn default() -> Self {
        SeriesCache {
            map: HashMap::default(),
            hits: 0,
            misses: 0,
            bypass: 0,
            backoff: MIN_BACKOFF,
        }
    }
}

const MIN_BACKOFF: u32 = 4;
const MAX_BACKOFF: u32 = 256;

impl<V: Copy> SeriesCache<V> {
    /// A cache that never remembers, for a node evaluated at a single step.
    pub(crate) fn disabled() -> Self {
        SeriesCache {
            bypass: u32::MAX,
            ..SeriesCache::default()
        }
    }

    /// The value remembered for `m`, computed by `f` the first time.
    pub(crate) fn get_or_insert_with(&mut self, m: &Metric, f: impl FnOnce() -> V) -> V {
        if self.bypass > 0 {
            return f();
        }
        let addr = Arc::as_ptr(m) as usize;
        if let Some((_, v)) = self.map.get(&addr) {
            self.hits += 1;
            return *v;
        }
        self.misses += 1;
        let v = f();
        self.map.insert(addr, (Arc::clone(m), v));
        v
    }

    /// Call before each step with the number of series it brings (`n`). Judges the last step:
    /// mostly misses after the first step means the label sets are not the same from step to
    /// step, so the cache is dropped and bypassed for a while; it is also dropped when it
    /// holds far more series than a step brings. True when it was dropped.
    pub(crate) fn bound(&mut self, n: usize) -> bool {
        let (hits, misses) = (self.hits, self.misses);
        self.hits = 0;
        self.misses = 0;
        if self.bypass > 0 {
            self.bypass -= 1;
            return false;
        }
        let seen_before = self.map.len() > misses;
        if seen_before && misses > 64 && misses > hits {
            self.bypass = self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            self.map = HashMap::default();
            return true;
        }
        if hits > misses {
            self.backoff = MIN_BACKOFF;
        }
        if self.map.len() > 2 * n + 4096 {
            self.map = HashMap::default();
            return true;
        }
        false
    }

    /// True while values are remembered (not bypassed).
    pub(crate) fn active(&self) -> bool {
        self.bypass == 0
    }
}

/// Dense ordinals for the keys of the series an evaluation node sees, stable across its
/// steps (Prometheus's grouping and signature ordinals), with each series' ordinal cached.
pub(crate) struct KeyOrdinals<'a> {
    spec: KeySpec<'a>,
    index: KeyIndex,
    /// Per ordinal, the first series seen with the key.
    reps: Vec<Metric>,
    series: SeriesCache<u32>,
    buf: Vec<u8>,
}

impl<'a> KeyOrdinals<'a> {
    /// Ordinals of the keys `spec` selects; `remember` caches each series' ordinal for the
    /// steps to come.
    pub(crate) fn new(spec: KeySpec<'a>, remember: bool) -> Self {
        KeyOrdinals {
            spec,
            index: KeyIndex::default(),
            reps: Vec::new(),
            series: if remember {
                SeriesCache::default()
            } else {
                SeriesCache::disabled()
            },
            buf: Vec::new(),
        }
    }

    /// The key selection.
    pub(crate) fn spec(&self) -> &KeySpec<'a> {
        &self.spec
    }

    /// A series with key ordinal `ord`.
    pub(crate) fn rep(&self, ord: usize) -> &Metric {
        &self.reps[ord]
    }

    /// Call before each step with the number of series it brings; true when the per-series
    /// cache was dropped (see [`SeriesCache::bound`]).
    pub(crate) fn begin_step(&mut self, n: usize) -> bool {
        self.series.bound(n)
    }

    /// True while series' ordinals are remembered between steps.
    pub(crate) fn caching(&self) -> bool {
        self.series.active()
    }

    /// The key ordinal of `m`.
    pub(crate) fn ordinal(&mut self, m: &Metric) -> usize {
        let KeyOrdinals {
            spec,
            index,
            reps,
            series,
            buf,
        } = self;
        series.get_or_insert_with(m, || {
            let pairs = m.as_slice();
            let hash = spec.hash(pairs, buf);
            let (ord, new) =
                index.find_or_insert(hash, |o| spec.same_key(pairs, reps[o].as_slice()));
            if new {
                reps.push(Arc::clone(m));
            }
            ord as u32
        }) as usize
    }
}

const NO_SLOT: u32 = u32::MAX;

/// Per-step positions of key ordinals in a step's working list, reset between steps by
/// visiting only the ordinals that were used.
#[derive(Default)]
pub(crate) struct Slots(Vec<u32>);

impl Slots {
    /// The position of `ord`, if it has one this step.
    pub(crate) fn get(&self, ord: usize) -> Option<usize> {
        match self.0.get(ord) {
            Some(&s) if s != NO_SLOT => Some(s as usize),
            _ => None,
        }
    }

    /// Gives `ord` position `pos`.
    pub(crate) fn set(&mut self, ord: usize, pos: usize) {
        if self.0.len() <= ord {
            self.0.resize(ord + 1, NO_SLOT);
        }
        self.0[ord] = pos as u32;
    }

    /// Removes the positions of `ords`.
    pub(crate) fn reset(&mut self, ords: impl IntoIterator<Item = usize>) {
        for o in ords {
            if let Some(s) = self.0.get_mut(o) {
                *s = NO_SLOT;
            }
        }
    }
}

/// A hash of label pairs in the order given (names and values each closed by a 0xff byte,
/// which no UTF-8 text holds); `buf` is scratch space reused between calls.
pub(crate) fn hash_pairs<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    buf: &mut Vec<u8>,
) -> u64 {
    buf.clear();
    for (n, v) in pairs {
        buf.extend_from_slice(n.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(v.as_bytes());
        buf.push(0xff);
    }
    xxhash_rust::xxh3::xxh3_64(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn only_keeps_listed_labels_and_name_when_listed() {
        let m = l(&[
            ("__name__", "up"),
            ("job", "node"),
            ("zone", "b"),
            ("a", "x"),
        ]);
        let by = KeySpec::only(["zone", "job", "missing", "job"]);
        assert_eq!(
            by.key_labels(m.as_slice()).to_string(),
            r#"{job="node", zone="b"}"#
        );
        let by_name = KeySpec::only(["__name__"]);
        assert_eq!(by_name.key_labels(m.as_slice()).to_string(), "up");
    }

    #[test]
    fn all_but_always_drops_the_name() {
        let m = l(&[
            ("__name__", "up"),
            ("job", "node"),
            ("zone", "b"),
            ("a", "x"),
        ]);
        let without = KeySpec::all_but(["a"]);
        assert_eq!(
            without.key_labels(m.as_slice()).to_string(),
            r#"{job="node", zone="b"}"#
        );
        assert_eq!(
            KeySpec::all_but([]).key_labels(m.as_slice()).to_string(),
            r#"{a="x", job="node", zone="b"}"#
        );
    }

    #[test]
    fn hash_separates_names_from_values() {
        // The regression Prometheus guards against: a="aa",b="bb" vs a="a",b="abb".
        let x = l(&[("a", "aa"), ("b", "bb")]);
        let y = l(&[("a", "a"), ("b", "abb")]);
        let spec = KeySpec::only(["a", "b"]);
        let mut buf = Vec::new();
        assert_ne!(
            spec.hash(x.as_slice(), &mut buf),
            spec.hash(y.as_slice(), &mut buf)
        );
        assert!(!spec.same_key(x.as_slice(), y.as_slice()));
    }

    #[test]
    fn same_key_ignores_unselected_labels() {
        let x = l(&[("__name__", "a"), ("job", "j"), ("i", "1")]);
        let y = l(&[("__name__", "b"), ("job", "j"), ("i", "2")]);
        assert!(KeySpec::only(["job"]).same_key(x.as_slice(), y.as_slice()));
        assert!(KeySpec::all_but(["i"]).same_key(x.as_slice(), y.as_slice()));
        assert!(!KeySpec::all_but([]).same_key(x.as_slice(), y.as_slice()));
        let borrowed: Vec<(&str, &str)> = vec![("job", "j")];
        assert!(KeySpec::only(["job"]).same_key(x.as_slice(), &borrowed));
    }

    #[test]
    fn colliding_hashes_get_distinct_ordinals() {
        let keys = ["p", "q", "p", "r", "q"];
        let mut idx = KeyIndex::default();
        let mut reps: Vec<&str> = Vec::new();
        let mut ords = Vec::new();
        for k in keys {
            // Every key hashes to 7: only the comparison tells them apart.
            let (ord, new) = idx.find_or_insert(7, |o| reps[o] == k);
            if new {
                reps.push(k);
            }
            ords.push(ord);
        }
        assert_eq!(ords, [0, 1, 0, 2, 1]);
        assert_eq!(reps.len(), 3);
        assert_eq!(idx.find(7, |o| reps[o] == "r"), Some(2));
        assert_eq!(idx.find(7, |o| reps[o] == "s"), None);
        assert_eq!(idx.find(8, |_| true), None);
    }
}
