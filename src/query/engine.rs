//! The query engine: limits, the bounded pool queries run on, and the entry points the API and
//! the CLI call. Evaluation itself lives in `eval`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use promql_parser::parser::Expr;
use promql_parser::parser::value::ValueType;
use tokio::sync::Semaphore;

use super::eval::{Deadline, Parallel, QueryTimes, Settings, evaluate};
use super::guard::{on_big_stack, parse, reusable, spawn_big_stack};
use super::{Annotations, QueryError, Value};
use crate::storage::Querier;

/// Step of a subquery written without one (`x[1h:]`): Prometheus uses the global evaluation
/// interval, 1m by default.
const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Where Prometheus reports a timeout noticed before evaluation starts.
const IN_EXECUTION: &str = "query execution";

/// Limits and defaults of one engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (5m).
    pub lookback_delta: Duration,
    /// Longest a query may run before it is cancelled (2m).
    pub timeout: Duration,
    /// Most samples a query may hold in memory at once (50,000,000).
    pub max_samples: usize,
    /// Most points one series of a range query may have (11,000).
    pub max_points_per_series: usize,
    /// Queries evaluated (and their answers written) at once; more wait for a slot (20).
    pub max_concurrent: usize,
    /// Keep `__name__` until the end of the query and drop it only from samples that were
    /// marked (Prometheus's `promql-delayed-name-removal`); off as in Prometheus's default.
    pub delayed_name_removal: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_points_per_series: 11_000,
            max_concurrent: 20,
            delayed_name_removal: false,
        }
    }
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    /// The result.
    pub value: Value,
    /// Warnings and infos collected while evaluating.
    pub annotations: Annotations,
}

/// Evaluates PromQL over a [`Querier`].
#[derive(Debug)]
pub struct Engine {
    opts: EngineOptions,
    /// One permit per query allowed to evaluate at once.
    slots: Arc<Semaphore>,
}

