//! A place in the WAL, shared by the writer (where the next commit goes), the tailer (where
//! reading goes on) and holds (what a reader still needs).

use super::segment;

/// A place in the WAL: the segment and the byte offset of the next frame to read in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WalPosition {
    /// Segment index.
    pub segment: u64,
    /// Byte offset in that segment (the file header included), at a frame boundary.
    pub offset: u64,
}

impl WalPosition {
    /// The very beginning: every segment still on disk is read.
    pub const START: WalPosition = WalPosition {
        segment: 0,
        offset: 0,
    };
}

impl std::fmt::Display for WalPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", segment::segment_name(self.segment), self.offset)
    }
}
