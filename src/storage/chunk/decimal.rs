//! Decimal value coding: values that are `m / 10^e` (or `m * 10^-e`) for integers `m` are stored
//! as an integer column of `m`, with the few values that are not (NaN, staleness markers, ±Inf,
//! -0.0, float noise) kept as exceptions.

use super::column::{self, ColumnPlan, Orders};
use crate::encoding::{put_uvarint, put_varint, uvarint_len, varint_len};

/// Largest decimal exponent tried; 10^18 is exact in f64 and mantissas stay inside i64.
pub(super) const MAX_E: u8 = 18;

const POW10: [f64; MAX_E as usize + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];
const NEG_POW10: [f64; MAX_E as usize + 1] = [
    1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
    1e-15, 1e-16, 1e-17, 1e-18,
];

/// Largest |ulp distance| stored as a cheap nudge rather than raw bits.
const MAX_NUDGE: i64 = 1 << 20;

/// How a mantissa becomes a float. Exporters produce both: Go's `float64(ms) / 1000` divides,
/// `float64(ms) * 0.001` multiplies, and the two disagree in the last bit about 13% of the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scale {
    Div,
    Mul,
}

/// Reconstructs a value; the decoder and encoder must share this exact arithmetic.
#[inline(always)]
pub(super) fn recon(m: i64, e: u8, scale: Scale) -> f64 {
    let e = (e as usize).min(MAX_E as usize);
    match scale {
        Scale::Div => m as f64 / POW10[e],
        Scale::Mul => m as f64 * NEG_POW10[e],
    }
}

/// Factor the decoder applies (dividing or multiplying) for exponent `e`.
#[inline]
pub(super) fn factor(e: u8, scale: Scale) -> f64 {
    let e = (e as usize).min(MAX_E as usize);
    match scale {
        Scale::Div => POW10[e],
        Scale::Mul => NEG_POW10[e],
    }
}

#[inline]
fn mantissa(v: f64, e: u8) -> Option<i64> {
    let x = v * POW10[e as usize];
    // 9.2e18 is just under 2^63, so the cast cannot saturate.
    if x.is_finite() && x.abs() < 9.2e18 {
        // Round half away from zero without the libm call; exactness is checked afterwards.
        Some((x + 0.5f64.copysign(x)) as i64)
    } else {
        None
    }
}

/// Smallest exponent at which `v` round-trips exactly, if any.
fn min_exact_e(v: f64, scale: Scale) -> Option<u8> {
    if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
        return None;
    }
    for e in 0..=MAX_E {
        let m = mantissa(v, e)?;
        if recon(m, e, scale).to_bits() == v.to_bits() {
            return Some(e);
        }
    }
    None
}

/// A value that the mantissa column cannot reproduce by itself.
#[derive(Clone, Copy, Debug)]
pub(super) enum Exception {
    /// The value is this many ulps away from the reconstructed mantissa.
    Nudge(i64),
    /// The value's raw bits; its mantissa slot holds an interpolated filler.
    Raw(u64),
}

/// Exception entry tag in the low bit of the (gap << 1 | tag) varint.
pub(super) const EXC_NUDGE: u64 = 0;
pub(super) const EXC_RAW: u64 = 1;

/// A complete decimal encoding of one chunk's values.
pub(super) struct Plan {
    pub(super) scale: Scale,
    pub(super) e: u8,
    pub(super) m: Vec<i64>,
    pub(super) exceptions: Vec<(usize, Exception)>,
    pub(super) column: ColumnPlan,
    /// Bytes of the whole value section (exponent byte, column, exceptions).
    pub(super) cost: usize,
}

fn exceptions_cost(exc: &[(usize, Exception)]) -> usize {
    if exc.is_empty() {
        return 0;
    }
    let mut c = uvarint_len(exc.len() as u64);
    let mut prev = 0usize;
    for (j, &(i, x)) in exc.iter().enumerate() {
        let gap = if j == 0 { i } else { i - prev };
        prev = i;
        c += uvarint_len((gap as u64) << 1);
        c += match x {
            Exception::Nudge(k) => varint_len(k),
            Exception::Raw(_) => 8,
        };
    }
    c
}

