//! The SDK's own tokio runtime. Foreign executors (asyncio, coroutines, Swift tasks) poll our
//! futures but are no tokio reactor, and the refresh scheduler must keep running between calls,
//! so every core future is spawned here and the foreign side awaits its join handle.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use tokio::runtime::{Builder, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::errors::AppError;
use crate::foreign;

/// Built on first use. Building can fail (no threads left); that becomes an error, not a panic.
static RUNTIME: LazyLock<Result<Runtime, String>> = LazyLock::new(|| {
    Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sessionkit-rt")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
});

pub(crate) fn runtime() -> Result<&'static Runtime, AppError> {
    RUNTIME.as_ref().map_err(|e| AppError::Internal {
        message: format!("the SDK could not start its runtime: {e}"),
    })
}

/// Runs a core future on the SDK runtime. The returned future only awaits the result, so any
/// executor can poll it. If the caller drops it (cancellation), the core operation still
/// completes: a half-done login or refresh is never left behind.
///
/// This is instantiated once per exported async function (28 of them), so it is a plain
/// function returning a named future rather than an `async fn` (one state machine fewer in each
/// export), and what does not depend on the result's type is in non-generic code ([`spawn`],
/// [`Fallback`]): together 39,776 B less of the shipped library (#28, BENCHMARKS.md).
pub(crate) fn run<T, F>(fut: F) -> Answer<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T, sessionkit::AppError>> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let fallback = spawn(Box::pin(async move {
        let result = fut.await;
        // Sending (and so dropping the sender) wakes the foreign future, which runs the
        // foreign language's continuation callback on this thread: not once its runtime is
        // exiting, when nobody waits for the result any more.
        let mut tx = Some(tx);
        foreign::call_binding(|| {
            // The caller may have gone (cancelled); the operation has completed all the same.
            if let Some(tx) = tx.take() {
                let _ = tx.send(result);
            }
        });
        std::mem::forget(tx);
    }));
    Answer { rx, fallback }
}

/// The result of [`run`]: the core operation's answer, or why there is none.
pub(crate) struct Answer<T> {
    rx: oneshot::Receiver<Result<T, sessionkit::AppError>>,
    fallback: Fallback,
}

impl<T> Future for Answer<T> {
    type Output = Result<T, AppError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is Unpin (a receiver, a join handle, a boxed future).
        let this = self.get_mut();
        if !this.fallback.is_waiting() {
            return this.fallback.poll_error(cx).map(Err);
        }
        match Pin::new(&mut this.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(result)) => Poll::Ready(result.map_err(AppError::from)),
            Poll::Ready(Err(_)) => this.fallback.poll_error(cx).map(Err),
        }
    }
}

/// What an [`Answer`] falls back on when the task ends without sending one.
enum Fallback {
    /// The task is running; if it ends without an answer, its join handle says why.
    Running(JoinHandle<()>),
    /// It ended without one: waiting for the join handle's verdict.
    Ending(Pin<Box<dyn Future<Output = AppError> + Send>>),
    /// It never started (no runtime): the error, until it is returned; `None` once an error
    /// was returned.
    NotStarted(Option<AppError>),
}

impl Fallback {
    /// Whether the task may still answer.
    fn is_waiting(&self) -> bool {
        matches!(self, Fallback::Running(_))
    }

    /// The error for a task that ended without an answer: it panicked, or the runtime is
    /// shutting down, or it never started.
    fn poll_error(&mut self, cx: &mut Context<'_>) -> Poll<AppError> {
        let mut verdict = match std::mem::replace(self, Fallback::NotStarted(None)) {
            Fallback::Running(handle) => Box::pin(verdict(handle)),
            Fallback::Ending(verdict) => verdict,
            Fallback::NotStarted(error) => {
                return Poll::Ready(error.unwrap_or_else(|| AppError::Internal {
                    message: "an SDK call was awaited again after it ended".to_string(),
                }));
            }
        };
        let poll = verdict.as_mut().poll(cx);
        if poll.is_pending() {
            *self = Fallback::Ending(verdict);
        }
        poll
    }
}

/// Why a task ended without an answer, from its join handle.
async fn verdict(handle: JoinHandle<()>) -> AppError {
    AppError::Internal {
        message: match handle.await {
            Err(e) if e.is_panic() => "an SDK task panicked; please report this",
            _ => "an SDK task was cancelled",
        }
        .to_string(),
    }
}

/// Spawns one task on the SDK runtime. Every export spawns the same boxed task type, so tokio's
/// task machinery is compiled once instead of once per exported function (89 KB of the shipped
/// library).
fn spawn(task: Pin<Box<dyn Future<Output = ()> + Send>>) -> Fallback {
    match runtime() {
        Ok(runtime) => Fallback::Running(runtime.spawn(task)),
        Err(e) => Fallback::NotStarted(Some(e)),
    }
}

/// Runs synchronous core code that may start background work (the refresh scheduler) inside
/// the SDK runtime's context, and turns a panic into an error instead of unwinding into the
/// foreign caller.
pub(crate) fn enter<T>(f: impl FnOnce() -> Result<T, AppError>) -> Result<T, AppError> {
    let _guard = runtime()?.enter();
    guard(f)
}

/// Turns a panic in core code into `AppError::Internal`.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, AppError>) -> Result<T, AppError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(AppError::Internal {
            message: "the SDK panicked; please report this".to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    /// A foreign executor: a runtime of its own, no tokio reactor of the SDK's.
    fn block_on<T>(fut: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
            .block_on(fut)
    }

    #[test]
    fn run_returns_the_operations_answer() {
        assert_eq!(block_on(run(async { Ok(7) })).unwrap(), 7);
    }

    #[test]
    fn run_maps_a_core_error() {
        let err = block_on(run::<(), _>(async {
            Err(sessionkit::AppError::Network {
                message: "connection refused".into(),
            })
        }))
        .unwrap_err();
        assert!(
            matches!(&err, AppError::Network { message } if message == "connection refused"),
            "{err:?}"
        );
    }

    #[test]
    fn a_panicking_operation_is_an_internal_error() {
        let err = block_on(run::<(), _>(async { panic!("the operation broke") })).unwrap_err();
        assert!(
            matches!(&err, AppError::Internal { message } if message.contains("panicked")),
            "{err:?}"
        );
    }

    #[test]
    fn a_dropped_answer_does_not_cancel_the_operation() {
        let done = Arc::new(AtomicBool::new(false));
        let (finished, wait) = std::sync::mpsc::channel();
        let answer = run({
            let done = done.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                done.store(true, Ordering::SeqCst);
                let _ = finished.send(());
                Ok(())
            }
        });
        drop(answer);
        wait.recv_timeout(Duration::from_secs(10))
            .expect("the operation ran to its end");
        assert!(done.load(Ordering::SeqCst));
    }
}
