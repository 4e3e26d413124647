//! Accepting connections: HTTP/1 from hyper with a timer, so that a
//! connection that sends no complete request head within its header
//! timeout ([`HEADER_TIMEOUT_SECS`] by default) is closed (one that never sends a byte, one that
//! sends its head a byte at a time, an idle kept-alive one, one whose phone
//! lost signal); at most `max_connections` open at once, so that no number
//! of such clients can use up the process's file descriptors, which its
//! database, Redis and webhook connections need too; and a graceful
//! shutdown (requests under way finish, idle connections close).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a connection may take to send a request's head (its request
/// line and headers) by default, in seconds, counted from when the
/// connection opens or its last answer went out; then it is closed. The
/// body and the work are bounded by [`crate::REQUEST_TIMEOUT`].
pub const HEADER_TIMEOUT_SECS: u64 = 10;

/// The longest `--header-timeout` accepted, in seconds.
pub const MAX_HEADER_TIMEOUT_SECS: u64 = 3600;

/// What [`serve`] holds its connections to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more wait until one closes.
    pub max_connections: usize,
    /// How long a connection may take to send a request head.
    pub header_timeout: Duration,
}

/// Connections one instance keeps open at once by default; more wait in the
/// kernel's backlog until one closes.
pub const MAX_CONNECTIONS: usize = 1_000;

/// The highest `--max-connections` accepted.
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// File descriptors an instance needs besides its connections and its
/// database's: its data files, Redis, webhook POSTs, the runtime's own.
pub const OTHER_FILES: u64 = 64;

/// Raises the process's open-files limit (its soft limit, up to the hard
/// one) so that `max_connections` connections, `database_connections` and
/// [`OTHER_FILES`] fit; the warning to print when they still do not.
pub fn make_room(max_connections: usize, database_connections: u32) -> Option<String> {
    let needed = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(u64::from(database_connections))
        .saturating_add(OTHER_FILES);
    let limit = open_files_limit(needed)?;
    (limit < needed).then(|| {
        format!(
            "the open-files limit is {limit}, below the {needed} that --max-connections \
             {max_connections} needs (with {database_connections} database connections and \
             {OTHER_FILES} more): raise it (ulimit -n) or lower --max-connections"
        )
    })
}

/// The soft open-files limit after raising it towards `needed` (no higher
/// than the hard limit); `None` when it is unlimited or unknown.
#[cfg(unix)]
fn open_files_limit(needed: u64) -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let current = now.current?;
    if current >= needed {
        return Some(current);
    }
    let raised = now.maximum.map_or(needed, |hard| hard.min(needed));
    let new = Rlimit {
        current: Some(raised),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => Some(raised),
        Err(_) => Some(current),
    }
}

#[cfg(not(unix))]
fn open_files_limit(_needed: u64) -> Option<u64> {
    None
}

/// How long to wait after `accept` fails (out of file descriptors, say)
/// before trying again, so a failing accept does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` completes, then waits for
/// the requests under way.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free place first: a connection over the cap is not accepted
        // (and holds no descriptor of ours) until one closes.
        let place = tokio::select! {
            () = &mut shutdown => break,
            place = Arc::clone(&places).acquire_owned() => match place {
                Ok(place) => place,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or is too slow ends its connection
            // with an error; nothing more to do about it.
            let _ = connection.await;
            drop(place);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
