//! Compaction planning: which blocks to merge next. A pure function over block metadata, so every
//! decision is testable without files or threads; `Db` carries the plan out.

use super::sstable::BlockId;

/// What the planner needs to know about a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSpan {
    /// Block id (ULID).
    pub id: BlockId,
    /// Oldest sample time.
    pub mint: i64,
    /// Newest sample time (inclusive).
    pub maxt: i64,
}

/// The aligned window of `width` holding `t`: its start and (exclusive) end, saturating at the
/// ends of `i64` instead of wrapping (storage holds only times far from them, but a block
/// written by an older version may not).
pub fn window(t: i64, width: i64) -> (i64, i64) {
    let width = width.max(1);
    let start = t.div_euclid(width).saturating_mul(width);
    (start, start.saturating_add(width))
}

/// Compaction ranges from a block duration: 1, 3, 12, 36, 108 × `block_duration` (2h → 6h → 24h
/// → 3d → 9d), keeping only those up to `max_range` (retention / 10, or 31 days without retention).
pub fn ranges(block_duration: i64, retention: i64) -> Vec<i64> {
    let max_range = if retention > 0 {
        (retention / 10).max(block_duration)
    } else {
        31 * 24 * 3_600_000
    };
    [1i64, 3, 12, 36, 108]
        .iter()
        .map(|m| m.saturating_mul(block_duration))
        .filter(|&r| r <= max_range)
        .collect()
}

/// The ids of the blocks to merge into one next, or `None` when nothing is due.
///
/// First, blocks whose time ranges overlap (an import, or a flush replayed after a crash) are
/// merged so queries stop paying for the overlap. Then, for each range above the first, smallest
/// first: the blocks that fall inside one aligned window of that range are merged once the window
/// is complete, i.e. ends at or before `frontier` (the head's lowest accepted time), so a window
/// is never compacted while the head may still flush into it.
pub fn plan(blocks: &[BlockSpan], ranges: &[i64], frontier: i64) -> Option<Vec<BlockId>> {
    let mut sorted: Vec<&BlockSpan> = blocks.iter().collect();
    sorted.sort_by_key(|b| (b.mint, b.maxt));

    // Overlap groups: a running group extends while the next block starts before it ends.
    let mut group: Vec<&BlockSpan> = Vec::new();
    let mut group_end = i64::MIN;
    for b in &sorted {
        if !group.is_empty() && b.mint <= group_end {
            group.push(b);
            group_end = group_end.max(b.maxt);
            continue;
        }
        if group.len() > 1 {
            return Some(group.iter().map(|b| b.id.clone()).collect());
        }
        group = vec![b];
        group_end = b.maxt;
    }
    if group.len() > 1 {
        return Some(group.iter().map(|b| b.id.clone()).collect());
    }

    for &r in ranges.iter().skip(1) {
        let mut i = 0;
        while i < sorted.len() {
            let (start, end) = window(sorted[i].mint, r);
            let mut j = i;
            while j < sorted.len() && sorted[j].mint >= start && sorted[j].maxt < end {
                j += 1;
            }
            if j - i >= 2 && end <= frontier {
                return Some(sorted[i..j].iter().map(|b| b.id.clone()).collect());
            }
            i = j.max(i + 1);
        }
    }
    None
}

/// The ids of blocks retention removes: those whose newest sample is older than `retention`
/// before `now_max` (the newest sample stored), then the oldest ones until the blocks' total size
/// is within `max_bytes`. Zero disables either rule. Input: (id, mint, maxt, size in bytes).
pub fn retention(
    blocks: &[(BlockId, i64, i64, u64)],
    now_max: i64,
    retention: i64,
    max_bytes: u64,
) -> Vec<BlockId> {
    let mut sorted: Vec<&(BlockId, i64, i64, u64)> = blocks.iter().collect();
    sorted.sort_by_key(|b| (b.1, b.2));
    let mut out = Vec::new();
    let mut total: u64 = sorted.iter().map(|b| b.3).sum();
    for b in sorted {
        let too_old = retention > 0 && b.2 < now_max.saturating_sub(retention);
        let too_big = max_bytes > 0 && total > max_bytes;
        if too_old || too_big {
            total -= b.3;
            out.push(b.0.clone());
        } else {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn id(s: &str) -> BlockId {
        BlockId(s.into())
    }

    fn ids(s: &[&str]) -> Option<Vec<BlockId>> {
        Some(s.iter().map(|s| id(s)).collect())
    }

    fn span(name: &str, mint: i64, maxt: i64) -> BlockSpan {
        BlockSpan {
            id: id(name),
            mint,
            maxt,
        }
    }

    #[test]
    fn windows_saturate_instead_of_wrapping() {
        assert_eq!(window(7, 5), (5, 10));
        assert_eq!(window(-1, 5), (-5, 0));
        let (start, end) = window(i64::MIN + 1, 2 * H);
        assert!(start <= i64::MIN + 1 && end > i64::MIN + 1);
        let (start, end) = window(i64::MAX, 2 * H);
        assert!(start > i64::MAX - 2 * H && end == i64::MAX);
    }

    #[test]
    fn ranges_follow_retention() {
        assert_eq!(ranges(2 * H, 15 * 24 * H), vec![2 * H, 6 * H, 24 * H]);
        assert_eq!(ranges(2 * H, 0).last(), Some(&(216 * H)));
        assert_eq!(ranges(2 * H, H), vec![2 * H]);
    }

    #[test]
    fn merges_three_2h_blocks_of_a_complete_6h_window() {
        let r = ranges(2 * H, 0);
        let b = [
            span("a", 0, 2 * H - 1),
            span("b", 2 * H, 4 * H - 1),
            span("c", 4 * H, 6 * H - 1),
        ];
        assert_eq!(plan(&b, &r, 6 * H), ids(&["a", "b", "c"]));
        // The window is not complete while the head can still flush into it.
        assert_eq!(plan(&b[..2], &r, 4 * H), None);
        // Two blocks of a complete window are merged too.
        assert_eq!(plan(&b[..2], &r, 7 * H), ids(&["a", "b"]));
        // Blocks of different windows are never merged together.
        let c = [span("x", 4 * H, 6 * H - 1), span("y", 6 * H, 8 * H - 1)];
        assert_eq!(plan(&c, &r[..2], 100 * H), None);
    }

    #[test]
    fn overlapping_blocks_merge_first() {
        let r = ranges(2 * H, 0);
        let b = [
            span("a", 0, 2 * H - 1),
            span("imp", H, 3 * H),
            span("c", 4 * H, 5 * H),
        ];
        assert_eq!(plan(&b, &r, 0), ids(&["a", "imp"]));
    }

    #[test]
    fn retention_by_time_and_size() {
        let b = vec![
            (id("a"), 0, 10, 100),
            (id("b"), 11, 20, 100),
            (id("c"), 21, 30, 100),
        ];
        assert_eq!(retention(&b, 30, 15, 0), vec![id("a")]);
        assert_eq!(retention(&b, 30, 0, 150), vec![id("a"), id("b")]);
        assert!(retention(&b, 30, 0, 0).is_empty());
    }
}
