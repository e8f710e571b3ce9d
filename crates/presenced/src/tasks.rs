//! Every task presenced spawns is owned by one [`Tasks`]: tokio-util's
//! `TaskTracker` (so that shutdown can wait for all of them) and the
//! shutdown `CancellationToken` (so that all of them can be told to stop).
//! `server::run` builds it and hands a clone to everything that spawns.
//!
//! Two kinds of task, reported differently:
//! - Long-lived tasks ([`Tasks::spawn`]: the HTTP accept loop, the
//!   notifier, the timeline, the histogram upkeep) run until shutdown. Each
//!   is named, and how it ended is recorded and logged: cancelled by
//!   shutdown, or a failure (it returned before shutdown was requested,
//!   returned an error, or panicked). A failure is logged at error level
//!   and cancels the token, so that presenced stops instead of serving
//!   with a part of it dead, and `run` returns it.
//! - Short-lived tasks ([`Tasks::spawn_short`]: a connection, a mark write,
//!   a stream's linger, a delivery queue's drain) come and go with the
//!   work. They are tracked, so that shutdown waits for them too, but only
//!   counted per kind: a busy server must not log per connection.
//!
//! Why not mini-redis's `shutdown_complete` channel (every handler holds a
//! sender; shutdown waits for the channel to close): `TaskTracker` is the
//! same idea packaged, and the task's own wrapper (here) is where its end
//! is observed, so the report needs no handle to await.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How a long-lived task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It returned `Ok` after shutdown was requested: it obeyed the token.
    Cancelled,
    /// It returned `Ok` before shutdown was requested: it gave up on its
    /// own, which for a task meant to run until shutdown is a failure.
    Returned,
    /// It returned this error.
    Failed(String),
    /// It panicked with this message.
    Panicked(String),
}

impl Ended {
    /// Whether presenced should stop (and exit non-zero) because of it.
    pub fn is_failure(&self) -> bool {
        !matches!(self, Ended::Cancelled)
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Cancelled => f.write_str("cancelled by shutdown"),
            Ended::Returned => f.write_str("returned before shutdown was requested"),
            Ended::Failed(message) => write!(f, "returned an error: {message}"),
            Ended::Panicked(message) => write!(f, "panicked: {message}"),
        }
    }
}

/// The first long-lived task that failed, which `run` returns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("task {name} {ended}")]
pub struct TaskFailure {
    pub name: &'static str,
    pub ended: Ended,
}

/// How many short-lived tasks of one kind ended, and how many of those
/// panicked (the panic hook has printed each one's message already).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShortCounts {
    pub ended: u64,
    pub panicked: u64,
}

