//! Round-trip, edge-case and robustness tests for the chunk codec.

use super::*;
use crate::model::{STALE_NAN, STALE_NAN_BITS};
use proptest::prelude::*;

fn bits(s: &[Sample]) -> Vec<(i64, u64)> {
    s.iter().map(|s| (s.t, s.v.to_bits())).collect()
}

fn round_trip(samples: &[Sample]) -> Vec<u8> {
    let enc = encode(samples);
    let mut got = vec![Sample::new(-5, 9.75)];
    decode(&enc, &mut got).unwrap();
    assert_eq!(
        got[0],
        Sample::new(-5, 9.75),
        "decode must append, not overwrite"
    );
    assert_eq!(bits(&got[1..]), bits(samples));
    assert_eq!(num_samples(&enc).unwrap(), samples.len());
    enc
}

/// Small deterministic PRNG for hand-written irregular fixtures.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Irregular scrape times: a 15s grid with millisecond jitter and occasional missed scrapes.
fn jittered_times(rng: &mut Rng, n: usize) -> Vec<i64> {
    let mut t = 1_700_000_003_117i64;
    (0..n)
        .map(|_| {
            t += 15_000 + rng.below(23) as i64 - 11;
            if rng.below(97) == 0 {
                t += 15_000;
            }
            t
        })
        .collect()
}

const SPECIALS: [f64; 8] = [
    f64::NAN,
    STALE_NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    -0.0,
    4.9e-324,
    -2.2250738585072014e-308,
    f64::MAX,
];

#[test]
fn empty_chunk_round_trips() {
    let enc = round_trip(&[]);
    assert_eq!(enc.len(), 2);
}

#[test]
fn single_sample_chunks_round_trip() {
    let mut vals = SPECIALS.to_vec();
    vals.extend([
        0.0,
        1.0,
        312.78,
        -125_000.0,
        0.1 + 0.2,
        f64::from_bits(0x7ff8_dead_beef_0001),
    ]);
    for (i, v) in vals.into_iter().enumerate() {
        for t in [i64::MIN, -1, 0, 1_700_000_010_000 + i as i64, i64::MAX] {
            let enc = round_trip(&[Sample::new(t, v)]);
            assert!(
                enc.len() <= 2 + 1 + 10 + 1 + 1 + 10 + 11,
                "{} bytes",
                enc.len()
            );
        }
    }
}

#[test]
fn first_and_last_samples_survive_at_group_boundaries() {
    // Lengths around the heads (1, 2, 3) and the 32-residual groups, with the odd sample out at
    // the very first and the very last position, where delta coding off-by-ones bite.
    for n in [
        1usize, 2, 3, 4, 31, 32, 33, 34, 35, 64, 65, 66, 67, 120, 479, 480, 481,
    ] {
        let mut rng = Rng(n as u64);
        let ts = jittered_times(&mut rng, n);
        for special_at in [0, n - 1] {
            for special in [STALE_NAN, f64::NAN, -0.0, f64::INFINITY, 17.25] {
                let mut s: Vec<Sample> = ts
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| Sample::new(t, 1000.0 + (i as f64) * 3.5 + rng.below(5) as f64))
                    .collect();
                s[special_at].v = special;
                round_trip(&s);
                // The first and last timestamps are odd ones out too.
                s[0].t -= 1_234_567;
                s[n - 1].t += 987_654_321;
                round_trip(&s);
            }
        }
    }
}

#[test]
fn regular_constant_series_is_tiny() {
    let s: Vec<Sample> = (0..120)
        .map(|i| Sample::new(1_700_000_010_000 + i * 15_000, 25_276_502_016.0))
        .collect();
    let enc = round_trip(&s);
    assert!(enc.len() <= 20, "{} bytes", enc.len());
    assert_eq!(enc[0], FORMAT_VERSION << 4 | MODE_DECIMAL_DIV);
}

#[test]
fn stale_marker_does_not_push_a_counter_off_the_integer_path() {
    let mut rng = Rng(7);
    let ts = jittered_times(&mut rng, 480);
    let mut c = 7.19213568e8;
    let mut s: Vec<Sample> = ts
        .iter()
        .map(|&t| {
            c += (rng.below(200) * 512) as f64;
            Sample::new(t, c)
        })
        .collect();
    let clean = encode(&s).len();
    s[479].v = STALE_NAN;
    s[200].v = STALE_NAN;
    let enc = round_trip(&s);
    assert_eq!(enc[0] & 0x0f, MODE_DECIMAL_DIV);
    assert!(enc.len() <= clean + 32, "{} vs {clean}", enc.len());
    let mut out = Vec::new();
    decode(&enc, &mut out).unwrap();
    assert_eq!(out[479].v.to_bits(), STALE_NAN_BITS);
    assert!(!model_is_stale(out[478].v));
}

