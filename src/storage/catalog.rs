//! The catalog: the set of published blocks a query may read, swapped atomically as a whole.

use std::sync::Arc;

use super::sstable::{Block, BlockId};

/// One immutable snapshot of the published blocks, sorted by time. Readers clone the `Arc` and
/// keep a consistent set for the whole query, even while a compaction swaps blocks.
#[derive(Default)]
pub struct Catalog {
    /// Published blocks, sorted by (mint, id).
    pub blocks: Vec<Arc<Block>>,
}

impl Catalog {
    /// A new snapshot with `add` published and the blocks named in `remove` gone.
    pub fn with(&self, add: Vec<Arc<Block>>, remove: &[BlockId]) -> Catalog {
        let mut blocks: Vec<Arc<Block>> = self
            .blocks
            .iter()
            .filter(|b| !remove.contains(&b.meta().id))
            .cloned()
            .chain(add)
            .collect();
        blocks.sort_by(|a, b| (a.meta().mint, &a.meta().id).cmp(&(b.meta().mint, &b.meta().id)));
        Catalog { blocks }
    }

    /// Newest sample time over all blocks.
    pub fn max_time(&self) -> Option<i64> {
        self.blocks.iter().map(|b| b.meta().maxt).max()
    }

    /// Total bytes of the blocks on disk.
    pub fn size_bytes(&self) -> u64 {
        self.blocks.iter().map(|b| b.meta().size_bytes).sum()
    }
}
