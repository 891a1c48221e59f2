//! Prometheus's `labels.Labels.Hash()`, which `limit_ratio` turns into each series' sampling
//! offset: to keep the same series as Prometheus, the hash must be bit for bit the same.
//!
//! Prometheus builds use the `stringlabels` label representation by default: every name and
//! value is preceded by its length (one byte below 255, otherwise 255 and three bytes
//! little-endian), and the hash is XXH64 (seed 0) over that whole encoding. The XXH64 here
//! is written from the algorithm's specification because the `xxh64` feature of
//! `xxhash-rust` is not enabled in this crate.

use crate::model::Labels;

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// Prometheus's hash of a label set (see the module docs).
pub(crate) fn labels_hash(labels: &Labels) -> u64 {
    let mut buf = Vec::with_capacity(
        labels
            .iter()
            .map(|(n, v)| n.len() + v.len() + 8)
            .sum::<usize>(),
    );
    for (n, v) in labels.iter() {
        push_sized(&mut buf, n);
        push_sized(&mut buf, v);
    }
    xxh64(&buf)
}

fn push_sized(buf: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len < 255 {
        buf.push(len as u8);
    } else {
        // Prometheus caps label strings at 2^24 bytes, so three bytes always suffice there.
        buf.push(255);
        buf.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
    }
    buf.extend_from_slice(s.as_bytes());
}

/// `limit_ratio`'s sampling offset of a series in [0, 1]: its hash over `u64::MAX`.
pub(crate) fn sample_offset(labels: &Labels) -> f64 {
    labels_hash(labels) as f64 / u64::MAX as f64
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn read_u32(b: &[u8]) -> u64 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u64::from(u32::from_le_bytes(a))
}

fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge_round(acc: u64, val: u64) -> u64 {
    (acc ^ round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

/// XXH64 with seed 0.
pub(crate) fn xxh64(input: &[u8]) -> u64 {
    let mut rest = input;
    let mut h = if input.len() >= 32 {
        let mut v = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
        while rest.len() >= 32 {
            for (i, acc) in v.iter_mut().enumerate() {
                *acc = round(*acc, read_u64(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge_round(h, lane);
        }
        h
    } else {
        P5
    };
    h = h.wrapping_add(input.len() as u64);
    while rest.len() >= 8 {
        h ^= round(0, read_u64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= read_u32(rest).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_reference_vectors() {
        // Published XXH64 (seed 0) values, covering the short paths and the 32-byte stripes.
        assert_eq!(xxh64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc"), 0x44BC_2CF5_AD77_0999);
        assert_eq!(
            xxh64(b"Nobody inspects the spammish repetition"),
            0xFBCE_A83C_8A37_8BF1
        );
    }

    #[test]
    fn labels_hash_uses_length_prefixes() {
        let l = Labels::new([("__name__", "up"), ("job", "node")]).unwrap();
        let mut enc = vec![8u8];
        enc.extend_from_slice(b"__name__");
        enc.push(2);
        enc.extend_from_slice(b"up");
        enc.push(3);
        enc.extend_from_slice(b"job");
        enc.push(4);
        enc.extend_from_slice(b"node");
        assert_eq!(labels_hash(&l), xxh64(&enc));
        let long = "v".repeat(300);
        let l = Labels::new([("a", long.as_str())]).unwrap();
        let mut enc = vec![1u8, b'a', 255, 44, 1, 0];
        enc.extend_from_slice(long.as_bytes());
        assert_eq!(labels_hash(&l), xxh64(&enc));
    }

    #[test]
    fn offsets_lie_in_the_unit_interval() {
        for i in 0..50 {
            let l = Labels::new([("i", i.to_string())]).unwrap();
            let o = sample_offset(&l);
            assert!((0.0..=1.0).contains(&o), "{o}");
        }
    }
}