/// What [`Tasks::stop`] found once every task had ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Each long-lived task, in the order they were spawned.
    pub long: Vec<(&'static str, Ended)>,
    /// Each kind of short-lived task, in the order it was first seen ending.
    pub short: Vec<(&'static str, ShortCounts)>,
    /// The first failure, if any.
    pub failure: Option<TaskFailure>,
}

impl Report {
    pub fn into_result(self) -> Result<(), TaskFailure> {
        match self.failure {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

/// The tracker, the token, and what has ended. Cheap to clone; every clone
/// owns the same tasks.
#[derive(Clone, Debug)]
pub struct Tasks {
    tracker: TaskTracker,
    shutdown: CancellationToken,
    ends: Arc<Ends>,
}

#[derive(Debug, Default)]
struct Ends {
    /// One entry per long-lived task, `None` while it runs. A std mutex:
    /// held for a push or an assignment, never across an await.
    long: Mutex<Vec<(&'static str, Option<Ended>)>>,
    /// Per kind; a handful of kinds, so a vector searched in order. Locked
    /// once per short task, as it ends.
    short: Mutex<Vec<(&'static str, ShortCounts)>>,
    failure: Mutex<Option<TaskFailure>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// A panic's message, when it is a string (as `panic!` makes it).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_string()
    }
}

impl Tasks {
    /// Owns the tasks spawned from here on; `shutdown` tells them to stop,
    /// and is cancelled when a long-lived task fails.
    pub fn new(shutdown: CancellationToken) -> Tasks {
        Tasks {
            tracker: TaskTracker::new(),
            shutdown,
            ends: Arc::default(),
        }
    }

    /// The token every task watches to know when to stop.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Spawns a long-lived task called `name`, meant to run until the token
    /// is cancelled and then return `Ok`. Anything else is a failure: it is
    /// logged and it cancels the token.
    ///
    /// Must be called inside a tokio runtime.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let index = {
            let mut long = lock(&self.ends.long);
            long.push((name, None));
            long.len() - 1
        };
        let tasks = self.clone();
        self.tracker.spawn(async move {
            let ended = match AssertUnwindSafe(task).catch_unwind().await {
                Ok(Ok(())) if tasks.shutdown.is_cancelled() => Ended::Cancelled,
                Ok(Ok(())) => Ended::Returned,
                Ok(Err(message)) => Ended::Failed(message),
                Err(payload) => Ended::Panicked(panic_message(&*payload)),
            };
            tasks.long_ended(index, name, ended);
        });
    }

    fn long_ended(&self, index: usize, name: &'static str, ended: Ended) {
        if ended.is_failure() {
            if self.shutdown.is_cancelled() {
                tracing::error!("task {name} failed during shutdown: {ended}");
            } else {
                tracing::error!("task {name} failed: {ended}; shutting down");
            }
            lock(&self.ends.failure).get_or_insert_with(|| TaskFailure {
                name,
                ended: ended.clone(),
            });
            self.shutdown.cancel();
        }
        lock(&self.ends.long)[index].1 = Some(ended);
    }

    /// Spawns a short-lived task of `kind` (a connection, a mark write):
    /// tracked, counted when it ends, never logged on its own. A panic is
    /// counted and does not stop presenced (the panic hook prints it).
    ///
    /// Must be called inside a tokio runtime.
    pub fn spawn_short<F>(&self, kind: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let ends = self.ends.clone();
        self.tracker.spawn(async move {
            let panicked = AssertUnwindSafe(task).catch_unwind().await.is_err();
            let mut short = lock(&ends.short);
            let counts = match short.iter().position(|(seen, _)| *seen == kind) {
                Some(at) => &mut short[at].1,
                None => {
                    short.push((kind, ShortCounts::default()));
                    &mut short.last_mut().expect("just pushed").1
                }
            };
            counts.ended += 1;
            counts.panicked += u64::from(panicked);
        });
    }

    /// Cancels the token, waits for every task (each bounds its own wait
    /// after cancellation; tasks spawned meanwhile are waited for too),
    /// logs one line per long-lived task and one with the short-lived
    /// counts, and returns what it found.
    pub async fn stop(&self) -> Report {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        let long: Vec<(&'static str, Ended)> = lock(&self.ends.long)
            .iter()
            .map(|(name, ended)| {
                // Every tracked task has ended, so each has recorded how.
                (*name, ended.clone().unwrap_or(Ended::Cancelled))
            })
            .collect();
        for (name, ended) in &long {
            tracing::info!("task {name} stopped: {ended}");
        }
        let short = lock(&self.ends.short).clone();
        let counts: Vec<String> = short
            .iter()
            .map(|(kind, counts)| match counts.panicked {
                0 => format!("{kind} {}", counts.ended),
                panicked => format!("{kind} {} ({panicked} panicked)", counts.ended),
            })
            .collect();
        tracing::info!(
            "short-lived tasks ended: {}",
            if counts.is_empty() {
                "none".to_string()
            } else {
                counts.join(", ")
            }
        );
        Report {
            long,
            short,
            failure: lock(&self.ends.failure).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// What the test does after spawning the task.
    #[derive(Clone, Copy, Debug)]
    enum Then {
        /// Waits for the task to end on its own, which must cancel the token.
        WaitsForItsFailure,
        /// Requests shutdown.
        AsksItToStop,
    }

    /// Spawns the task `make` builds (given the token) as the only
    /// long-lived one, does `then`, and checks how the task ended and what
    /// [`Tasks::stop`] returns.
    async fn check<F>(make: impl FnOnce(CancellationToken) -> F, then: Then, expected: Ended)
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let tasks = Tasks::new(shutdown.clone());
        tasks.spawn("under test", make(shutdown.clone()));
        match then {
            Then::WaitsForItsFailure => {
                tokio::time::timeout(Duration::from_secs(5), shutdown.cancelled())
                    .await
                    .unwrap_or_else(|_| panic!("{expected:?}: the failure cancels the token"));
            }
            Then::AsksItToStop => {
                tokio::task::yield_now().await;
                shutdown.cancel();
            }
        }
        let report = tasks.stop().await;
        assert_eq!(report.long, vec![("under test", expected.clone())]);
        let failure = expected.is_failure().then(|| TaskFailure {
            name: "under test",
            ended: expected.clone(),
        });
        assert_eq!(
            report.into_result(),
            failure.map_or(Ok(()), Err),
            "{expected:?}"
        );
    }

    #[tokio::test]
    async fn each_way_a_long_lived_task_ends_is_reported_with_its_reason() {
        check(
            |token| async move {
                token.cancelled().await;
                Ok(())
            },
            Then::AsksItToStop,
            Ended::Cancelled,
        )
        .await;
        check(
            |_| async { Ok(()) },
            Then::WaitsForItsFailure,
            Ended::Returned,
        )
        .await;
        check(
            |_| async { Err("the disk is full".to_string()) },
            Then::WaitsForItsFailure,
            Ended::Failed("the disk is full".into()),
        )
        .await;
        check(
            |_| async { panic!("boom") },
            Then::WaitsForItsFailure,
            Ended::Panicked("boom".into()),
        )
        .await;
        check(
            |_| async { panic!("boom {}", 7) },
            Then::WaitsForItsFailure,
            Ended::Panicked("boom 7".into()),
        )
        .await;
        // An error while stopping is still an error.
        check(
            |token| async move {
                token.cancelled().await;
                Err("the last sync failed".to_string())
            },
            Then::AsksItToStop,
            Ended::Failed("the last sync failed".into()),
        )
        .await;
    }

    #[tokio::test]
    async fn a_failing_task_stops_the_others_and_is_the_one_named() {
        let shutdown = CancellationToken::new();
        let tasks = Tasks::new(shutdown.clone());
        let token = shutdown.clone();
        tasks.spawn("healthy", async move {
            token.cancelled().await;
            Ok(())
        });
        tasks.spawn("doomed", async {
            tokio::task::yield_now().await;
            Err("lost its store".to_string())
        });
        tokio::time::timeout(Duration::from_secs(5), shutdown.cancelled())
            .await
            .expect("the failure cancels the token");
        let report = tasks.stop().await;
        assert_eq!(
            report.long,
            vec![
                ("healthy", Ended::Cancelled),
                ("doomed", Ended::Failed("lost its store".into())),
            ]
        );
        let failure = report.into_result().expect_err("a failure");
        assert_eq!(
            failure.to_string(),
            "task doomed returned an error: lost its store"
        );
    }

    #[tokio::test]
    async fn short_lived_tasks_are_waited_for_and_counted_and_a_panic_stops_nothing() {
        let shutdown = CancellationToken::new();
        let tasks = Tasks::new(shutdown.clone());
        let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..3 {
            let finished = finished.clone();
            tasks.spawn_short("connection", async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
        tasks.spawn_short("mark write", async { panic!("a bad mark") });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            !shutdown.is_cancelled(),
            "a short task's panic is not a failure"
        );
        let report = tasks.stop().await;
        assert_eq!(finished.load(std::sync::atomic::Ordering::Relaxed), 3);
        let mut short = report.short.clone();
        short.sort();
        assert_eq!(
            short,
            vec![
                (
                    "connection",
                    ShortCounts {
                        ended: 3,
                        panicked: 0
                    }
                ),
                (
                    "mark write",
                    ShortCounts {
                        ended: 1,
                        panicked: 1
                    }
                ),
            ]
        );
        assert!(report.long.is_empty());
        assert_eq!(report.into_result(), Ok(()));
    }
}
