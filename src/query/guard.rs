//! What keeps a hostile query from taking the process down: a linear scan of the text that
//! refuses, before the parser sees it, an expression nested deeper than [`MAX_DEPTH`] or whose
//! parsing would cost more than [`MAX_WORK`]; and the threads with large stacks that every
//! parse, walk, evaluation and drop of an expression runs on.
//!
//! The parser (`promql-parser`) and everything that walks its tree (type checks, `Display`,
//! prettifying, the evaluator, the tree's own `Drop`) recurse once per level, and its type
//! check walks a node's left spine at every binary operator, so a chain of n terms costs n²
//! to parse. The scan bounds both: the depth it computes is at least the tree's, and the work
//! is at least the sum of every token's depth, which bounds the parser's quadratic cost. Both
//! limits sit far above what dashboards and generated queries reach (thousands of terms).

use super::QueryError;

/// Deepest expression accepted: a sum of 4,000 terms, `abs(` nested 4,000 times, or
/// parentheses 4,000 deep. The parser's cost is quadratic in a chain's length: about 0.25 s
/// for the 4,000-term sum (0.5 s at 5,000, 4.4 s at 16,000), and everything else it does, as
/// formatting and evaluating, is linear.
pub const MAX_DEPTH: usize = 4_000;

/// Most parsing work accepted (see [`Shape::work`]): twice a [`MAX_DEPTH`]-term chain's, so
/// any query within the depth limit passes unless it holds many such chains.
pub(crate) const MAX_WORK: u64 = 2 * (MAX_DEPTH as u64) * (MAX_DEPTH as u64);

/// Deepest series selector (`match[]`) accepted: a selector has no nesting at all, so a few
/// levels leave room for what the parser rejects with its own message.
pub(crate) const MAX_SELECTOR_DEPTH: usize = 32;

/// Stack of the threads that parse and evaluate queries. Only what a query touches is
/// committed; the rest is address space.
pub(crate) const STACK_SIZE: usize = 256 << 20;

/// One level of grouping in the text: the whole query, or a `(`, `[` or `{` not yet closed.
#[derive(Default)]
struct Group {
    /// Operators directly at this level; each may add a node above the others.
    ops: u64,
    /// Deepest group closed directly inside this one.
    deepest_child: u64,
    /// Operators and bare parentheses inside this group, nested ones included, except inside
    /// function calls and aggregations: what the parser's type check may walk from here.
    walk: u64,
    /// Opened by a function call, an aggregation or a label list (`name(`), whose type the
    /// check reads without walking inside.
    call: bool,
}

/// The bounds a scan computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// At least the depth of the tree the parser would build.
    pub depth: u64,
    /// At least the nodes the parser's type checks visit: for each level, its operators times
    /// what lies under them.
    pub work: u64,
}

impl Group {
    fn cost(&self) -> u64 {
        self.ops.saturating_mul(self.walk)
    }
}

