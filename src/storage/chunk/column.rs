//! Integer columns: a sequence of i64 (timestamps or decimal mantissas) stored as raw values,
//! deltas or delta-of-deltas, whichever is smallest, bit-packed in groups of [`GROUP`].
//!
//! Layout (see docs/format/chunk.md):
//! `kind` byte, heads (first value, first delta) as zigzag varints, then the residuals: either one
//! constant, or `base`, `scale` and groups of `width byte | packed bits | exceptions`.

use super::{ChunkError, CorruptAt};
use crate::encoding::{Decbuf, put_uvarint, put_varint, unzigzag, uvarint_len, varint_len, zigzag};

/// Residuals per bit-packed group. 32 values of width `w` take exactly `4 * w` bytes.
pub(super) const GROUP: usize = 32;

const KIND_ORDER: u8 = 0b0000_0011;
const KIND_CONST: u8 = 0b0000_0100;
const KIND_ZIGZAG: u8 = 0b0000_1000;
const KIND_RESERVED: u8 = 0b1111_0000;

const GROUP_EXCEPTIONS: u8 = 0x80;
const GROUP_WIDTH: u8 = 0x7f;

/// Which residual orders the encoder may choose from.
#[derive(Clone, Copy)]
pub(super) enum Orders {
    /// Timestamps only ever grow, so raw values never win and are not tried.
    DeltaOnly,
    /// Values may hover around a level (raw), trend (delta) or grow smoothly (delta-of-delta).
    All,
}

impl Orders {
    fn list(self) -> &'static [u8] {
        match self {
            Orders::DeltaOnly => &[1, 2],
            Orders::All => &[0, 1, 2],
        }
    }
}

/// How a column will be written, and what it costs in bytes.
#[derive(Clone, Copy, Debug)]
pub(super) struct ColumnPlan {
    pub(super) cost: usize,
    order: u8,
    body: Body,
}

#[derive(Clone, Copy, Debug)]
enum Body {
    /// No residuals (the heads cover every value).
    Empty,
    /// Every residual equals this value.
    Const(i64),
    /// Residuals are `base + scale * q`, with `q` bit-packed (zigzagged when `zigzag`).
    Packed { base: i64, scale: u64, zigzag: bool },
}

/// Reusable buffers so planning a column does not allocate per call.
#[derive(Default)]
pub(super) struct Scratch {
    resid: Vec<i64>,
    sorted: Vec<i64>,
    q: Vec<u64>,
}

/// Number of leading values stored verbatim for `order`.
fn heads(order: u8, n: usize) -> usize {
    (order as usize).min(n)
}

/// Fills `out` with the residuals of `s` at `order`.
fn residuals(s: &[i64], order: u8, out: &mut Vec<i64>) {
    out.clear();
    match order {
        0 => out.extend_from_slice(s),
        1 => out.extend(s.windows(2).map(|w| w[1].wrapping_sub(w[0]))),
        _ => out.extend(s.windows(3).map(|w| {
            w[2].wrapping_sub(w[1])
                .wrapping_sub(w[1].wrapping_sub(w[0]))
        })),
    }
}

fn heads_cost(s: &[i64], order: u8) -> usize {
    let mut c = 0;
    if order >= 1 && !s.is_empty() {
        c += varint_len(s[0]);
    }
    if order >= 2 && s.len() >= 2 {
        c += varint_len(s[1].wrapping_sub(s[0]));
    }
    c
}

