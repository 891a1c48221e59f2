//! A scrape target's cache from a series' text in the body (`name{labels}` as written) to what
//! the scraper keeps for it, built for the steady state: the same lines, in the same order,
//! scrape after scrape.
//!
//! Decisions:
//! - The texts are kept end to end in one string, in the order the body first listed them, and
//!   each entry (a slot) holds where its text is. The next line's entry is usually the slot after
//!   the last one found: its text is compared with the line and taken without hashing. Reading
//!   the texts in order from one block of memory is what makes this cheap: with a text per heap
//!   allocation, the comparison's cache misses cost more than the rest of a sample's ingestion.
//! - Anything else (a new, moved or removed series) goes through the index: a 64-bit xxh3 of
//!   the text, seeded at random per cache, to the slot; the text is stored once. The text is the
//!   target's to choose, so the seed is secret and a hash is never trusted alone: every answer
//!   compares texts, and a text whose hash another held text already has goes to a second map
//!   keyed by the text itself with std's DoS-resistant hasher.
//! - Slots that series left are reused by new ones; when more than half of the slots or of the
//!   text is dead, both are rebuilt from the live entries in slot order, so the memory of a
//!   shrunk series set is given back and the order is the body's again.
//! - Texts and slots are addressed with `u32`: a cache holding 4 GiB of series text (tens of
//!   millions of series from one target) holds nothing more; its series are parsed every scrape.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// Passes an already mixed 64-bit hash through.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashIndex = HashMap<u64, u32, BuildHasherDefault<PrehashedHasher>>;

/// A slot's `len` when it holds nothing.
const FREE: u32 = u32::MAX;

/// Dead slots or text bytes beyond which (and beyond half the total) the cache is rebuilt.
const COMPACT_MIN: usize = 64;

struct Slot<V> {
    /// Where the text starts in `SeriesCache::text`.
    start: u32,
    /// Its length; [`FREE`] for an empty slot.
    len: u32,
    value: V,
}

/// Series text to `V`, see the module documentation.
pub(crate) struct SeriesCache<V> {
    /// Every held text, end to end (and the dead texts of removed entries until a rebuild).
    text: String,
    /// Bytes of `text` no slot points to.
    dead_text: usize,
    slots: Vec<Slot<V>>,
    /// Empty slots, reused before the vector grows.
    free: Vec<u32>,
    /// Slot by the seeded hash of its text.
    by_hash: HashIndex,
    /// Slots whose text's hash another held text had when they were added.
    collided: HashMap<Box<str>, u32>,
    seed: u64,
    /// The text's hash: xxh3, or in tests one that collides on purpose.
    hasher: fn(&[u8], u64) -> u64,
    /// The slot after the one last found or added: where the next line usually is.
    next: usize,
    len: usize,
}

impl<V> Default for SeriesCache<V> {
    fn default() -> Self {
        SeriesCache::with_hasher(
            xxhash_rust::xxh3::xxh3_64_with_seed,
            RandomState::new().hash_one(0x5ca1_ab1e_u64),
        )
    }
}

impl<V> SeriesCache<V> {
    fn with_hasher(hasher: fn(&[u8], u64) -> u64, seed: u64) -> Self {
        SeriesCache {
            text: String::new(),
            dead_text: 0,
            slots: Vec::new(),
            free: Vec::new(),
            by_hash: HashIndex::default(),
            collided: HashMap::new(),
            seed,
            hasher,
            next: 0,
            len: 0,
        }
    }