/// Where a string literal or a `#` comment starting at `i` ends (the index after it), and
/// whether it was a string; `None` if neither starts there. The scans skip both, so nothing
/// quoted or commented counts as structure.
fn skip_literal(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let c = *b.get(i)?;
    match c {
        b'#' => {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            Some((i, false))
        }
        b'"' | b'\'' | b'`' => {
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' && c != b'`' {
                    i += 1;
                }
                i += 1;
            }
            Some((i + 1, true))
        }
        _ => None,
    }
}

/// Scans `text` once. Strings and comments are skipped; every operator, `(`, `[` and `{`
/// counts as a level, so the depth is an upper bound on the tree's.
pub(crate) fn shape(text: &str) -> Shape {
    let b = text.as_bytes();
    let mut stack: Vec<Group> = vec![Group::default()];
    let mut work: u64 = 0;
    // Whether the last token was a name, making a `(` after it a call's.
    let mut after_name = false;
    let mut i = 0;
    // Closes the innermost group into its parent.
    fn close(stack: &mut Vec<Group>, work: &mut u64) {
        if stack.len() < 2 {
            return;
        }
        let g = stack.pop().unwrap_or_default();
        let depth = g.ops.saturating_add(g.deepest_child).saturating_add(1);
        *work = work.saturating_add(g.cost());
        if let Some(parent) = stack.last_mut() {
            parent.deepest_child = parent.deepest_child.max(depth);
            if !g.call {
                parent.walk = parent.walk.saturating_add(g.walk).saturating_add(1);
            }
        }
    }
    while i < b.len() {
        if let Some((next, string)) = skip_literal(b, i) {
            i = next;
            after_name = after_name && !string;
            continue;
        }
        let c = b[i];
        let top = stack.len() - 1;
        let mut name = false;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' | b'[' | b'{' => {
                // A `[` adds a range or subquery node above what precedes it.
                if c == b'[' {
                    stack[top].ops += 1;
                    stack[top].walk += 1;
                }
                stack.push(Group {
                    call: c == b'(' && after_name,
                    ..Group::default()
                });
                i += 1;
            }
            b')' | b']' | b'}' => {
                close(&mut stack, &mut work);
                i += 1;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'=' | b'!' | b'<' | b'>' | b'~' => {
                stack[top].ops += 1;
                stack[top].walk += 1;
                while i < b.len() && b"+-*/%^=!<>~".contains(&b[i]) {
                    i += 1;
                }
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b':' || c == b'.' => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b':' | b'.'))
                {
                    i += 1;
                }
                let word = &b[start..i];
                if [&b"and"[..], b"or", b"unless", b"atan2"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    stack[top].ops += 1;
                    stack[top].walk += 1;
                } else {
                    name = !word.eq_ignore_ascii_case(b"bool");
                }
            }
            _ => i += 1,
        }
        after_name = name;
    }
    while stack.len() > 1 {
        close(&mut stack, &mut work);
    }
    let root = &stack[0];
    Shape {
        depth: root.ops + root.deepest_child + 1,
        work: work.saturating_add(root.cost()),
    }
}

/// Refuses `text` if its expression would be deeper than `max_depth` or cost more than
/// [`MAX_WORK`] to parse, with a message that says which limit and by how much.
pub(crate) fn check(text: &str, max_depth: usize) -> Result<(), QueryError> {
    let s = shape(text);
    if s.depth > max_depth as u64 {
        return Err(QueryError::Parse(format!(
            "query too deeply nested: about {} levels of parentheses, function calls and \
             operators, more than the limit of {max_depth}",
            s.depth
        )));
    }
    if s.work > MAX_WORK {
        return Err(QueryError::Parse(format!(
            "query too complex to parse: long operator chains nested {} levels deep in a query \
             of this size; split it into several queries",
            s.depth
        )));
    }
    Ok(())
}

/// Refuses a number written where a duration goes (`x[N]`, a subquery's `[N:M]`, `offset N`)
/// that no duration can hold (2^64 seconds and more, `Inf`, `NaN`): the parser turns it into
/// a `Duration` with a conversion that panics on those.
pub(crate) fn check_durations(text: &str) -> Result<(), QueryError> {
    let b = text.as_bytes();
    let mut brackets = 0usize;
    let mut i = 0;
    let mut after_offset = false;
    while i < b.len() {
        if let Some((next, string)) = skip_literal(b, i) {
            i = next;
            after_offset = after_offset && !string;
            continue;
        }
        let c = b[i];
        match c {
            b'[' => brackets += 1,
            b']' => brackets = brackets.saturating_sub(1),
            _ => {}
        }
        let duration_follows = after_offset || (brackets > 0 && matches!(c, b'[' | b':'));
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.')) {
                i += 1;
            }
            after_offset = b[start..i].eq_ignore_ascii_case(b"offset");
            continue;
        }
        i += 1;
        if !duration_follows {
            if !c.is_ascii_whitespace() {
                after_offset = false;
            }
            continue;
        }
        let signed = after_offset;
        after_offset = false;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        // `offset -5m` is a negative offset of the duration after the sign.
        if signed && i < b.len() && matches!(b[i], b'+' | b'-') {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
        }
        // The number as the lexer reads it: digits, letters, dots, and a sign after an
        // exponent's `e` in a decimal.
        let start = i;
        while i < b.len() {
            let d = b[i];
            let exp_sign = matches!(d, b'+' | b'-')
                && i > start
                && b[i - 1].eq_ignore_ascii_case(&b'e')
                && !b[start..i].iter().any(|x| x.eq_ignore_ascii_case(&b'x'));
            if d.is_ascii_alphanumeric() || d == b'_' || d == b'.' || exp_sign {
                i += 1;
            } else {
                break;
            }
        }
        // Only ASCII bytes were taken, so this is the whole token (a byte `i` stepped into the
        // middle of a character, as after `offset✓`, gives an empty one).
        let word = std::str::from_utf8(&b[start..i]).unwrap_or_default();
        // Hexadecimal and octal literals are read as i64 (the parser refuses larger ones);
        // decimals, `Inf` and `NaN` as f64. (promql-parser's own reader panics on words that
        // are not numbers, so it is not called here.)
        let hex = word.len() > 1 && word.as_bytes()[1].eq_ignore_ascii_case(&b'x');
        if !hex
            && let Ok(secs) = word.parse::<f64>()
            && (secs.is_nan() || secs >= 18_446_744_073_709_551_616.0)
        {
            return Err(QueryError::Parse(format!(
                "duration out of range: {word} seconds"
            )));
        }
    }
    Ok(())
}

/// Parses an expression after [`check`]. Call it on a thread with a [`STACK_SIZE`] stack
/// ([`on_big_stack`] or the engine's pool), and drop the tree there too.
pub fn parse(text: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    check(text, MAX_DEPTH)?;
    check_durations(text)?;
    promql_parser::parser::parse(text).map_err(QueryError::Parse)
}

/// Runs `f` on a new thread with a [`STACK_SIZE`] stack and waits for it.
pub(crate) fn on_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, QueryError> {
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("tidemark-query".into())
            .stack_size(STACK_SIZE)
            .spawn_scoped(s, f)
            .map_err(|e| QueryError::Execution(format!("starting the query thread: {e}")))?;
        h.join()
            .map_err(|_| QueryError::Execution("the query thread panicked".into()))
    })
}

/// Starts `f` on a thread with a [`STACK_SIZE`] stack; its result arrives on the receiver.
/// With `reuse` (a query no deeper than [`KEPT_DEPTH`], see [`reusable`]) it may run on a
/// thread kept from an earlier query, and its thread may be kept afterwards; otherwise it gets
/// a thread of its own, which ends with it.
pub(crate) fn spawn_big_stack<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
    reuse: bool,
) -> Result<tokio::sync::oneshot::Receiver<T>, QueryError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        // The receiver may be gone (the caller timed out): the result is dropped here. If `f`
        // panics, `tx` is dropped unsent and the caller gets an error.
        let _ = tx.send(f());
    });
    kept::run(job, reuse)?;
    Ok(rx)
}

/// Deepest query text (as [`shape`] measures it) run on a kept thread. Its evaluation touches
/// little stack, so a kept thread holds little memory; a deeper query gets a thread of its own
/// whose stack goes when it ends.
pub(crate) const KEPT_DEPTH: u64 = 64;

/// Whether a query with this text may run on a kept thread.
pub(crate) fn reusable(text: &str) -> bool {
    text.len() <= 64 << 10 && shape(text).depth <= KEPT_DEPTH
}

type Job = Box<dyn FnOnce() + Send>;

/// Query threads kept between queries. Starting a thread with a [`STACK_SIZE`] stack (map the
/// stack, clone, fault its first pages in, unmap it at the end) costs about 0.2 ms of wall
/// time here, a fifth of a small dashboard query's whole request; a kept thread takes its next
/// job through a channel instead.
mod kept {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc::{self, RecvTimeoutError, Sender};
    use std::sync::{Mutex, MutexGuard, PoisonError};
    use std::time::Duration;

    use super::{Job, QueryError, STACK_SIZE};

    /// The engine's threads: at most two wait (one per query usually running at once on a
    /// small host), each for a minute.
    static QUERY_THREADS: Kept = Kept::new(2, Duration::from_secs(60));

    /// Runs `job` on a waiting query thread if there is one, else on a new thread (kept
    /// afterwards when `reuse`).
    pub(super) fn run(job: Job, reuse: bool) -> Result<(), QueryError> {
        QUERY_THREADS.run(job, reuse)
    }

    /// A waiting thread: its id and where its next job goes.
    struct Idle {
        id: u64,
        jobs: Sender<Job>,
    }

    /// Threads waiting for jobs.
    pub(super) struct Kept {
        idle: Mutex<Vec<Idle>>,
        next_id: AtomicU64,
        /// Threads kept waiting at most.
        max_idle: usize,
        /// How long a thread waits for a job before it ends.
        idle_for: Duration,
    }

    impl Kept {
        pub(super) const fn new(max_idle: usize, idle_for: Duration) -> Kept {
            Kept {
                idle: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(0),
                max_idle,
                idle_for,
            }
        }

        fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
            // The list is valid whatever a panicking holder did (it only pushes, pops, removes).
            self.idle.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// How many threads wait for a job now.
        #[cfg(test)]
        pub(super) fn waiting(&self) -> usize {
            self.idle().len()
        }

        pub(super) fn run(&'static self, mut job: Job, reuse: bool) -> Result<(), QueryError> {
            if reuse {
                loop {
                    // Popped in a statement of its own: the list's lock is released before the
                    // job is sent (in a `while let` it would be held through the send, and the
                    // woken thread's first lock after its job would wait for it).
                    let next = self.idle().pop();
                    let Some(t) = next else { break };
                    match t.jobs.send(job) {
                        Ok(()) => return Ok(()),
                        // That thread has ended: try the next one.
                        Err(mpsc::SendError(back)) => job = back,
                    }
                }
            }
            std::thread::Builder::new()
                .name("tidemark-query".into())
                .stack_size(STACK_SIZE)
                .spawn(move || {
                    if execute(job) && reuse {
                        self.wait_for_jobs();
                    }
                })
                .map(drop)
                .map_err(|e| QueryError::Execution(format!("starting the query thread: {e}")))
        }

        /// Offers this thread for jobs while fewer than `max_idle` wait, runs what it gets,
        /// and ends after `idle_for` without one.
        fn wait_for_jobs(&self) {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            loop {
                let (tx, rx) = mpsc::channel();
                {
                    let mut idle = self.idle();
                    if idle.len() >= self.max_idle {
                        return;
                    }
                    idle.push(Idle { id, jobs: tx });
                }
                let job = match rx.recv_timeout(self.idle_for) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => {
                        let mut idle = self.idle();
                        if let Some(i) = idle.iter().position(|t| t.id == id) {
                            idle.swap_remove(i);
                            return;
                        }
                        drop(idle);
                        // Taken from the list just now: its job is on the way (or the taker
                        // dropped the sender, and the thread offers itself again).
                        match rx.recv() {
                            Ok(job) => job,
                            Err(_) => continue,
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => continue,
                };
                if !execute(job) {
                    return;
                }
            }
        }
    }

    /// Runs one job; false if it panicked (the thread then ends rather than be kept).
    fn execute(job: Job) -> bool {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_ok();
        crate::query::functions::release_thread_caches();
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits up to 10 s for `cond`.
    fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < until {
            if cond() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        cond()
    }

    /// Runs `f` on `pool` and waits for its result (None if the job died).
    fn on<T: Send + 'static>(
        pool: &'static kept::Kept,
        reuse: bool,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        pool.run(Box::new(move || drop(tx.send(f()))), reuse)
            .unwrap();
        rx.recv().ok()
    }

    fn thread_id() -> std::thread::ThreadId {
        std::thread::current().id()
    }

    /// Sends on its channel when dropped: kept in a thread-local, when its thread ends.
    struct OnExit(std::sync::mpsc::Sender<()>);

    impl Drop for OnExit {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    thread_local! {
        static ON_EXIT: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) };
    }

    /// A job that runs `f` and signals on the returned receiver when its thread has ended
    /// (after the job, the pool's own steps after it: a thread wrongly kept never signals).
    fn noting_exit<T>(
        f: impl FnOnce() -> T + Send + 'static,
    ) -> (
        impl FnOnce() -> T + Send + 'static,
        std::sync::mpsc::Receiver<()>,
    ) {
        let (tx, rx) = std::sync::mpsc::channel();
        let job = move || {
            ON_EXIT.with(|e| *e.borrow_mut() = Some(OnExit(tx)));
            f()
        };
        (job, rx)
    }

    /// Whether the thread behind `exited` ends within 10 s.
    fn ends(exited: &std::sync::mpsc::Receiver<()>) -> bool {
        exited
            .recv_timeout(std::time::Duration::from_secs(10))
            .is_ok()
    }

    #[test]
    fn kept_threads_take_later_jobs_and_end_when_idle_too_long() {
        let pool: &'static kept::Kept = Box::leak(Box::new(kept::Kept::new(
            1,
            std::time::Duration::from_millis(300),
        )));
        let first = on(pool, true, thread_id).unwrap();
        assert!(eventually(|| pool.waiting() == 1));
        // The next job runs on the kept thread, which has the big stack: 64 MiB of locals fit.
        let second = on(pool, true, || {
            let big = [7u8; 64 << 20];
            std::hint::black_box(&big);
            thread_id()
        })
        .unwrap();
        assert_eq!(first, second);
        assert!(eventually(|| pool.waiting() == 1));
        // Without an idle job for a while the thread ends.
        assert!(eventually(|| pool.waiting() == 0));
        let third = on(pool, true, || 3).unwrap();
        assert_eq!(third, 3);
    }

    #[test]
    fn deep_queries_and_panics_do_not_leave_a_thread_behind() {
        let pool: &'static kept::Kept = Box::leak(Box::new(kept::Kept::new(
            2,
            std::time::Duration::from_secs(60),
        )));
        // Not reusable: its thread ends with it (a kept one would wait for a minute).
        let (job, exited) = noting_exit(|| 5);
        assert_eq!(on(pool, false, job), Some(5));
        assert!(
            ends(&exited),
            "a thread of a query that is not reusable was kept"
        );
        assert_eq!(pool.waiting(), 0);
        // A panic drops the job's sender (the caller sees an error) and the thread is not kept.
        let (job, exited) = noting_exit(|| panic!("in a query"));
        assert_eq!(on::<()>(pool, true, job), None);
        assert!(
            ends(&exited),
            "the thread of a query that panicked was kept"
        );
        assert_eq!(pool.waiting(), 0);
        // At most `max_idle` wait, however many ran at once: of four threads, two end.
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let go = std::sync::Arc::new(std::sync::Mutex::new(go_rx));
        let mut done = Vec::new();
        let mut exits = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = std::sync::mpsc::channel();
            let go = go.clone();
            let (job, exited) = noting_exit(move || {
                let _ = go.lock().map(|g| g.recv());
                let _ = tx.send(());
            });
            pool.run(Box::new(job), true).unwrap();
            done.push(rx);
            exits.push(exited);
        }
        for _ in 0..4 {
            go_tx.send(()).unwrap();
        }
        for rx in done {
            rx.recv().unwrap();
        }
        let mut ended = 0;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ended < 2 && std::time::Instant::now() < until {
            ended += exits.iter().filter(|e| e.try_recv().is_ok()).count();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(ended, 2, "more than max_idle threads were kept");
        assert!(eventually(|| pool.waiting() == 2));
        // The other two wait for jobs: none of them ends.
        assert_eq!(exits.iter().filter(|e| e.try_recv().is_ok()).count(), 0);
    }

    #[test]
    fn only_shallow_texts_run_on_kept_threads() {
        assert!(reusable("sum by (job) (rate(x[5m]))"));
        let deep = format!("{}1{}", "-(".repeat(100), ")".repeat(100));
        assert!(!reusable(&deep));
        assert!(!reusable(&"x or ".repeat(20_000)));
    }

    #[test]
    fn depth_bounds_what_the_parser_builds() {
        let chain = format!("1{}", "+1".repeat(444));
        assert_eq!(shape(&chain).depth, 445);
        let abs = format!("{}vector(1){}", "abs(".repeat(507), ")".repeat(507));
        assert!(shape(&abs).depth >= 508);
        let neg = format!("{}1{}", "-(".repeat(801), ")".repeat(801));
        assert_eq!(shape(&neg).depth, 1603);
        // Strings and comments hide no structure.
        assert_eq!(shape(r#"x{a="((((+-"} # ((((("#).depth, 3);
        assert_eq!(shape("a and b or c unless d").depth, 4);
        // Unbalanced closers and openers do not underflow or hide depth.
        assert!(shape(")))(((").depth >= 3);
    }

    #[test]
    fn durations_no_duration_can_hold_are_refused_before_the_parser_panics() {
        for q in [
            "x[3333333333333333333333333]",
            "x[Inf]",
            "x[ nan ]",
            "x[1e+30]",
            "rate(x[5m:1E400])",
            "x offset Inf",
            "x offset 1e20",
            "x offset -Inf",
            "sum(x)[5m:inf]",
        ] {
            let err = parse(q).expect_err(q).to_string();
            assert!(err.contains("duration out of range"), "{q}: {err}");
        }
        // Numbers that fit stay what the parser makes of them; strings are not durations.
        for q in [
            "x[300]",
            "x[1e3]",
            "x[5m:30]",
            "x offset 60",
            "x offset -60",
            "x[0x7FFFFFFFFFFFFFFF]",
            "x{a=\"[Inf]\"}",
            "x * Inf",
            "vector(NaN)",
        ] {
            assert!(parse(q).is_ok(), "{q}");
        }
        // Words that are not numbers are left to the parser's own errors.
        for q in [
            "\u{8f}{!offset\u{27df}!!",
            "x offset\u{27df}5",
            "x[\u{27df}5]",
            "\n[[xxxxxxxxxxxxxxxxxxxxx[",
            "x[0xFFFFFFFFFFFFFFFFF]",
            "x[5x]",
            "x offset foo",
        ] {
            assert!(parse(q).is_err(), "{q}");
        }
    }

    #[test]
    fn limits_refuse_with_a_clear_message() {
        let ok = format!(
            "{}1{}",
            "(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        check(&ok, MAX_DEPTH).unwrap();
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let e = check(&deep, MAX_DEPTH).unwrap_err().to_string();
        assert!(e.contains("too deeply nested") && e.contains("4000"), "{e}");
        for term in ["x", "1", "vector(1)", "sum(rate(x[5m]))", "(a + b)"] {
            let chain = format!("{term}{}", format!(" + {term}").repeat(MAX_DEPTH / 2));
            check(&chain, MAX_DEPTH).unwrap();
        }
        let chain = format!("x{}", " + x".repeat(MAX_DEPTH - 1));
        check(&chain, MAX_DEPTH).unwrap();
        // Several chains, each within the depth limit: the parser's cost is their sum.
        let inner = format!("({}1)", "1+".repeat(1_999));
        let wide = vec![inner; 9].join(" * ");
        assert!(shape(&wide).depth < MAX_DEPTH as u64);
        let e = check(&wide, MAX_DEPTH).unwrap_err().to_string();
        assert!(e.contains("too complex"), "{e}");
    }
}
