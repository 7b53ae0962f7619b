//! The HTTP accept loop, and a graceful stop that always ends.
//!
//! `axum::serve` waits for every connection to close before it returns, so one client holding a
//! half-sent request keeps a stopping server alive for as long as it likes. Here each connection
//! is a task this loop owns: on stop, idle keep-alive connections close at once, requests in
//! flight get `deadline` to finish, and whatever is left is then aborted (SERVER.md, "Stopping").
//!
//! It also bounds what clients can hold (`[limits]`): a request's headers must arrive within
//! `header_read_timeout_secs` (which also closes idle keep-alive connections), and at most
//! `max_connections` are open; beyond that, new ones wait in the listen backlog until one
//! closes, so a flood of idle sockets cannot exhaust the file descriptors.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

use crate::config::Limits;
use tokio::task::JoinSet;

/// After `accept` fails (say, out of file descriptors), wait this long before trying again, so
/// the loop does not spin while nothing can be accepted.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `stop` fires (or its sender is dropped), then stops
/// gracefully within `deadline`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut stop: oneshot::Receiver<()>,
    deadline: Duration,
    limits: &Limits,
) {
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs));
    let slots = std::sync::Arc::new(Semaphore::new(max_connections(limits)));
    loop {
        // Wait for a free slot before accepting: past the cap, connections queue in the kernel.
        let slot = tokio::select! {
            _ = &mut stop => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let router = router
                        .clone()
                        .layer(axum::Extension(crate::rate_limit::ClientAddr(peer.ip())));
                    let service = TowerToHyperService::new(router);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    conns.spawn(async move {
                        // A client that goes away mid-request is its own business.
                        let _ = conn.await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow with every client ever seen.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    if tokio::time::timeout(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connection(s) still open after {} s; closing them",
            conns.len(),
            deadline.as_secs_f64()
        );
    }
    conns.shutdown().await;
}

/// The configured cap, or three quarters of the file-descriptor limit (the rest is for the
/// database, logs and the listener).
fn max_connections(limits: &Limits) -> usize {
    if limits.max_connections > 0 {
        return limits.max_connections;
    }
    let fds = match fd_limit() {
        0 => 1024,
        n => n.min(1 << 20), // RLIM_INFINITY
    };
    (fds as usize * 3 / 4).max(16)
}

#[cfg(unix)]
fn fd_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        0
    }
}

#[cfg(not(unix))]
fn fd_limit() -> u64 {
    0
}
