//! Accepting TCP connections for the stream layers (TCPCLv4, TCPCLv3, STCP, MTCP): at most
//! [`MAX_ACCEPTED`] open at once per listener — each holds buffers and commits in progress — so
//! a peer opening connections in a loop cannot exhaust memory or descriptors; past it, new ones
//! are closed at once with a warning at most once a minute. Accept errors (out of descriptors)
//! wait rather than spin. The listener stops when `shutdown` changes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Connections accepted and open at once per listener.
pub const MAX_ACCEPTED: usize = 256;

/// Runs `handle` for every connection `listener` accepts, at most [`MAX_ACCEPTED`] at once.
pub(crate) fn accept_bounded<F, Fut>(
    listener: TcpListener,
    layer: &'static str,
    mut shutdown: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_ACCEPTED));
    let mut refusals = bpa::log::RateLimit::new(Duration::from_secs(60));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(slot) = Arc::clone(&open).try_acquire_owned() else {
                            if let Some(suppressed) = refusals.allow(std::time::Instant::now()) {
                                tracing::warn!(layer, %peer, earlier_not_logged = suppressed, "{MAX_ACCEPTED} connections are open: a new one was closed");
                            }
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let connection = handle(stream, peer);
                        tokio::spawn(async move {
                            connection.await;
                            drop(slot);
                        });
                    }
                    Err(error) => {
                        tracing::warn!(layer, %error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = shutdown.changed() => return,
            }
        }
    });
}
