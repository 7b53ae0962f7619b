//! The SDK's own tokio runtime. Foreign executors (asyncio, coroutines, Swift tasks) poll our
//! futures but are no tokio reactor, and the refresh scheduler must keep running between calls,
//! so every core future is spawned here and the foreign side awaits its join handle.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use tokio::runtime::{Builder, Runtime};
use tokio::sync::oneshot;

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
pub(crate) async fn run<T, F>(fut: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, sessionkit::AppError>> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    // Every export spawns the same boxed task type, so tokio's task machinery is compiled once
    // instead of once per exported function (about 100 KB of the shipped library).
    let task: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
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
    });
    let handle = runtime()?.spawn(task);
    match rx.await {
        Ok(result) => result.map_err(AppError::from),
        // The task ended without an answer: it panicked, or the runtime is shutting down.
        Err(_) => Err(AppError::Internal {
            message: match handle.await {
                Err(e) if e.is_panic() => "an SDK task panicked; please report this",
                _ => "an SDK task was cancelled",
            }
            .to_string(),
        }),
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
