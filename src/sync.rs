//! Taking std locks without poisoning: the one place tidemark decides what a panicked holder
//! means. It imports no tidemark module, so every module may use it.
//!
//! A std lock is poisoned when a thread panics while holding it, and `lock()` then returns an
//! error forever after. Tidemark takes every `Mutex`, `RwLock` and `Condvar` wait through the
//! helpers below, which hand out the guard anyway. Why that is sound:
//!
//! - No critical section panics on input: nothing under a lock unwraps outside data or
//!   indexes past what it checked, so a panic there is a bug, not a reaction to a request.
//! - The sections change their data in steps that each leave it valid: one assignment,
//!   insert, push, `Arc` swap or counter (a series' samples, a catalog snapshot, a users map,
//!   a queue's acknowledgements), or a filter that leaves a smaller valid list (the head's
//!   postings during garbage collection: a list not yet filtered still names a removed ref,
//!   and every lookup of a removed ref already answers "no such series"). A panic therefore
//!   leaves data a later holder can use as it is; what is lost is the panicked thread's own
//!   work (one request, one scrape, one flush, which reports its failure).
//! - The WAL stores its own failure, not in a lock: a failed write or fsync marks the log
//!   unusable before the error returns, so continuing after a panic never acknowledges bytes
//!   it cannot vouch for.
//!
//! Honouring the poison instead would turn that one panic into a panic of every later user of
//! the lock (every commit, every query), which is the outage this avoids. A new lock whose
//! section can leave its data half-updated must not be taken through these helpers.

use std::sync::{
    Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, WaitTimeoutResult,
};
use std::time::Duration;

/// Locks `m`, ignoring poisoning (see the module docs).
#[inline]
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes `l` shared, ignoring poisoning (see the module docs).
#[inline]
pub(crate) fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Takes `l` exclusively, ignoring poisoning (see the module docs).
#[inline]
pub(crate) fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` with `guard` released, ignoring poisoning (see the module docs); like
/// [`Condvar::wait`], it may return without a notification, so callers check their condition.
#[inline]
pub(crate) fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` until `condition` is false or `timeout` passes, ignoring poisoning (see the
/// module docs); [`Condvar::wait_timeout_while`] without the error.
#[inline]
pub(crate) fn wait_timeout_while<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
    condition: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
    cv.wait_timeout_while(guard, timeout, condition)
        .unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Poisons `m` by panicking in a thread that holds it after setting the value to 7.
    fn poison(m: &Arc<Mutex<u32>>) {
        let m2 = Arc::clone(m);
        let r = std::thread::spawn(move || {
            let mut g = m2.lock().unwrap();
            *g = 7;
            panic!("holder panics");
        })
        .join();
        assert!(r.is_err());
        assert!(m.is_poisoned());
    }

    #[test]
    fn a_poisoned_mutex_still_hands_out_what_the_holder_left() {
        let m = Arc::new(Mutex::new(1));
        poison(&m);
        // std refuses; the helper goes on with the value the panicked holder wrote.
        assert!(m.lock().is_err());
        assert_eq!(*lock(&m), 7);
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 8);
    }

    #[test]
    fn a_poisoned_rwlock_can_still_be_read_and_written() {
        let l = Arc::new(RwLock::new(vec![1]));
        let l2 = Arc::clone(&l);
        let r = std::thread::spawn(move || {
            let mut g = l2.write().unwrap();
            g.push(2);
            panic!("writer panics");
        })
        .join();
        assert!(r.is_err() && l.is_poisoned());
        assert!(l.read().is_err());
        assert_eq!(*read(&l), [1, 2]);
        write(&l).push(3);
        assert_eq!(*read(&l), [1, 2, 3]);
    }

    #[test]
    fn waits_return_on_notification_and_on_timeout_even_when_poisoned() {
        let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
        let m = Arc::new(Mutex::new(0u32));
        poison(&m);
        // Timeout: the condition never turns false, on a poisoned mutex.
        let cv = Condvar::new();
        let (g, r) = wait_timeout_while(&cv, lock(&m), Duration::from_millis(20), |v| *v == 7);
        assert!(r.timed_out());
        assert_eq!(*g, 7);
        drop(g);
        // Notification: a thread sets the value and wakes the waiter.
        let p2 = Arc::clone(&pair);
        let t = std::thread::spawn(move || {
            *lock(&p2.0) = 5;
            p2.1.notify_all();
        });
        let mut g = lock(&pair.0);
        while *g != 5 {
            g = wait(&pair.1, g);
        }
        drop(g);
        t.join().unwrap();
        let (g, r) =
            wait_timeout_while(&pair.1, lock(&pair.0), Duration::from_secs(60), |v| *v != 5);
        assert!(!r.timed_out());
        assert_eq!(*g, 5);
    }
}
