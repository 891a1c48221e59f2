//! One query's large streamed parts on the machine's spare cores. The work a series needs
//! before it is folded into the answer (reading, decoding, computing its windows) is cut into
//! batches of consecutive series; helper threads and the query's own thread compute batches,
//! and the query's thread takes their outputs strictly in batch order, so whatever it folds,
//! counts or checks happens in the order and with the values of a one-thread evaluation.
//!
//! Helper threads are scoped to the one call ([`ordered`]): they borrow the query's view and
//! arguments, and are joined before it returns, on every path (an error, a stop, a panic).
//! How many a query gets is bounded process-wide by the spare cores ([`Helpers`]): queries
//! running at once share them, and one that finds none left computes alone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use crate::sync::{lock, wait};

/// Helper threads running for all queries of the process.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// Cores beyond the one a query runs on.
fn spare_cores() -> usize {
    static SPARE: OnceLock<usize> = OnceLock::new();
    *SPARE.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .saturating_sub(1)
    })
}

/// Whether a query shares its large streamed parts between threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parallel {
    /// Selections large enough to pay, on the spare cores other queries leave.
    Auto,
    /// Never: the query's thread alone.
    #[cfg(test)]
    Off,
    /// Every selection, in small batches, with two helpers whatever the machine has and other
    /// queries use: for tests, whose answers must be those of `Off`.
    #[cfg(test)]
    Always,
}

/// Helper threads one query may start, given back when dropped.
pub(super) struct Helpers {
    n: usize,
    /// The count they were taken from (none when forced).
    counted: Option<&'static AtomicUsize>,
}

impl Helpers {
    /// Up to `want` helpers, as many as the spare cores not used by other queries allow
    /// (possibly none).
    pub(super) fn take(want: usize) -> Helpers {
        Helpers::take_from(&IN_USE, spare_cores(), want)
    }

    /// Up to `want` helpers from `in_use`, which counts at most `limit`.
    fn take_from(in_use: &'static AtomicUsize, limit: usize, want: usize) -> Helpers {
        let mut cur = in_use.load(Ordering::Relaxed);
        loop {
            let n = want.min(limit.saturating_sub(cur));
            if n == 0 {
                return Helpers::forced(0);
            }
            match in_use.compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    return Helpers {
                        n,
                        counted: Some(in_use),
                    };
                }
                Err(now) => cur = now,
            }
        }
    }

    /// `n` helpers whatever the spare cores and other queries (none, or for tests).
    pub(super) fn forced(n: usize) -> Helpers {
        Helpers { n, counted: None }
    }

    /// How many were granted.
    pub(super) fn count(&self) -> usize {
        self.n
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        if let Some(in_use) = self.counted {
            in_use.fetch_sub(self.n, Ordering::AcqRel);
        }
    }
}

/// What the threads of one [`ordered`] call share.
struct Shared<T> {
    state: Mutex<State<T>>,
    /// A batch was taken (room to compute another), or the run stops.
    room: Condvar,
}

struct State<T> {
    /// The next batch nobody computes yet.
    next: usize,
    /// Batches taken by the query's thread so far.
    taken: usize,
    /// Outputs of batches `taken..next`, `None` while being computed.
    outputs: VecDeque<Option<T>>,
    /// Set when the run ends early (the taker stopped, or a thread panicked): helpers leave.
    stop: bool,
}

/// Raises `stop` when dropped (a helper unwinding from a panic, or the taker leaving on any
/// path), so nobody waits for a thread that will not come.
struct StopOnDrop<'s, T> {
    shared: &'s Shared<T>,
    /// Only when unwinding (helpers); always (the taker).
    always: bool,
}

impl<T> Drop for StopOnDrop<'_, T> {
    fn drop(&mut self) {
        if self.always || std::thread::panicking() {
            lock(&self.shared.state).stop = true;
            self.shared.room.notify_all();
        }
    }
}

/// Computes `work(b, scratch)` for every batch `b` in `0..batches`, on `helpers` threads of
/// its own and the caller's thread, and hands each output to `take` on the caller's thread in
/// batch order. At most `ahead` batches are computed and not yet taken, so memory stays
/// bounded however many batches there are. When `take` returns `Ok(false)` or an error, the
/// run stops: batches not started are never computed, helpers finish the batch in hand and
/// are joined, and the error is returned. A panic in any thread is raised again here after
/// all are joined.
pub(super) fn ordered<T, S, E>(
    batches: usize,
    helpers: &Helpers,
    ahead: usize,
    scratch: &(dyn Fn() -> S + Sync),
    work: &(dyn Fn(usize, &mut S) -> T + Sync),
    take: &mut dyn FnMut(T) -> Result<bool, E>,
) -> Result<(), E>
where
    T: Send,
{
    let shared = Shared {
        state: Mutex::new(State {
            next: 0,
            taken: 0,
            outputs: VecDeque::new(),
            stop: false,
        }),
        room: Condvar::new(),
    };
    let ahead = ahead.max(1);
    std::thread::scope(|scope| {
        let shared = &shared;
        for _ in 0..helpers.count() {
            let spawned = std::thread::Builder::new()
                .name("query-helper".into())
                .spawn_scoped(scope, move || helper(shared, batches, ahead, scratch, work));
            // Without it, the query's thread does the work alone.
            if spawned.is_err() {
                break;
            }
        }
        taker(shared, batches, ahead, scratch, work, take)
    })
}

