//! Serving the API with limits (design §3.8): a client cannot hold the daemon's connections or
//! memory for as long as it likes. A request's header must arrive within `header_timeout`
//! (an idle keep-alive connection waiting for its next request counts as such), at most
//! `max_connections` connections are served at once (more wait in the listen backlog), and a
//! request body that stalls for `body_idle_timeout` is cut off (see `send`).

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tower_service::Service as _;

/// Limits on the API's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Longest wait for a request's header, from the moment the connection is ready for it.
    pub header_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// How long open connections get to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(30),
            max_connections: 256,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// How long, and how many bytes, a connection is drained after its last answer ([`linger`]).
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_BYTES: u64 = 256 << 20;

/// Closes a connection whose last answer may have come before its request's body was read (a
/// refusal: bad destination, payload too large, store full): the write side is shut (the
/// client sees the answer end), and what the client still sends is read and dropped, for at
/// most [`LINGER_TIME`] and [`LINGER_BYTES`]. Closing with the body unread would fail the
/// client's write before it reads the answer, and it would report "Broken pipe" instead of
/// the reason. A connection that ended cleanly reads its end at once.
async fn linger<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO) {
    let _ = io.shutdown().await;
    let drain = async {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        while total < LINGER_BYTES {
            match io.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n as u64,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish
/// for the grace period.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: axum::http::Request<Incoming>| {
            let mut router = router.clone();
            // Boxed, so the connection can be polled without shutting its socket down.
            let answer: Pin<Box<dyn Future<Output = _> + Send>> =
                Box::pin(async move { router.call(request.map(Body::new)).await });
            answer
        });
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
            let mut connection = builder.serve_connection(TokioIo::new(io), service);
            let closing = async move {
                let _ = closed.wait_for(|closing| *closing).await;
            };
            let ended = tokio::select! {
                ended = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => Some(ended),
                () = closing => None,
            };
            match ended {
                Some(Ok(())) => linger(connection.into_parts().io.into_inner()).await,
                Some(Err(_)) => {}
                None => {
                    Pin::new(&mut connection).graceful_shutdown();
                    let _ = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)).await;
                }
            }
            drop(slot);
        });
    }
    let _ = closing.send(true);
    // Every connection gives its slot back when it ends.
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all)).await.is_err() {
        tracing::info!("open API connections cut off at shutdown");
    }
}