/// Binary GCD: no divisions, which matters because planning runs it on every residual.
fn gcd(a: u64, b: u64) -> u64 {
    if a == 0 || b == 0 {
        return a | b;
    }
    let shift = (a | b).trailing_zeros();
    let mut a = a >> a.trailing_zeros();
    let mut b = b;
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// Common factor of all differences between residuals. Every base the planner uses is itself
/// a residual, so this is also the common factor of the offsets from that base.
fn common_scale(resid: &[i64]) -> u64 {
    let first = resid.first().copied().unwrap_or(0);
    let mut scale = 0u64;
    for &r in resid {
        let d = r.wrapping_sub(first).unsigned_abs();
        // Most offsets are already multiples; a division is cheaper than a GCD loop.
        if scale != 0 && d % scale == 0 {
            continue;
        }
        scale = gcd(scale, d);
        if scale == 1 {
            break;
        }
    }
    // A scale of 2^63 cannot be multiplied back as i64 arithmetic without ambiguity; give up on it.
    if scale == 0 || scale > i64::MAX as u64 {
        1
    } else {
        scale
    }
}

/// Offsets of `resid` from `base` (one of the residuals), divided by `scale`, as packed codes.
/// Returns the scale actually used: 1 when some offset wrapped around 64 bits and is not an
/// exact multiple after all.
fn quantise(resid: &[i64], base: i64, zz: bool, scale: u64, q: &mut Vec<u64>) -> u64 {
    q.clear();
    if scale > 1 {
        let s = scale as i64;
        for &r in resid {
            let d = r.wrapping_sub(base);
            let (code, exact) = if zz {
                let x = d / s;
                (zigzag(x), x.wrapping_mul(s) == d)
            } else {
                let x = (d as u64) / scale;
                (x, x.wrapping_mul(scale) == d as u64)
            };
            if !exact {
                return quantise(resid, base, zz, 1, q);
            }
            q.push(code);
        }
        return scale;
    }
    if zz {
        q.extend(resid.iter().map(|&r| zigzag(r.wrapping_sub(base))));
    } else {
        q.extend(resid.iter().map(|&r| r.wrapping_sub(base) as u64));
    }
    1
}

/// Best bit width for one group and its cost in bytes (header byte included). Values that do not
/// fit the width become exceptions: position byte plus varint.
fn group_width(q: &[u64]) -> (u32, usize) {
    // A varint's length depends only on the bit length, so one histogram prices every width.
    let mut count = [0u8; 65];
    let mut max_bits = 0;
    for &x in q {
        let b = (64 - x.leading_zeros()) as usize;
        count[b] += 1;
        max_bits = max_bits.max(b);
    }
    let len = q.len();
    let mut best_w = max_bits as u32;
    let mut best = 1 + (len * max_bits).div_ceil(8);
    let mut exc_cost = 0usize;
    for w in (0..max_bits).rev() {
        let above = count[w + 1] as usize;
        exc_cost += above * (1 + (w + 1).div_ceil(7).max(1));
        let c = 1 + (len * w).div_ceil(8) + 1 + exc_cost;
        if c < best {
            best = c;
            best_w = w as u32;
        }
    }
    (best_w, best)
}

fn packed_cost(q: &[u64]) -> usize {
    q.chunks(GROUP).map(|g| group_width(g).1).sum()
}

/// Chooses order and residual coding for `s` (non-empty) by exact cost.
pub(super) fn plan(s: &[i64], orders: Orders, sc: &mut Scratch) -> ColumnPlan {
    let mut best: Option<ColumnPlan> = None;
    for &order in orders.list() {
        let hc = 1 + heads_cost(s, order);
        if s.len() <= heads(order, s.len()) {
            let p = ColumnPlan {
                cost: hc,
                order,
                body: Body::Empty,
            };
            if best.is_none_or(|b| p.cost < b.cost) {
                best = Some(p);
            }
            continue;
        }
        let mut resid = std::mem::take(&mut sc.resid);
        residuals(s, order, &mut resid);
        let first = resid[0];
        let candidate = if resid.iter().all(|&r| r == first) {
            ColumnPlan {
                cost: hc + varint_len(first),
                order,
                body: Body::Const(first),
            }
        } else {
            sc.sorted.clear();
            sc.sorted.extend_from_slice(&resid);
            let mid = sc.sorted.len() / 2;
            let median = *sc.sorted.select_nth_unstable(mid).1;
            let min = resid.iter().copied().min().unwrap_or(0);
            let common = common_scale(&resid);
            let mut local: Option<ColumnPlan> = None;
            for (base, zz) in [(min, false), (median, true)] {
                let scale = quantise(&resid, base, zz, common, &mut sc.q);
                let cost = hc + varint_len(base) + uvarint_len(scale) + packed_cost(&sc.q);
                if local.is_none_or(|l| cost < l.cost) {
                    local = Some(ColumnPlan {
                        cost,
                        order,
                        body: Body::Packed {
                            base,
                            scale,
                            zigzag: zz,
                        },
                    });
                }
            }
            // Both candidates were evaluated, so `local` is set; fall back to a harmless value.
            local.unwrap_or(ColumnPlan {
                cost: usize::MAX,
                order,
                body: Body::Empty,
            })
        };
        sc.resid = resid;
        if best.is_none_or(|b| candidate.cost < b.cost) {
            best = Some(candidate);
        }
    }
    best.unwrap_or(ColumnPlan {
        cost: 1,
        order: 0,
        body: Body::Empty,
    })
}

/// Writes `s` as planned by [`plan`] on the same data.
pub(super) fn write(s: &[i64], p: &ColumnPlan, sc: &mut Scratch, out: &mut Vec<u8>) {
    let start = out.len();
    let mut kind = p.order;
    match p.body {
        Body::Const(_) => kind |= KIND_CONST,
        Body::Packed { zigzag: true, .. } => kind |= KIND_ZIGZAG,
        _ => {}
    }
    out.push(kind);
    if p.order >= 1 && !s.is_empty() {
        put_varint(out, s[0]);
    }
    if p.order >= 2 && s.len() >= 2 {
        put_varint(out, s[1].wrapping_sub(s[0]));
    }
    match p.body {
        Body::Empty => {}
        Body::Const(c) => put_varint(out, c),
        Body::Packed {
            base,
            scale,
            zigzag,
        } => {
            put_varint(out, base);
            put_uvarint(out, scale);
            let mut resid = std::mem::take(&mut sc.resid);
            residuals(s, p.order, &mut resid);
            let mut q = std::mem::take(&mut sc.q);
            let got = quantise(&resid, base, zigzag, scale, &mut q);
            debug_assert_eq!(got, scale);
            for g in q.chunks(GROUP) {
                write_group(g, out);
            }
            sc.resid = resid;
            sc.q = q;
        }
    }
    debug_assert_eq!(out.len() - start, p.cost, "column cost estimate drifted");
}

fn write_group(g: &[u64], out: &mut Vec<u8>) {
    let (w, _) = group_width(g);
    let fits = |x: u64| w == 64 || x >> w == 0;
    let n_exc = g.iter().filter(|&&x| !fits(x)).count();
    out.push(w as u8 | if n_exc > 0 { GROUP_EXCEPTIONS } else { 0 });
    if w > 0 {
        let mut acc: u128 = 0;
        let mut bits = 0u32;
        for &x in g {
            let v = if fits(x) { x } else { 0 };
            acc |= u128::from(v) << bits;
            bits += w;
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push(acc as u8);
        }
    }
    if n_exc > 0 {
        out.push(n_exc as u8);
        for (i, &x) in g.iter().enumerate() {
            if !fits(x) {
                out.push(i as u8);
                put_uvarint(out, x);
            }
        }
    }
}

/// Slack after packed bytes so the unpacker can always do 16-byte loads.
const PAD: usize = 16;

/// Unpacks `len` values of `w` bits; `src` holds the packed bytes plus [`PAD`] readable bytes.
#[inline]
fn unpack(src: &[u8], w: u32, len: usize, out: &mut [u64; GROUP]) {
    let len = len.min(GROUP);
    if w == 0 {
        out[..len].fill(0);
        return;
    }
    let need = (len * w as usize).div_ceil(8) + PAD;
    if src.len() < need {
        // Unreachable given the caller's contract; zeros keep the decoder total.
        out[..len].fill(0);
        return;
    }
    if w <= 56 {
        let mask = (1u64 << w) - 1;
        for (i, o) in out[..len].iter_mut().enumerate() {
            let bit = i * w as usize;
            let b = bit >> 3;
            let mut word = [0u8; 8];
            word.copy_from_slice(&src[b..b + 8]);
            *o = (u64::from_le_bytes(word) >> (bit & 7)) & mask;
        }
    } else {
        let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
        for (i, o) in out[..len].iter_mut().enumerate() {
            let bit = i * w as usize;
            let b = bit >> 3;
            let mut word = [0u8; 16];
            word.copy_from_slice(&src[b..b + 16]);
            *o = ((u128::from_le_bytes(word) >> (bit & 7)) as u64) & mask;
        }
    }
}

/// Decodes a column of `n` values (n >= 1), calling `emit` once per value in order.
pub(super) fn decode(
    r: &mut Decbuf<'_>,
    n: usize,
    emit: &mut impl FnMut(i64),
) -> Result<(), ChunkError> {
    let kind = r.u8()?;
    if kind & KIND_RESERVED != 0 {
        return Err(r.corrupt("reserved column kind bits set"));
    }
    match kind & KIND_ORDER {
        0 => decode_order::<0>(r, n, kind, emit),
        1 => decode_order::<1>(r, n, kind, emit),
        2 => decode_order::<2>(r, n, kind, emit),
        _ => Err(r.corrupt("unknown column order")),
    }
}

#[inline(always)]
fn step<const ORDER: u8>(s: &mut i64, d: &mut i64, r: i64) -> i64 {
    match ORDER {
        0 => r,
        1 => {
            *s = s.wrapping_add(r);
            *s
        }
        _ => {
            *d = d.wrapping_add(r);
            *s = s.wrapping_add(*d);
            *s
        }
    }
}

fn decode_order<const ORDER: u8>(
    r: &mut Decbuf<'_>,
    n: usize,
    kind: u8,
    emit: &mut impl FnMut(i64),
) -> Result<(), ChunkError> {
    let h = heads(ORDER, n);
    let mut s = 0i64;
    let mut d = 0i64;
    if h >= 1 {
        s = r.varint()?;
        emit(s);
    }
    if h >= 2 {
        d = r.varint()?;
        s = s.wrapping_add(d);
        emit(s);
    }
    let count = n - h;
    if count == 0 {
        if kind & (KIND_CONST | KIND_ZIGZAG) != 0 {
            return Err(r.corrupt("column without residuals has a residual kind"));
        }
        return Ok(());
    }
    if kind & KIND_CONST != 0 {
        if kind & KIND_ZIGZAG != 0 {
            return Err(r.corrupt("constant column marked zigzag"));
        }
        let c = r.varint()?;
        for _ in 0..count {
            emit(step::<ORDER>(&mut s, &mut d, c));
        }
        return Ok(());
    }
    let zz = kind & KIND_ZIGZAG != 0;
    let base = r.varint()?;
    let scale = r.uvarint()?;
    if scale == 0 || scale > i64::MAX as u64 {
        return Err(r.corrupt("column scale out of range"));
    }
    let scale = scale as i64;
    let mut buf = [0u64; GROUP];
    let mut pad = [0u8; GROUP * 8 + PAD];
    let mut left = count;
    while left > 0 {
        let len = left.min(GROUP);
        left -= len;
        let head = r.u8()?;
        let w = u32::from(head & GROUP_WIDTH);
        if w > 64 {
            return Err(r.corrupt("group bit width above 64"));
        }
        let nbytes = (len * w as usize).div_ceil(8);
        if nbytes > r.remaining() {
            return Err(r.corrupt("group truncated"));
        }
        let rest = r.rest();
        if rest.len() >= nbytes + PAD {
            unpack(rest, w, len, &mut buf);
        } else {
            pad[..nbytes].copy_from_slice(&rest[..nbytes]);
            pad[nbytes..nbytes + PAD].fill(0);
            unpack(&pad, w, len, &mut buf);
        }
        r.skip(nbytes)?;
        if head & GROUP_EXCEPTIONS != 0 {
            let k = r.u8()? as usize;
            if k == 0 || k > len {
                return Err(r.corrupt("group exception count out of range"));
            }
            for _ in 0..k {
                let pos = r.u8()? as usize;
                if pos >= len {
                    return Err(r.corrupt("group exception position out of range"));
                }
                buf[pos] = r.uvarint()?;
            }
        }
        if zz {
            for &q in &buf[..len] {
                let v = base.wrapping_add(unzigzag(q).wrapping_mul(scale));
                emit(step::<ORDER>(&mut s, &mut d, v));
            }
        } else {
            for &q in &buf[..len] {
                let v = base.wrapping_add((q as i64).wrapping_mul(scale));
                emit(step::<ORDER>(&mut s, &mut d, v));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &[i64], orders: Orders) -> usize {
        let mut sc = Scratch::default();
        let p = plan(s, orders, &mut sc);
        let mut out = Vec::new();
        write(s, &p, &mut sc, &mut out);
        assert_eq!(out.len(), p.cost);
        let mut got = Vec::new();
        let mut r = Decbuf::new(&out);
        decode(&mut r, s.len(), &mut |v| got.push(v)).unwrap();
        assert_eq!(r.remaining(), 0);
        assert_eq!(got, s);
        out.len()
    }

    #[test]
    fn regular_grid_costs_a_few_bytes() {
        let s: Vec<i64> = (0..480).map(|i| 1_700_000_010_000 + i * 15_000).collect();
        let len = round_trip(&s, Orders::DeltaOnly);
        assert!(len <= 10, "{len}");
    }

    #[test]
    fn one_missed_scrape_is_an_exception_not_a_wide_group() {
        let mut s: Vec<i64> = (0..480).map(|i| 1_700_000_010_000 + i * 15_000).collect();
        s.drain(200..201);
        let len = round_trip(&s, Orders::DeltaOnly);
        assert!(len <= 40, "{len}");
    }

    #[test]
    fn extremes_wrap_without_loss() {
        let s = [i64::MIN, i64::MAX, 0, -1, i64::MIN + 1, 7, i64::MAX - 3];
        round_trip(&s, Orders::All);
        round_trip(&s, Orders::DeltaOnly);
        round_trip(&[i64::MIN, i64::MAX], Orders::All);
        round_trip(&[42], Orders::All);
        round_trip(&[42], Orders::DeltaOnly);
    }

    #[test]
    fn jittery_counter_uses_narrow_groups() {
        let mut x = 1_000_000i64;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let s: Vec<i64> = (0..1000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                x += 1400 + (seed % 61) as i64;
                x
            })
            .collect();
        let len = round_trip(&s, Orders::All);
        // 61 distinct increments need 6 bits; allow headers on top.
        assert!(len < 1000 * 6 / 8 + 60, "{len}");
    }

    #[test]
    fn wrapped_offsets_do_not_fake_a_common_factor() {
        // All true differences are multiples of 7, but the offset of i64::MIN + 1 from 7 wraps
        // around 2^64 and is not; the scale must fall back to 1 there.
        let s = [0, 7, i64::MIN + 1, 14];
        assert_eq!(common_scale(&s), 7);
        let mut q = Vec::new();
        assert_eq!(quantise(&s, i64::MIN + 1, false, 7, &mut q), 7);
        assert_eq!(quantise(&s, 7, true, 7, &mut q), 1);
        let back: Vec<i64> = q.iter().map(|&x| 7i64.wrapping_add(unzigzag(x))).collect();
        assert_eq!(back, s);
        round_trip(&s, Orders::All);
    }

    #[test]
    fn binary_gcd_matches_euclid() {
        fn euclid(mut a: u64, mut b: u64) -> u64 {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        }
        let xs = [
            0u64,
            1,
            2,
            3,
            4096,
            12_288,
            15_000,
            30_000,
            1 << 63,
            u64::MAX,
            999_983,
        ];
        for &a in &xs {
            for &b in &xs {
                assert_eq!(gcd(a, b), euclid(a, b), "{a} {b}");
            }
        }
    }

    #[test]
    fn group_width_prefers_exceptions_for_rare_outliers() {
        let mut g = [0u64; 32];
        g[5] = 1 << 40;
        let (w, cost) = group_width(&g);
        assert_eq!(w, 0);
        assert_eq!(cost, 1 + 1 + 1 + uvarint_len(1 << 40));
        let all_wide = [u64::MAX; 32];
        assert_eq!(group_width(&all_wide), (64, 1 + 256));
    }
}