fn model_is_stale(v: f64) -> bool {
    crate::model::is_stale_nan(v)
}

#[test]
fn multiplied_decimals_and_float_noise_round_trip_cheaply() {
    let mut rng = Rng(11);
    let ts = jittered_times(&mut rng, 480);
    let mut ms = 5512i64;
    let ms: Vec<i64> = ts
        .iter()
        .map(|_| {
            ms += rng.below(40) as i64;
            ms
        })
        .collect();
    let with = |f: &dyn Fn(i64) -> f64| -> Vec<Sample> {
        ts.iter()
            .zip(&ms)
            .map(|(&t, &m)| Sample::new(t, f(m)))
            .collect()
    };
    // Exact decimals (m / 1000) set the bar; `m * 0.001` differs in the last bit for some values
    // and must cost no more, thanks to the multiplying scale.
    let exact = round_trip(&with(&|m| m as f64 / 1000.0)).len();
    let multiplied = round_trip(&with(&|m| m as f64 * 0.001));
    assert_eq!(multiplied[0] & 0x0f, MODE_DECIMAL_MUL);
    assert!(multiplied.len() <= exact, "{} vs {exact}", multiplied.len());
    // Microseconds made seconds by two divisions match neither scale everywhere; the misses are
    // one-ulp nudges, far cheaper than raw floats.
    let us = |m: i64| m * 1000 + m % 997;
    let exact = round_trip(&with(&|m| us(m) as f64 / 1e6)).len();
    let twice = round_trip(&with(&|m| us(m) as f64 / 1000.0 / 1000.0));
    assert_ne!(twice[0] & 0x0f, MODE_XOR);
    assert!(twice.len() <= exact + 480, "{} vs {exact}", twice.len());
}

#[test]
fn random_floats_fall_back_to_xor() {
    let mut rng = Rng(3);
    let ts = jittered_times(&mut rng, 200);
    let s: Vec<Sample> = ts
        .iter()
        .map(|&t| Sample::new(t, f64::from_bits(rng.next() >> 2) / 3.0))
        .collect();
    let enc = round_trip(&s);
    assert_eq!(enc[0] & 0x0f, MODE_XOR);
}

#[test]
fn failed_decode_leaves_output_untouched() {
    let s: Vec<Sample> = (0..50)
        .map(|i| Sample::new(i * 1000 + i % 7, i as f64 * 0.5))
        .collect();
    let enc = encode(&s);
    let mut out = vec![Sample::new(1, 2.0)];
    assert!(decode(&enc[..enc.len() - 1], &mut out).is_err());
    assert_eq!(out, vec![Sample::new(1, 2.0)]);
}

#[test]
fn unknown_version_and_mode_are_rejected() {
    let s = [Sample::new(10, 1.0), Sample::new(25, 2.0)];
    let mut enc = encode(&s);
    enc[0] = 2 << 4 | (enc[0] & 0x0f);
    assert_eq!(
        decode(&enc, &mut Vec::new()),
        Err(ChunkError::UnsupportedVersion(2))
    );
    enc[0] = FORMAT_VERSION << 4 | 0x0f;
    assert!(matches!(
        decode(&enc, &mut Vec::new()),
        Err(ChunkError::Corrupt { offset: 1, .. })
    ));
}

#[test]
fn a_truncated_varint_is_located_where_it_starts() {
    // The sample count is cut after one continuation byte. The chunk's own reader said byte 2
    // (the end of the bytes); the count starts at byte 1.
    let enc = [FORMAT_VERSION << 4, 0x80];
    let want = ChunkError::Corrupt {
        offset: 1,
        reason: "truncated varint",
    };
    assert_eq!(num_samples(&enc), Err(want.clone()));
    assert_eq!(decode(&enc, &mut Vec::new()), Err(want));
}

#[test]
fn oversized_counts_are_rejected_before_allocating() {
    let mut enc = vec![FORMAT_VERSION << 4];
    put_uvarint(&mut enc, MAX_SAMPLES as u64 + 1);
    assert!(num_samples(&enc).is_err());
    assert!(decode(&enc, &mut Vec::new()).is_err());
}

fn sample_chunks() -> Vec<Vec<u8>> {
    let mut rng = Rng(99);
    let mut chunks = Vec::new();
    for (k, n) in [1usize, 2, 5, 33, 120, 300].into_iter().enumerate() {
        let ts = jittered_times(&mut rng, n);
        let mut level = 100.0;
        let s: Vec<Sample> = ts
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let v = match k % 3 {
                    0 => {
                        level += rng.below(1000) as f64;
                        level
                    }
                    1 => (rng.below(10_000) as f64) / 100.0,
                    _ => f64::from_bits(rng.next()),
                };
                Sample::new(t, if i % 41 == 40 { STALE_NAN } else { v })
            })
            .collect();
        chunks.push(encode(&s));
    }
    chunks
}

