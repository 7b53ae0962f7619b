//! The HTTP accept loop, and a graceful stop that always ends.
//!
//! `axum::serve` waits for every connection to close before it returns, so one client holding a
//! half-sent request keeps a stopping server alive for as long as it likes. Here each connection
//! is a task this loop owns: on stop, idle keep-alive connections close at once, requests in
//! flight get `deadline` to finish, and whatever is left is then aborted (SERVER.md, "Stopping").

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
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
) {
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let service = TowerToHyperService::new(router.clone());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    conns.spawn(async move {
                        // A client that goes away mid-request is its own business.
                        let _ = conn.await;
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