/// Raises the cancel flag when dropped, so the blocking evaluation stops as soon as the
/// caller stops waiting for it (timeout, or the request went away).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// An engine with these limits.
    pub fn new(opts: EngineOptions) -> Engine {
        let slots = Arc::new(Semaphore::new(opts.max_concurrent.max(1)));
        Engine { opts, slots }
    }

    /// The limits in force.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `expr` at `time` (ms), waiting for it, within the engine's timeout. It runs on
    /// a thread of its own with a stack for deep expressions.
    pub fn instant_blocking(
        &self,
        querier: &Querier,
        expr: &str,
        time: i64,
    ) -> Result<QueryOutput, QueryError> {
        let deadline = Deadline::new(deadline_after(self.opts.timeout), None);
        on_big_stack(|| run_instant(&self.opts, querier, expr, time, &deadline))?
    }

    /// Evaluates `expr` at every `step` (ms) from `start` to `end` (ms, inclusive), waiting for
    /// it as [`Engine::instant_blocking`] does, within the engine's timeout. The result is always
    /// a matrix.
    pub fn range_blocking(
        &self,
        querier: &Querier,
        expr: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryOutput, QueryError> {
        let deadline = Deadline::new(deadline_after(self.opts.timeout), None);
        on_big_stack(|| run_range(&self.opts, querier, expr, start, end, step, &deadline))?
    }

    /// Parses `expr` and hands the tree to `f`, on a query thread under a slot as a query,
    /// within the engine's timeout: `format_query` and `query_exemplars` go through here, so
    /// a deep or long query never parses, walks or drops on an async worker.
    pub async fn with_parsed<T, F>(&self, expr: String, f: F) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: FnOnce(&Expr) -> T + Send + 'static,
    {
        let reuse = reusable(&expr);
        self.on_pool(None, reuse, move |_| parse(&expr).map(|e| f(&e)), |t| t)
            .await
    }

    /// [`Engine::instant_blocking`] on a query thread, at most `max_concurrent` at once;
    /// `timeout` (capped by the engine's) cancels it.
    pub async fn instant(
        &self,
        querier: Querier,
        expr: String,
        time: i64,
        timeout: Option<Duration>,
    ) -> Result<QueryOutput, QueryError> {
        self.instant_then(querier, expr, time, timeout, |out| out)
            .await
    }

    /// [`Engine::instant`], then `then` on the answer on the same query thread (the API writes
    /// its JSON there: no second hand-off, and the answer is freed where it was built). The
    /// timeout covers the evaluation, not `then`.
    pub async fn instant_then<T, F>(
        &self,
        querier: Querier,
        expr: String,
        time: i64,
        timeout: Option<Duration>,
        then: F,
    ) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: FnOnce(QueryOutput) -> T + Send + 'static,
    {
        let opts = self.opts.clone();
        let reuse = reusable(&expr);
        self.on_pool(
            timeout,
            reuse,
            move |deadline| run_instant(&opts, &querier, &expr, time, deadline),
            then,
        )
        .await
    }

    /// [`Engine::range_blocking`] on a query thread, as [`Engine::instant`].
    pub async fn range(
        &self,
        querier: Querier,
        expr: String,
        start: i64,
        end: i64,
        step: i64,
        timeout: Option<Duration>,
    ) -> Result<QueryOutput, QueryError> {
        self.range_then(querier, expr, (start, end, step), timeout, |out| out)
            .await
    }

    /// [`Engine::range`] over `(start, end, step)`, then `then` on the answer, as
    /// [`Engine::instant_then`].
    pub async fn range_then<T, F>(
        &self,
        querier: Querier,
        expr: String,
        (start, end, step): (i64, i64, i64),
        timeout: Option<Duration>,
        then: F,
    ) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: FnOnce(QueryOutput) -> T + Send + 'static,
    {
        let opts = self.opts.clone();
        let reuse = reusable(&expr);
        self.on_pool(
            timeout,
            reuse,
            move |deadline| run_range(&opts, &querier, &expr, start, end, step, deadline),
            then,
        )
        .await
    }

    /// Waits for a slot, then runs `job` on a query thread (a stack for deep expressions, never
    /// an async worker; kept from an earlier query when `reuse`, see `guard::reusable`) under
    /// one deadline covering the wait too, and `then` on its success on the same thread,
    /// outside the deadline (once the job is done, its answer is not thrown away for the time
    /// `then` takes), unless the caller has gone by then. The slot is held until the thread is done, so a timed-out query still
    /// counts against `max_concurrent` until it notices its cancellation.
    async fn on_pool<U, T, F, G>(
        &self,
        timeout: Option<Duration>,
        reuse: bool,
        job: F,
        then: G,
    ) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: FnOnce(&Deadline) -> Result<U, QueryError> + Send + 'static,
        G: FnOnce(U) -> T + Send + 'static,
    {
        let limit = timeout.map_or(self.opts.timeout, |t| t.min(self.opts.timeout));
        let started = tokio::time::Instant::now();
        let wait_until = started.checked_add(limit);
        let permit = match wait_until {
            Some(at) => tokio::time::timeout_at(at, self.slots.clone().acquire_owned())
                .await
                .map_err(|_| QueryError::Timeout("query queue"))?,
            None => self.slots.clone().acquire_owned().await,
        }
        .map_err(|_| QueryError::Execution("the query engine is shut down".into()))?;
        let cancel = Arc::new(AtomicBool::new(false));
        let guard = CancelOnDrop(cancel.clone());
        let gone = cancel.clone();
        let deadline = Deadline::new(wait_until.map(tokio::time::Instant::into_std), Some(cancel));
        let done = Arc::new(AtomicBool::new(false));
        let job_done = done.clone();
        let mut handle = spawn_big_stack(
            move || {
                let _permit = permit;
                let out = job(&deadline);
                job_done.store(true, Ordering::Release);
                // Nobody waits for an answer the caller gave up on (timed out, or its
                // request went away): it is not written, and the slot is free at once.
                if gone.load(Ordering::Relaxed) {
                    return Err(QueryError::Timeout(IN_EXECUTION));
                }
                out.map(then)
            },
            reuse,
        )?;
        let joined = match wait_until {
            Some(at) => match tokio::time::timeout_at(at, &mut handle).await {
                Ok(j) => j,
                // The job finished in time; `then` is still at work on its answer.
                Err(_) if done.load(Ordering::Acquire) => handle.await,
                Err(_) => return Err(QueryError::Timeout(IN_EXECUTION)),
            },
            None => handle.await,
        };
        drop(guard);
        joined.map_err(|_| QueryError::Execution("query evaluation failed".into()))?
    }
}