/// Histogram of minimal exact exponents; `None` when too many values are not decimals at all,
/// so random floats give up after a handful of probes instead of trying every exponent on all.
fn exponent_histogram(values: &[f64], scale: Scale) -> Option<([u32; MAX_E as usize + 1], usize)> {
    let mut hist = [0u32; MAX_E as usize + 1];
    let mut fails = 0usize;
    let mut last = u8::MAX;
    for (i, &v) in values.iter().enumerate() {
        // Most neighbours share an exponent; check it first, then confirm nothing smaller works.
        let e = if last != u8::MAX
            && mantissa(v, last).is_some_and(|m| recon(m, last, scale).to_bits() == v.to_bits())
            && (last == 0
                || mantissa(v, last - 1)
                    .is_none_or(|m| recon(m, last - 1, scale).to_bits() != v.to_bits()))
        {
            Some(last)
        } else {
            min_exact_e(v, scale)
        };
        match e {
            Some(e) => {
                hist[e as usize] += 1;
                last = e;
            }
            None => {
                if v.is_finite() {
                    fails += 1;
                }
                if fails >= 8 && fails * 4 > i + 1 {
                    return None;
                }
            }
        }
    }
    Some((hist, fails))
}

/// Exponents worth trying: the most common one, the smallest covering 90% of exact values, and
/// the one covering all of them; values needing more digits become nudges or raw exceptions.
fn candidate_exponents(hist: &[u32; MAX_E as usize + 1]) -> Vec<u8> {
    let total: u32 = hist.iter().sum();
    if total == 0 {
        return vec![0];
    }
    let all = hist.iter().rposition(|&c| c > 0).unwrap_or(0) as u8;
    let mut acc = 0u32;
    let mut most = all;
    for (e, &c) in hist.iter().enumerate() {
        acc += c;
        if acc * 10 >= total * 9 {
            most = e as u8;
            break;
        }
    }
    let mut mode = 0u8;
    for (e, &c) in hist.iter().enumerate() {
        if c > hist[mode as usize] {
            mode = e as u8;
        }
    }
    let mut v = vec![mode, most, all];
    v.sort_unstable();
    v.dedup();
    v
}

fn build(values: &[f64], scale: Scale, e: u8, sc: &mut column::Scratch) -> Plan {
    let mut m = Vec::with_capacity(values.len());
    let mut exceptions = Vec::new();
    let mut has_raw = false;
    for (i, &v) in values.iter().enumerate() {
        let bits = v.to_bits();
        let Some(mi) = mantissa(v, e) else {
            m.push(0);
            exceptions.push((i, Exception::Raw(bits)));
            has_raw = true;
            continue;
        };
        let rb = recon(mi, e, scale).to_bits();
        if rb == bits {
            m.push(mi);
            continue;
        }
        // Same sign and both finite: the bit patterns are ordered like the values.
        let r = f64::from_bits(rb);
        let nudge = (v.is_finite() && r.is_finite() && (rb >> 63) == (bits >> 63))
            .then(|| (bits as i64).wrapping_sub(rb as i64))
            .filter(|k| k.abs() <= MAX_NUDGE);
        match nudge {
            Some(k) => {
                m.push(mi);
                exceptions.push((i, Exception::Nudge(k)));
            }
            None => {
                m.push(0);
                exceptions.push((i, Exception::Raw(bits)));
                has_raw = true;
            }
        }
    }
    if has_raw {
        fill_raw_slots(&mut m, &exceptions);
    }
    let column = column::plan(&m, Orders::All, sc);
    let cost = 1 + column.cost + exceptions_cost(&exceptions);
    Plan {
        scale,
        e,
        m,
        exceptions,
        column,
        cost,
    }
}

/// Gives raw-exception slots mantissas that continue their neighbours, so a staleness marker in
/// the middle of a counter does not widen the residuals around it. Fillers step by the last real
/// delta rather than interpolating: sums and differences of real deltas keep their common factor,
/// which a halved delta would break.
fn fill_raw_slots(m: &mut [i64], exceptions: &[(usize, Exception)]) {
    let n = m.len();
    let mut is_raw = vec![false; n];
    for &(i, x) in exceptions {
        if matches!(x, Exception::Raw(_)) {
            is_raw[i] = true;
        }
    }
    let first_real = is_raw.iter().position(|&r| !r);
    let mut prev: Option<i64> = None;
    let mut slope = 0i64;
    for i in 0..n {
        if is_raw[i] {
            m[i] = match prev {
                Some(p) => p.wrapping_add(slope),
                // Leading slots copy the first real value, or zero when there is none.
                None => first_real.map_or(0, |f| m[f]),
            };
        } else if let Some(p) = prev.filter(|_| i > 0 && !is_raw[i - 1]) {
            slope = m[i].wrapping_sub(p);
        }
        prev = Some(m[i]);
    }
}