    /// Number of texts held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn hash(&self, key: &str) -> u64 {
        (self.hasher)(key.as_bytes(), self.seed)
    }

    /// The text of slot `i` (empty for a free slot).
    fn text_of(&self, i: usize) -> &str {
        match self.slots.get(i) {
            Some(s) if s.len != FREE => {
                let start = s.start as usize;
                self.text.get(start..start + s.len as usize).unwrap_or("")
            }
            _ => "",
        }
    }

    fn holds(&self, i: usize, key: &str) -> bool {
        self.slots.get(i).is_some_and(|s| s.len != FREE) && self.text_of(i) == key
    }

    /// A new scrape starts: its first line is looked for in the first slot.
    pub(crate) fn rewind(&mut self) {
        self.next = 0;
    }

    fn find(&self, key: &str) -> Option<usize> {
        if self.holds(self.next, key) {
            return Some(self.next);
        }
        if let Some(&i) = self.by_hash.get(&self.hash(key))
            && self.holds(i as usize, key)
        {
            return Some(i as usize);
        }
        if self.collided.is_empty() {
            return None;
        }
        self.collided.get(key).map(|&i| i as usize)
    }

    /// The value held for `key`; the next lookup starts after it.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let i = self.find(key)?;
        self.next = i + 1;
        Some(&mut self.slots[i].value)
    }

    /// Holds `value` for `key`, which must not be held yet (look it up first).
    pub(crate) fn insert(&mut self, key: &str, value: V) {
        debug_assert!(self.find(key).is_none());
        let (Ok(start), Ok(len)) = (u32::try_from(self.text.len()), u32::try_from(key.len()))
        else {
            return;
        };
        if len == FREE || start.checked_add(len).is_none() {
            return;
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => match u32::try_from(self.slots.len()) {
                Ok(i) if i != u32::MAX => i,
                _ => return,
            },
        };
        let h = self.hash(key);
        match self.by_hash.entry(h) {
            MapEntry::Vacant(e) => {
                e.insert(i);
            }
            MapEntry::Occupied(_) => {
                self.collided.insert(key.into(), i);
            }
        }
        self.text.push_str(key);
        let slot = Slot { start, len, value };
        match self.slots.get_mut(i as usize) {
            Some(s) => *s = slot,
            None => self.slots.push(slot),
        }
        self.next = i as usize + 1;
        self.len += 1;
    }

    /// Every value held, in slot order.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots
            .iter_mut()
            .filter(|s| s.len != FREE)
            .map(|s| &mut s.value)
    }

    /// Keeps the values for which `keep` is true, dropping the others (`V::default()` stands
    /// in an empty slot).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool)
    where
        V: Default,
    {
        for i in 0..self.slots.len() {
            let s = &mut self.slots[i];
            if s.len == FREE || keep(&mut s.value) {
                continue;
            }
            let (start, len) = (s.start as usize, s.len as usize);
            s.len = FREE;
            s.value = V::default();
            let key = self.text.get(start..start + len).unwrap_or("");
            let h = (self.hasher)(key.as_bytes(), self.seed);
            if self.by_hash.get(&h) == Some(&(i as u32)) {
                self.by_hash.remove(&h);
            } else {
                self.collided.remove(key);
            }
            self.dead_text += len;
            self.free.push(i as u32);
            self.len -= 1;
        }
        let dead_slots = self.free.len();
        if (dead_slots > COMPACT_MIN && dead_slots > self.slots.len() / 2)
            || (self.dead_text > COMPACT_MIN && self.dead_text > self.text.len() / 2)
        {
            self.compact();
        }
        // Growth doubles capacity; what the steady state will not use is given back, leaving
        // room for a few new series.
        let len = self.text.len();
        if self.text.capacity() > len + len / 2 {
            self.text.shrink_to(len + len / 8);
        }
        let len = self.slots.len();
        if self.slots.capacity() > len + len / 2 {
            self.slots.shrink_to(len + len / 8);
        }
    }

    /// Drops everything, memory included.
    pub(crate) fn clear(&mut self) {
        *self = SeriesCache::with_hasher(self.hasher, self.seed);
    }

    /// Rebuilds text, slots and index with only the live entries, in slot order.
    fn compact(&mut self) {
        let old = std::mem::replace(self, SeriesCache::with_hasher(self.hasher, self.seed));
        self.slots.reserve_exact(old.len);
        self.text
            .reserve_exact(old.text.len().saturating_sub(old.dead_text));
        for s in old.slots {
            if s.len == FREE {
                continue;
            }
            let start = s.start as usize;
            let key = old.text.get(start..start + s.len as usize).unwrap_or("");
            self.insert(key, s.value);
        }
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A cache whose hash puts every text in one of `buckets` (0: the real hash).
    fn cache(buckets: u64) -> SeriesCache<u32> {
        let mut c = SeriesCache::default();
        c.hasher = match buckets {
            0 => c.hasher,
            1 => |_, _| 7,
            _ => |b, _| b.len() as u64 % 3,
        };
        c
    }

    #[test]
    fn empty_one_and_the_steady_order() {
        for buckets in [0, 1, 3] {
            let mut c = cache(buckets);
            assert_eq!(c.len(), 0);
            assert_eq!(c.get_mut("a"), None);
            assert_eq!(c.get_mut(""), None);
            c.insert("a", 1);
            assert_eq!((c.len(), c.get_mut("a").copied()), (1, Some(1)));
            c.insert("", 2);
            for text in ["b", "cc", "ddd", "eeee"] {
                c.insert(text, text.len() as u32 + 10);
            }
            // The same lines again, in order, then out of order.
            for _ in 0..2 {
                c.rewind();
                for (text, v) in [("a", 1), ("", 2), ("b", 11), ("cc", 12), ("ddd", 13)] {
                    assert_eq!(c.get_mut(text).copied(), Some(v), "{buckets}: {text:?}");
                }
                assert_eq!(c.get_mut("eeee").copied(), Some(14));
                assert_eq!(c.get_mut("a").copied(), Some(1));
                assert_eq!(c.get_mut("a\0"), None);
                assert_eq!(c.get_mut("x"), None);
            }
            *c.get_mut("b").unwrap() = 99;
            assert_eq!(c.get_mut("b").copied(), Some(99));
        }
    }

    #[test]
    fn removed_texts_are_gone_and_their_slots_reused() {
        for buckets in [0, 1, 3] {
            let mut c = cache(buckets);
            for i in 0..10u32 {
                c.insert(&i.to_string(), i);
            }
            c.retain(|v| *v % 2 == 0);
            assert_eq!(c.len(), 5);
            for i in 0..10u32 {
                let want = (i % 2 == 0).then_some(i);
                assert_eq!(c.get_mut(&i.to_string()).copied(), want, "{buckets}: {i}");
            }
            c.insert("new", 100);
            c.insert("1", 101);
            assert_eq!(c.slots.len(), 10, "freed slots are taken first");
            assert_eq!(c.get_mut("1").copied(), Some(101));
            assert_eq!(c.get_mut("new").copied(), Some(100));
            c.clear();
            assert!(c.len() == 0 && c.get_mut("0").is_none() && c.slots.is_empty());
        }
    }

    #[test]
    fn a_shrunk_series_set_is_compacted() {
        let mut c = cache(0);
        for i in 0..1000u32 {
            c.insert(&format!("m{{i=\"{i}\"}}"), i);
        }
        c.retain(|v| *v >= 990);
        assert_eq!(c.len(), 10);
        assert_eq!(c.slots.len(), 10, "rebuilt with only the live slots");
        assert!(c.free.is_empty());
        let live: usize = (990..1000).map(|i| format!("m{{i=\"{i}\"}}").len()).sum();
        assert_eq!(
            (c.text.len(), c.dead_text),
            (live, 0),
            "and only the live texts"
        );
        c.rewind();
        for i in 990..1000u32 {
            assert_eq!(c.get_mut(&format!("m{{i=\"{i}\"}}")).copied(), Some(i));
        }
        assert_eq!(c.get_mut("m{i=\"5\"}"), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Look a text up; insert it when missing.
        Touch(u8),
        /// Keep values whose low bit is as given.
        Retain(bool),
        Rewind,
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => any::<u8>().prop_map(Op::Touch),
            1 => any::<bool>().prop_map(Op::Retain),
            1 => Just(Op::Rewind),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the sequence of lookups, insertions and removals, and however the hashes
        /// collide, the cache answers as a plain map from text to value does.
        #[test]
        fn behaves_as_a_map(ops in prop::collection::vec(op(), 0..400), buckets in 0u64..4) {
            let mut c = cache(buckets);
            let mut model: HashMap<String, u32> = HashMap::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Touch(k) => {
                        // Texts sharing prefixes and lengths, so hashes and compares both matter.
                        let text = format!("m{{k=\"{}\"}}", k % 200);
                        match (c.get_mut(&text), model.get_mut(&text)) {
                            (Some(v), Some(m)) => {
                                prop_assert_eq!(*v, *m);
                                *v = n as u32;
                                *m = n as u32;
                            }
                            (None, None) => {
                                c.insert(&text, n as u32);
                                model.insert(text, n as u32);
                            }
                            (got, want) => prop_assert!(false, "{text}: {got:?} vs {want:?}"),
                        }
                    }
                    Op::Retain(odd) => {
                        c.retain(|v| (*v % 2 == 1) == odd);
                        model.retain(|_, v| (*v % 2 == 1) == odd);
                    }
                    Op::Rewind => c.rewind(),
                    Op::Clear => {
                        c.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(c.len(), model.len());
            }
            let mut got: Vec<u32> = c.values_mut().map(|v| *v).collect();
            let mut want: Vec<u32> = model.values().copied().collect();
            got.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }
}