/// `now + d`, or no deadline if that is beyond what the clock can represent.
fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

fn settings(opts: &EngineOptions) -> Settings {
    Settings {
        lookback: i64::try_from(opts.lookback_delta.as_millis()).unwrap_or(i64::MAX),
        max_samples: opts.max_samples,
        delayed_name_removal: opts.delayed_name_removal,
        subquery_step: DEFAULT_SUBQUERY_STEP_MS,
        stream_aggregations: true,
        parallel: Parallel::Auto,
        series_binary: true,
    }
}

fn run_instant(
    opts: &EngineOptions,
    querier: &Querier,
    expr: &str,
    time: i64,
    deadline: &Deadline,
) -> Result<QueryOutput, QueryError> {
    let expr = parse(expr)?;
    let times = QueryTimes {
        start: time,
        end: time,
        step: 0,
    };
    let (value, mut annotations) = evaluate(querier, &expr, times, &settings(opts), deadline)?;
    storage_warnings(querier, &mut annotations);
    Ok(QueryOutput { value, annotations })
}

fn run_range(
    opts: &EngineOptions,
    querier: &Querier,
    expr: &str,
    start: i64,
    end: i64,
    step: i64,
    deadline: &Deadline,
) -> Result<QueryOutput, QueryError> {
    if end < start {
        return Err(QueryError::BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    if step <= 0 {
        return Err(QueryError::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive \
             integer"
                .into(),
        ));
    }
    let intervals = (i128::from(end) - i128::from(start)) / i128::from(step);
    if intervals > opts.max_points_per_series as i128 {
        return Err(QueryError::BadData(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query \
             resolution (?step=XX)",
            thousands(opts.max_points_per_series)
        )));
    }
    let expr = parse(expr)?;
    let ty = expr.value_type();
    if !matches!(ty, ValueType::Vector | ValueType::Scalar) {
        let name = match ty {
            ValueType::Matrix => "range vector",
            _ => "string",
        };
        return Err(QueryError::BadData(format!(
            "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
        )));
    }
    let times = QueryTimes { start, end, step };
    let (value, mut annotations) = evaluate(querier, &expr, times, &settings(opts), deadline)?;
    storage_warnings(querier, &mut annotations);
    Ok(QueryOutput { value, annotations })
}

/// Blocks the storage left out of the answer (found corrupt while reading) become warnings, as
/// Prometheus reports partial data.
fn storage_warnings(querier: &Querier, annotations: &mut Annotations) {
    for w in querier.warnings() {
        annotations.warn(w);
    }
}