/// The cheapest decimal encoding of `values`, or `None` if they are not decimals.
pub(super) fn plan(values: &[f64], sc: &mut column::Scratch) -> Option<Plan> {
    let mut best: Option<Plan> = None;
    let mut try_scale = |scale: Scale, best: &mut Option<Plan>| -> Option<(usize, usize)> {
        let (hist, fails) = exponent_histogram(values, scale)?;
        let candidates = candidate_exponents(&hist);
        for &e in &candidates {
            let p = build(values, scale, e, sc);
            if best.as_ref().is_none_or(|b| p.cost < b.cost) {
                *best = Some(p);
            }
        }
        Some((fails, hist.iter().filter(|&&c| c > 0).count()))
    };
    let div = try_scale(Scale::Div, &mut best);
    // Multiplying exporters leave last-bit noise that division reproduces only with many more
    // digits or nudges; only then is the other reconstruction worth a second pass.
    let noisy = div.is_none_or(|(fails, exponents)| fails > 0 || exponents > 1)
        || best.as_ref().is_some_and(|b| !b.exceptions.is_empty());
    if noisy {
        try_scale(Scale::Mul, &mut best);
    }
    best
}

/// Writes the value section planned by [`plan`]: exponent byte, mantissa column, exceptions.
pub(super) fn write(p: &Plan, sc: &mut column::Scratch, out: &mut Vec<u8>) {
    let start = out.len();
    let flag = if p.exceptions.is_empty() { 0 } else { 0x80 };
    out.push(p.e | flag);
    column::write(&p.m, &p.column, sc, out);
    if !p.exceptions.is_empty() {
        put_uvarint(out, p.exceptions.len() as u64);
        let mut prev = 0usize;
        for (j, &(i, x)) in p.exceptions.iter().enumerate() {
            let gap = if j == 0 { i } else { i - prev };
            prev = i;
            match x {
                Exception::Nudge(k) => {
                    put_uvarint(out, ((gap as u64) << 1) | EXC_NUDGE);
                    put_varint(out, k);
                }
                Exception::Raw(bits) => {
                    put_uvarint(out, ((gap as u64) << 1) | EXC_RAW);
                    out.extend_from_slice(&bits.to_le_bytes());
                }
            }
        }
    }
    debug_assert_eq!(out.len() - start, p.cost, "decimal cost estimate drifted");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_are_minimal() {
        assert_eq!(min_exact_e(312.78, Scale::Div), Some(2));
        assert_eq!(min_exact_e(7.19213568e8, Scale::Div), Some(0));
        assert_eq!(min_exact_e(0.000949361, Scale::Div), Some(9));
        assert_eq!(min_exact_e(5512.0 * 0.001, Scale::Mul), Some(3));
        assert_eq!(min_exact_e(f64::NAN, Scale::Div), None);
        assert_eq!(min_exact_e(-0.0, Scale::Div), None);
        assert_eq!(min_exact_e(0.0, Scale::Div), Some(0));
    }

    #[test]
    fn multiplied_values_pick_the_multiplying_scale() {
        let vals: Vec<f64> = (0..240)
            .map(|i| (5512 + i * 37 + (i * i) % 11) as f64 * 0.001)
            .collect();
        let mut sc = column::Scratch::default();
        let p = plan(&vals, &mut sc).unwrap();
        assert_eq!((p.scale, p.e), (Scale::Mul, 3));
        assert!(p.exceptions.is_empty());
    }

    #[test]
    fn raw_slots_continue_their_neighbours() {
        let mut m = vec![10, 20, 0, 0, 50, 60, 0];
        let exc = [
            (2, Exception::Raw(0)),
            (3, Exception::Raw(0)),
            (6, Exception::Raw(0)),
        ];
        fill_raw_slots(&mut m, &exc);
        assert_eq!(m, vec![10, 20, 30, 40, 50, 60, 70]);
        let mut gap = vec![0, 512, 1024, 0, 4096];
        fill_raw_slots(&mut gap, &[(3, Exception::Raw(0))]);
        assert_eq!(gap, vec![0, 512, 1024, 1536, 4096]);
        let mut lead = vec![0, 5, 6];
        fill_raw_slots(&mut lead, &[(0, Exception::Raw(0))]);
        assert_eq!(lead, vec![5, 5, 6]);
    }
}