#[test]
fn every_truncation_is_an_error() {
    for enc in sample_chunks() {
        for cut in 0..enc.len() {
            assert!(
                decode(&enc[..cut], &mut Vec::new()).is_err(),
                "cut {cut} of {}",
                enc.len()
            );
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert!(decode(&longer, &mut Vec::new()).is_err());
    }
}

#[test]
fn bit_flips_and_random_bytes_never_panic() {
    let mut rng = Rng(2024);
    let mut out = Vec::new();
    for enc in sample_chunks() {
        for bit in 0..enc.len() * 8 {
            let mut bad = enc.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            out.clear();
            if decode(&bad, &mut out).is_ok() {
                assert!(out.len() <= MAX_SAMPLES);
            }
        }
        for _ in 0..200 {
            let mut bad = enc.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(bad.len() as u64) as usize;
                bad[i] = rng.next() as u8;
            }
            out.clear();
            let _ = decode(&bad, &mut out);
        }
    }
    for len in 0..400 {
        for _ in 0..20 {
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Some(b) = buf.first_mut() {
                // Keep the version right half the time so decoding gets past the header.
                if rng.below(2) == 0 {
                    *b = FORMAT_VERSION << 4 | (*b & 0x03);
                }
            }
            out.clear();
            let _ = decode(&buf, &mut out);
            assert!(out.len() <= MAX_SAMPLES);
        }
    }
}

#[derive(Debug, Clone)]
enum ValueKind {
    Counter { start: u32, step: u32, e: u8 },
    Gauge { level: i32, spread: u32, e: u8 },
    Float,
    AnyBits,
}

fn value_kind() -> impl Strategy<Value = ValueKind> {
    prop_oneof![
        (any::<u32>(), 0u32..100_000, 0u8..7).prop_map(|(start, step, e)| ValueKind::Counter {
            start,
            step,
            e
        }),
        (any::<i32>(), 0u32..1000, 0u8..10).prop_map(|(level, spread, e)| ValueKind::Gauge {
            level,
            spread,
            e
        }),
        Just(ValueKind::Float),
        Just(ValueKind::AnyBits),
    ]
}

fn samples_strategy() -> impl Strategy<Value = Vec<Sample>> {
    (
        1usize..2000,
        any::<u64>(),
        value_kind(),
        0u32..40,
        prop_oneof![
            Just(0i64),
            Just(-1_000_000_000_000),
            Just(1_700_000_000_000),
            any::<i64>()
        ],
    )
        .prop_map(|(n, seed, kind, special_per_mille, t0)| {
            let mut rng = Rng(seed);
            let mut t = t0;
            let mut m: i64 = 0;
            let regular = rng.below(3) == 0;
            (0..n)
                .map(|_| {
                    t = t.wrapping_add(match rng.below(if regular { 1 } else { 6 }) {
                        0 => 15_000,
                        1 => 15_000 + rng.below(41) as i64 - 20,
                        2 => 1 + rng.below(3) as i64,
                        3 => rng.below(1 << 40) as i64,
                        4 => 30_000,
                        _ => 1 + rng.below(100_000) as i64,
                    });
                    let v = match &kind {
                        ValueKind::Counter { start, step, e } => {
                            m += rng.below(u64::from(*step) + 1) as i64;
                            (i64::from(*start) + m) as f64 / 10f64.powi(i32::from(*e))
                        }
                        ValueKind::Gauge { level, spread, e } => {
                            let d =
                                rng.below(2 * u64::from(*spread) + 1) as i64 - i64::from(*spread);
                            (i64::from(*level) + d) as f64 / 10f64.powi(i32::from(*e))
                        }
                        ValueKind::Float => (rng.next() as f64) / (rng.next() as f64 + 1.0),
                        ValueKind::AnyBits => f64::from_bits(rng.next()),
                    };
                    if rng.below(1000) < u64::from(special_per_mille) {
                        Sample::new(t, SPECIALS[rng.below(SPECIALS.len() as u64) as usize])
                    } else {
                        Sample::new(t, v)
                    }
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_round_trip(samples in samples_strategy()) {
        let enc = encode(&samples);
        let mut got = Vec::new();
        decode(&enc, &mut got).unwrap();
        prop_assert_eq!(bits(&got), bits(&samples));
        prop_assert_eq!(num_samples(&enc).unwrap(), samples.len());
    }

    #[test]
    fn prop_corrupt_never_panics(samples in samples_strategy(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut enc = encode(&samples);
        for (i, b) in flips {
            let i = i % enc.len();
            enc[i] ^= b | 1;
        }
        let mut got = Vec::new();
        if decode(&enc, &mut got).is_ok() {
            prop_assert!(got.len() <= MAX_SAMPLES);
        } else {
            prop_assert!(got.is_empty());
        }
    }
}
