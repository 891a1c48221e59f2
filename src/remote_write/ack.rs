//! Which WAL position a queue may record: shards finish batches out of order, and a samples
//! frame is done only when every sample it dispatched was sent (or dropped for good). The
//! recorded position is the end of the last frame before the first one not done, so a restart
//! resends at most what was in flight and skips nothing.

use std::collections::VecDeque;

use crate::storage::wal::WalPosition;

/// Frame number, in read order.
pub type Seq = u64;

#[derive(Debug)]
struct Frame {
    /// Samples dispatched minus samples acknowledged; negative while the frame is still open
    /// and its acknowledgements outrun its registration.
    remaining: i64,
    /// Still being dispatched: its total is not known yet.
    open: bool,
    /// Position just past the frame.
    end: WalPosition,
}

/// The acknowledgement state of the frames between the recorded position and the reader.
#[derive(Debug)]
pub struct Acks {
    /// Seq of the first frame in `frames`.
    base: Seq,
    frames: VecDeque<Frame>,
    /// End of the last frame completed in order.
    done: WalPosition,
}

impl Acks {
    /// Tracking that starts at `from` (everything before it is done).
    pub fn new(from: WalPosition) -> Acks {
        Acks {
            base: 0,
            frames: VecDeque::new(),
            done: from,
        }
    }

    /// A frame starts being dispatched; returns its seq.
    pub fn begin(&mut self) -> Seq {
        self.frames.push_back(Frame {
            remaining: 0,
            open: true,
            end: self.done,
        });
        self.base + self.frames.len() as u64 - 1
    }

    /// Frame `seq` dispatched `n` samples in all and ends at `end`.
    pub fn end(&mut self, seq: Seq, end: WalPosition, n: u64) {
        if let Some(f) = self.frame(seq) {
            f.remaining += n as i64;
            f.open = false;
            f.end = end;
        }
        self.advance();
    }

    /// `n` samples of frame `seq` were sent or dropped for good.
    pub fn ack(&mut self, seq: Seq, n: u64) {
        if let Some(f) = self.frame(seq) {
            f.remaining -= n as i64;
        }
        self.advance();
    }

    /// The position a restart may resume from.
    pub fn position(&self) -> WalPosition {
        self.done
    }

    fn frame(&mut self, seq: Seq) -> Option<&mut Frame> {
        let i = seq.checked_sub(self.base)?;
        self.frames.get_mut(usize::try_from(i).ok()?)
    }

    fn advance(&mut self) {
        while let Some(f) = self.frames.front() {
            if f.open || f.remaining > 0 {
                break;
            }
            self.done = self.done.max(f.end);
            self.frames.pop_front();
            self.base += 1;
        }
    }
}

/// The frames a run of consecutive samples belongs to: `(seq, count)` pairs in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Runs(pub Vec<(Seq, u32)>);

impl Runs {
    /// One more sample of frame `seq`.
    pub fn add(&mut self, seq: Seq) {
        match self.0.last_mut() {
            Some((s, n)) if *s == seq => *n += 1,
            _ => self.0.push((seq, 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(segment: u64, offset: u64) -> WalPosition {
        WalPosition { segment, offset }
    }

    #[test]
    fn the_position_waits_for_the_lowest_unfinished_frame() {
        let mut a = Acks::new(pos(3, 8));
        let f0 = a.begin();
        a.end(f0, pos(3, 100), 5);
        let f1 = a.begin();
        // An acknowledgement may come before the frame is fully dispatched.
        a.ack(f1, 2);
        a.end(f1, pos(3, 250), 4);
        let f2 = a.begin();
        a.end(f2, pos(4, 30), 0);
        assert_eq!(a.position(), pos(3, 8));
        a.ack(f1, 2);
        assert_eq!(a.position(), pos(3, 8), "frame 0 still unsent");
        a.ack(f0, 5);
        // Frame 2 dispatched nothing (all dropped): it completes with the others.
        assert_eq!(a.position(), pos(4, 30));
        // Stray acks of finished frames change nothing.
        a.ack(f0, 1);
        assert_eq!(a.position(), pos(4, 30));
    }

    #[test]
    fn runs_coalesce() {
        let mut r = Runs::default();
        for s in [4, 4, 5, 5, 5, 7] {
            r.add(s);
        }
        assert_eq!(r.0, vec![(4, 2), (5, 3), (7, 1)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Against a model: the position is the end of the longest fully acknowledged prefix
        /// of frames, whatever order batches finish in.
        #[test]
        fn position_is_the_longest_done_prefix(
            sizes in prop::collection::vec(0u64..6, 1..30),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..200),
        ) {
            let mut a = Acks::new(pos(1, 8));
            let mut pending: Vec<(Seq, u64)> = Vec::new();
            let ends: Vec<WalPosition> = (0..sizes.len()).map(|i| pos(1 + i as u64 / 4, 100 + i as u64 * 37)).collect();
            for (i, n) in sizes.iter().enumerate() {
                let s = a.begin();
                a.end(s, ends[i], *n);
                for _ in 0..*n { pending.push((s, 1)); }
            }
            let mut left = sizes.clone();
            for ix in order {
                if pending.is_empty() { break; }
                let (s, n) = pending.swap_remove(ix.index(pending.len()));
                a.ack(s, n);
                left[s as usize] -= n;
                let done = left.iter().take_while(|n| **n == 0).count();
                let want = if done == 0 { pos(1, 8) } else { ends[done - 1] };
                prop_assert_eq!(a.position(), want);
            }
        }
    }
}
