//! Every call from an SDK thread into the foreign language goes through here, so that none is
//! made while that language's runtime is shutting down.
//!
//! A Python interpreter that is finalising tears down any other thread that tries to take the
//! GIL (`pthread_exit`); on a thread with Rust frames that forced unwind aborts the whole process
//! ("FATAL: exception not rethrown"). The calls at stake are listeners, the session error
//! handler, the logger, a custom store, releasing a foreign object, and waking a foreign future
//! (which runs the language's continuation callback). Before its runtime ends, the foreign side
//! calls [`foreign_runtime_exiting`]: from then on such calls are skipped (a foreign object is
//! leaked rather than released, a store answers "unavailable"), and the ones already running
//! are waited for.
//!
//! Foreign code also runs off the runtime's workers (see [`off_the_workers`]), so a callback may
//! call the SDK, even a blocking call, without starving it.

use std::mem::ManuallyDrop;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    exiting: bool,
    in_progress: usize,
}

static STATE: Mutex<State> = Mutex::new(State {
    exiting: false,
    in_progress: 0,
});
static DONE: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f`, a call into app code (a listener, a store...), unless the foreign runtime is
/// exiting (then `None`). App code may block, so it runs off the runtime's workers.
pub(crate) fn call<T>(f: impl FnOnce() -> T) -> Option<T> {
    call_binding(|| off_the_workers(f))
}

/// Like [`call`], for the bindings' own short callbacks (waking a foreign future), which never
/// block: no hand-off of the worker, which would cost more than the callback.
pub(crate) fn call_binding<T>(f: impl FnOnce() -> T) -> Option<T> {
    let _leave = Leave::enter()?;
    Some(f())
}

/// A foreign call in progress, counted while it lives. Not generic, and kept out of line, so
/// that the many instantiations of [`call_binding`] share one copy of the bookkeeping.
struct Leave(());

impl Leave {
    /// `None` once the foreign runtime is exiting.
    #[inline(never)]
    fn enter() -> Option<Leave> {
        let mut st = lock();
        if st.exiting {
            return None;
        }
        st.in_progress += 1;
        Some(Leave(()))
    }
}

impl Drop for Leave {
    #[inline(never)]
    fn drop(&mut self) {
        let mut st = lock();
        st.in_progress -= 1;
        if st.in_progress == 0 {
            DONE.notify_all();
        }
    }
}

/// Runs `f` where it may block as long as it likes. Foreign code called from one of the SDK
/// runtime's worker threads may call back into the SDK and wait for it (a blocking call from a
/// listener): the runtime would then be waiting on its own worker, and with every worker so
/// blocked, on nothing at all. `block_in_place` hands this worker's other tasks to a new thread
/// first, so the SDK keeps running however many callbacks wait on it.
fn off_the_workers<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A foreign object (a listener, a store...) held by the SDK. Releasing it calls into the
/// foreign runtime, so once that is exiting the object is leaked instead: the process is
/// ending anyway.
pub(crate) struct Foreign<T>(ManuallyDrop<T>);

impl<T> Foreign<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self(ManuallyDrop::new(inner))
    }
}

impl<T> std::ops::Deref for Foreign<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Drop for Foreign<T> {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never used again.
        let inner = unsafe { ManuallyDrop::take(&mut self.0) };
        let mut inner = Some(inner);
        call_binding(|| drop(inner.take()));
        if let Some(leaked) = inner {
            std::mem::forget(leaked);
        }
    }
}

/// Tells the SDK that the foreign runtime is about to end (Python: at exit, after closing the
/// Apps still open; Kotlin: in a JVM shutdown hook). No SDK thread calls into foreign code
/// afterwards; calls already running are waited for, at most `timeout_ms` milliseconds. Returns
/// how many were still running when the wait ended (0: none). Not undone: call it only when the
/// process is ending.
#[uniffi::export]
pub fn foreign_runtime_exiting(timeout_ms: u32) -> u32 {
    let until = Instant::now() + Duration::from_millis(timeout_ms.into());
    let mut st = lock();
    st.exiting = true;
    while st.in_progress > 0 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        st = DONE
            .wait_timeout(st, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    u32::try_from(st.in_progress).unwrap_or(u32::MAX)
}