/// A helper: computes the next batch nobody has started while there is room, until none is
/// left or the run stops.
fn helper<T, S>(
    shared: &Shared<T>,
    batches: usize,
    ahead: usize,
    scratch: &(dyn Fn() -> S + Sync),
    work: &(dyn Fn(usize, &mut S) -> T + Sync),
) {
    let _guard = StopOnDrop {
        shared,
        always: false,
    };
    let mut s = scratch();
    loop {
        let mut st = lock(&shared.state);
        let b = loop {
            if st.stop || st.next >= batches {
                return;
            }
            if st.next - st.taken < ahead {
                break claim(&mut st);
            }
            st = wait(&shared.room, st);
        };
        drop(st);
        let out = work(b, &mut s);
        if !store(shared, b, out) {
            return;
        }
    }
}

/// The query's thread: takes outputs in batch order; while the next one is not ready, computes
/// the next batch nobody has started if there is room, else the next one itself.
fn taker<T, S, E>(
    shared: &Shared<T>,
    batches: usize,
    ahead: usize,
    scratch: &(dyn Fn() -> S + Sync),
    work: &(dyn Fn(usize, &mut S) -> T + Sync),
    take: &mut dyn FnMut(T) -> Result<bool, E>,
) -> Result<(), E> {
    let _guard = StopOnDrop {
        shared,
        always: true,
    };
    let mut s: Option<S> = None;
    loop {
        let mut st = lock(&shared.state);
        if st.outputs.front().is_some_and(Option::is_some) {
            let out = st.outputs.pop_front().flatten();
            st.taken += 1;
            drop(st);
            shared.room.notify_one();
            if let Some(out) = out
                && !take(out)?
            {
                return Ok(());
            }
            continue;
        }
        if st.stop || st.taken >= batches {
            // Stopped by a helper's panic (raised again when the scope joins it), or done.
            return Ok(());
        }
        let b = if st.next < batches && st.next - st.taken < ahead {
            claim(&mut st)
        } else {
            // The next batch is a helper's and not done: computed here too rather than waited
            // for, so a helper the system does not run now (a busy machine) never holds the
            // query up. Whichever copy is done first is taken; they are the same.
            st.taken
        };
        drop(st);
        let out = work(b, s.get_or_insert_with(scratch));
        store(shared, b, out);
    }
}

/// Marks the next batch as being computed and returns it.
fn claim<T>(st: &mut MutexGuard<'_, State<T>>) -> usize {
    let b = st.next;
    st.next += 1;
    st.outputs.push_back(None);
    b
}

