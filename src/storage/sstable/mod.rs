//! SSTable blocks.
