//! An App's life: open until [`App::close`](crate::App::close), then closed for good.
//!
//! Every operation that can change stored state (a login, a refresh, a logout...) holds a
//! [`Pass`] while it runs, so closing can wait for them: their results are saved before the
//! App's last save, and nothing runs app code (a listener, a custom store) once `close`
//! returns. Once closed, new operations fail with [`AppError::AppClosed`] without starting.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{AppError, Result};

#[derive(Default)]
struct State {
    closed: bool,
    in_flight: usize,
}

/// Open or closed, and how many operations are in flight.
#[derive(Default)]
pub(crate) struct Lifecycle {
    state: Mutex<State>,
    /// Told when the last operation in flight ends.
    idle: Notify,
}

/// Held by an operation in flight; closing waits until every pass is dropped.
pub(crate) struct Pass(Arc<Lifecycle>);

impl Drop for Pass {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_flight -= 1;
        if st.in_flight == 0 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Lifecycle {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pass for one operation, or `AppClosed` once the App was closed.
    pub(crate) fn enter(self: &Arc<Self>) -> Result<Pass> {
        let mut st = self.lock();
        if st.closed {
            return Err(AppError::closed());
        }
        st.in_flight += 1;
        Ok(Pass(Arc::clone(self)))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Marks the App closed; true only for the call that closed it.
    pub(crate) fn begin_close(&self) -> bool {
        !std::mem::replace(&mut self.lock().closed, true)
    }

    /// Waits until no operation is in flight, for at most `deadline`; how many are left.
    pub(crate) async fn wait_idle(&self, deadline: Duration) -> usize {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let left = self.lock().in_flight;
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(until, idle).await.is_err() {
                return self.lock().in_flight;
            }
        }
    }
}