/// Puts batch `b`'s output in its place unless the other copy got there first (it is then
/// dropped); false when the run has stopped.
fn store<T>(shared: &Shared<T>, b: usize, out: T) -> bool {
    let mut st = lock(&shared.state);
    if st.stop {
        return false;
    }
    let Some(i) = b.checked_sub(st.taken) else {
        return true;
    };
    if let Some(slot @ None) = st.outputs.get_mut(i) {
        *slot = Some(out);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// `n` helpers of the test's own, whatever the machine has and other tests take at once.
    fn with_helpers<R>(n: usize, f: impl FnOnce(&Helpers) -> R) -> R {
        f(&Helpers::forced(n))
    }

    #[test]
    fn outputs_come_in_batch_order_whatever_thread_computes_them() {
        for helpers in [0, 1, 3] {
            for ahead in [1, 2, 7] {
                let got = with_helpers(helpers, |h| {
                    let mut got = Vec::new();
                    ordered::<_, _, ()>(
                        100,
                        h,
                        ahead,
                        &|| (),
                        &|b, _| {
                            // Uneven batches, so threads overtake each other.
                            if b % 7 == 0 {
                                std::thread::sleep(std::time::Duration::from_micros(300));
                            }
                            b * 2
                        },
                        &mut |x| {
                            got.push(x);
                            Ok(true)
                        },
                    )
                    .unwrap();
                    got
                });
                assert_eq!(got, (0..100).map(|b| b * 2).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn no_batch_is_ahead_of_the_taker_by_more_than_allowed() {
        let highest = AtomicUsize::new(0);
        with_helpers(3, |h| {
            let mut taken = 0;
            ordered::<_, _, ()>(
                200,
                h,
                4,
                &|| (),
                &|b, _| {
                    highest.fetch_max(b, Ordering::SeqCst);
                    b
                },
                &mut |b| {
                    assert_eq!(b, taken);
                    taken += 1;
                    // Started batches: up to `ahead` past the one taken before this.
                    assert!(highest.load(Ordering::SeqCst) <= b + 4);
                    Ok(true)
                },
            )
            .unwrap();
            assert_eq!(taken, 200);
        });
    }

    #[test]
    fn a_stop_or_an_error_ends_the_run_without_computing_the_rest() {
        for stop_with_error in [false, true] {
            let computed = AtomicUsize::new(0);
            let r = with_helpers(2, |h| {
                ordered(
                    10_000,
                    h,
                    3,
                    &|| (),
                    &|b, _| {
                        computed.fetch_add(1, Ordering::SeqCst);
                        b
                    },
                    &mut |b| match (b, stop_with_error) {
                        (5, true) => Err("boom"),
                        (5, false) => Ok(false),
                        _ => Ok(true),
                    },
                )
            });
            assert_eq!(r, if stop_with_error { Err("boom") } else { Ok(()) });
            // The helpers were joined: nothing is computed after the call returned.
            let after = computed.load(Ordering::SeqCst);
            assert!(after <= 6 + 3 + 2, "{after}");
            std::thread::sleep(std::time::Duration::from_millis(5));
            assert_eq!(computed.load(Ordering::SeqCst), after);
        }
    }

    #[test]
    fn a_panicking_helper_is_raised_again_instead_of_hanging() {
        let helper_started = AtomicBool::new(false);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_helpers(1, |h| {
                ordered::<_, _, ()>(
                    50,
                    h,
                    50,
                    &|| (),
                    &|b, _| {
                        if std::thread::current().name() == Some("query-helper") {
                            helper_started.store(true, Ordering::SeqCst);
                            panic!("helper failed");
                        }
                        // The query's thread leaves batches to the helper until it has one.
                        let deadline =
                            std::time::Instant::now() + std::time::Duration::from_secs(10);
                        while !helper_started.load(Ordering::SeqCst)
                            && std::time::Instant::now() < deadline
                        {
                            std::thread::yield_now();
                        }
                        b
                    },
                    &mut |_| Ok(true),
                )
            })
        }));
        assert!(helper_started.load(Ordering::SeqCst));
        assert!(r.is_err(), "the helper's panic is not swallowed");
    }

    #[test]
    fn a_helper_that_is_not_running_does_not_hold_the_query_up() {
        // The helper's batch does not finish until every output has been taken: the query's
        // thread must compute it too instead of waiting for it.
        let all_taken = AtomicBool::new(false);
        let helper_gave_up = AtomicBool::new(false);
        with_helpers(1, |h| {
            let mut got = Vec::new();
            ordered::<_, _, ()>(
                20,
                h,
                3,
                &|| (),
                &|b, _| {
                    if std::thread::current().name() == Some("query-helper") {
                        let deadline =
                            std::time::Instant::now() + std::time::Duration::from_secs(20);
                        while !all_taken.load(Ordering::SeqCst) {
                            if std::time::Instant::now() > deadline {
                                helper_gave_up.store(true, Ordering::SeqCst);
                                break;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                    }
                    b
                },
                &mut |b| {
                    got.push(b);
                    if got.len() == 20 {
                        all_taken.store(true, Ordering::SeqCst);
                    }
                    Ok(true)
                },
            )
            .unwrap();
            assert_eq!(got, (0..20).collect::<Vec<_>>());
        });
        assert!(!helper_gave_up.load(Ordering::SeqCst));
    }

    #[test]
    fn helpers_are_bounded_by_the_spare_cores_across_queries() {
        let spare = spare_cores();
        let a = Helpers::take(usize::MAX);
        assert!(a.count() <= spare);
        let b = Helpers::take(usize::MAX);
        assert!(a.count() + b.count() <= spare);
        drop(a);
        drop(b);
        // Other tests take from the process-wide count at the same time: the rest is on a
        // count of this test's own, with three spare cores.
        static IN_USE_HERE: AtomicUsize = AtomicUsize::new(0);
        let take = |want| Helpers::take_from(&IN_USE_HERE, 3, want);
        let a = take(2);
        assert_eq!(a.count(), 2);
        let b = take(usize::MAX);
        assert_eq!(b.count(), 1);
        assert_eq!(take(usize::MAX).count(), 0);
        drop(a);
        assert_eq!(take(usize::MAX).count(), 2);
        drop(b);
        // A shared run that ends (done, stopped by an error) returns, one whose batch panics
        // passes the panic on, and the helpers lent to it come back with their owner (their
        // own `Drop` is what the lines above check).
        for end in ["done", "error", "panic"] {
            let r = std::panic::catch_unwind(|| {
                let h = take(usize::MAX);
                assert_eq!(h.count(), 3);
                ordered(
                    20,
                    &h,
                    4,
                    &|| (),
                    &|b, _| {
                        if end == "panic" && b == 7 {
                            panic!("in a batch");
                        }
                        b
                    },
                    &mut |b| {
                        if end == "error" && b == 3 {
                            Err(b)
                        } else {
                            Ok(true)
                        }
                    },
                )
            });
            assert_eq!(r.is_err(), end == "panic", "{end}");
            assert_eq!(
                take(usize::MAX).count(),
                3,
                "after a query that ended by {end}"
            );
        }
    }
}