/// `11000` as Prometheus prints it in its resolution error: `11,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::storage::{Db, Options};

    #[tokio::test]
    async fn queries_wait_for_a_slot_and_time_out_in_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut app = db.appender();
        let l = Labels::new([("__name__", "g"), ("job", "a")]).unwrap();
        app.append(&l, 7_000, 1.5).unwrap();
        app.append(&l, 68_000, -2.25).unwrap();
        app.commit().unwrap();

        let e = Engine::new(EngineOptions {
            max_concurrent: 1,
            ..EngineOptions::default()
        });
        let held = e.slots.clone().acquire_owned().await.unwrap();
        let err = e
            .instant(
                db.querier(),
                "g".into(),
                70_000,
                Some(Duration::from_millis(30)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, QueryError::Timeout("query queue")), "{err}");
        drop(held);
        let out = e
            .instant(
                db.querier(),
                "g".into(),
                70_000,
                Some(Duration::from_secs(5)),
            )
            .await
            .unwrap();
        assert!(matches!(&out.value, Value::Vector(v) if v.len() == 1 && v[0].f == -2.25));
        let out = e
            .range(db.querier(), "g".into(), 0, 120_000, 60_000, None)
            .await
            .unwrap();
        assert!(
            matches!(&out.value, Value::Matrix(m) if m[0].floats.len() == 2),
            "{out:?}"
        );
        // Every permit is back once the queries are done.
        assert_eq!(e.slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn an_answer_nobody_waits_for_is_not_handed_to_then() {
        let e = Engine::new(EngineOptions {
            max_concurrent: 1,
            ..EngineOptions::default()
        });
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (started, has_started) = std::sync::mpsc::channel::<()>();
        let ran = Arc::new(AtomicBool::new(false));
        let then_ran = ran.clone();
        let query = e.on_pool(
            None,
            false,
            move |_| {
                let _ = started.send(());
                let _ = wait.recv();
                Ok(())
            },
            move |()| then_ran.store(true, Ordering::Relaxed),
        );
        // The caller gives up (as a request that goes away) while the job runs.
        let gave_up = tokio::time::timeout(Duration::from_millis(100), query).await;
        assert!(gave_up.is_err());
        has_started.recv().unwrap();
        go.send(()).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while e.slots.available_permits() < 1 {
            assert!(
                std::time::Instant::now() < until,
                "the slot never came back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            !ran.load(Ordering::Relaxed),
            "then ran for a caller that had gone"
        );
    }

    #[tokio::test]
    async fn then_runs_on_the_query_thread_after_the_answer_and_outside_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let e = Engine::new(EngineOptions {
            max_concurrent: 1,
            ..EngineOptions::default()
        });
        let caller = std::thread::current().id();
        // `then` takes longer than the query's whole timeout: the answer still comes back.
        let (thread, points) = e
            .range_then(
                db.querier(),
                "vector(1)".into(),
                (0, 120_000, 60_000),
                Some(Duration::from_secs(1)),
                |out| {
                    std::thread::sleep(Duration::from_millis(1500));
                    let Value::Matrix(m) = out.value else {
                        panic!("{:?}", out.value)
                    };
                    (std::thread::current().id(), m[0].floats.len())
                },
            )
            .await
            .unwrap();
        assert_ne!(thread, caller);
        assert_eq!(points, 3);
        // A failed evaluation never reaches `then`, and its error is the evaluation's.
        let err = e
            .instant_then(db.querier(), "rate(".into(), 0, None, |_| -> () {
                panic!("then ran after an error")
            })
            .await
            .unwrap_err();
        assert!(matches!(err, QueryError::Parse(_)), "{err}");
        // A query that gets no slot in time is a timeout, `then` or not.
        let held = e.slots.clone().acquire_owned().await.unwrap();
        let err = e
            .instant_then(
                db.querier(),
                "vector(1)".into(),
                0,
                Some(Duration::from_millis(20)),
                |out| out,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, QueryError::Timeout("query queue")), "{err}");
        drop(held);
        assert_eq!(e.slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_timed_out_query_stops_and_gives_its_slot_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut app = db.appender();
        for i in 0..200 {
            let l = Labels::new([("__name__", "big".to_string()), ("i", i.to_string())]).unwrap();
            for k in 0..1_000i64 {
                app.append(&l, k * 61_000 + i, (k ^ i) as f64).unwrap();
            }
        }
        app.commit().unwrap();
        let e = Engine::new(EngineOptions {
            max_concurrent: 2,
            ..EngineOptions::default()
        });
        // 11,000 steps, each summing up to 1,000 points of 200 series: minutes of work in
        // a debug build, and little memory.
        let (q, end, step) = ("sum_over_time(big[1d])", 61_000_000, 5_545);
        let started = std::time::Instant::now();
        let err = e
            .range(
                db.querier(),
                q.into(),
                0,
                end,
                step,
                Some(Duration::from_millis(50)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, QueryError::Timeout(_)), "{err}");
        // A caller that stops waiting (its request went away) cancels the evaluation too,
        // although the engine's own 2m timeout is far off.
        let gone = tokio::time::timeout(
            Duration::from_millis(50),
            e.range(db.querier(), q.into(), 0, end, step, None),
        )
        .await;
        assert!(gone.is_err());
        // The evaluations notice the cancellation and release their slots soon after.
        while e.slots.available_permits() < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the query kept running"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_timed_out_nested_subquery_stops_and_gives_its_slot_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut app = db.appender();
        for i in 0..50 {
            let l = Labels::new([("__name__", "big".to_string()), ("i", i.to_string())]).unwrap();
            for k in 0..2_000i64 {
                app.append(&l, k * 15_000 + i, (k ^ i) as f64).unwrap();
            }
        }
        app.commit().unwrap();
        let e = Engine::new(EngineOptions {
            max_concurrent: 1,
            ..EngineOptions::default()
        });
        // Each outer step re-evaluates a one-second-step subquery over hours of data: far
        // longer than the timeout.
        let q = "max_over_time(sum_over_time(rate(big[5m])[2h:1s])[8h:1m])";
        let err = e
            .instant(
                db.querier(),
                q.into(),
                30_000_000,
                Some(Duration::from_millis(50)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, QueryError::Timeout(_)), "{err}");
        // The slot comes back only once the evaluation has stopped: a second query gets it.
        let out = e
            .instant(
                db.querier(),
                "vector(1)".into(),
                0,
                Some(Duration::from_secs(60)),
            )
            .await
            .unwrap();
        assert!(matches!(&out.value, Value::Vector(v) if v.len() == 1));
    }
    /// A small deterministic generator (xorshift), so the randomized test is the same run to
    /// run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    /// A random expression about `depth` levels deep: valid and invalid PromQL alike.
    fn random_expr(rng: &mut Rng, depth: usize) -> String {
        if depth == 0 {
            return rng
                .pick(&[
                    "g",
                    "g{job=\"a\"}",
                    "1",
                    "-2.5",
                    "NaN",
                    "Inf",
                    "time()",
                    "\"s\"",
                    "g @ 0",
                    "g offset -1h",
                ])
                .to_string();
        }
        let inner = random_expr(rng, depth - 1);
        match rng.next() % 12 {
            0 => format!("({inner})"),
            1 => format!("-{inner}"),
            2 => format!("abs({inner})"),
            3 => format!("sum by (job) ({inner})"),
            4 => format!(
                "{inner} {} {}",
                rng.pick(&[
                    "+",
                    "*",
                    "/",
                    "^",
                    "%",
                    "and",
                    "or",
                    "unless",
                    "> bool",
                    "== on(job)",
                    "atan2"
                ]),
                random_expr(rng, (depth / 2).min(4))
            ),
            5 => format!(
                "max_over_time(({inner})[{}:{}])",
                rng.pick(&["5m", "1h", "0s", "100y"]),
                rng.pick(&["", "1m", "1ms"])
            ),
            6 => format!("rate(g[{}]) + {inner}", rng.pick(&["1m", "5m", "1s"])),
            7 => format!("topk({}, {inner})", rng.pick(&["1", "-1", "1e300", "NaN"])),
            8 => format!("clamp({inner}, 0, 1)"),
            9 => format!("label_replace({inner}, \"x\", \"$1\", \"job\", \"(.*)\")"),
            10 => format!("histogram_quantile(0.9, {inner})"),
            _ => format!(
                "{inner}{}",
                rng.pick(&["", ")", "(", "[5m]", " @ 1e18", " offset 1000000y"])
            ),
        }
    }

    #[test]
    fn random_nested_expressions_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut app = db.appender();
        for job in ["a", "b"] {
            let l = Labels::new([("__name__", "g"), ("job", job)]).unwrap();
            for k in 0..20i64 {
                app.append(&l, k * 15_000, k as f64).unwrap();
            }
        }
        app.commit().unwrap();
        let e = Engine::new(EngineOptions {
            timeout: Duration::from_secs(5),
            ..EngineOptions::default()
        });
        let q = db.querier();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..300 {
            let depth = match case % 10 {
                9 => 200 + (rng.next() % 3_000) as usize,
                _ => (rng.next() % 12) as usize,
            };
            let expr = random_expr(&mut rng, depth);
            // Any answer is fine, as long as there is one.
            let _ = e.instant_blocking(&q, &expr, 150_000);
            let _ = e.range_blocking(&q, &expr, 0, 300_000, 15_000);
            let _ = e.range_blocking(&q, &expr, i64::MIN, i64::MIN + 60_000, 1);
            if expr.len() < 400 {
                on_big_stack(|| {
                    if let Ok(p) = promql_parser::parser::parse(&expr) {
                        assert_eq!(crate::query::prettify(&p), p.prettify(), "{expr}");
                    }
                })
                .unwrap();
            }
        }
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(11_000), "11,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
