//! A session's start: the contact headers on the bare socket (RFC 9174 §4.2), then TLS if both
//! sides offered it (§4.4), before the session runs on the connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bpa::BundleSink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::driver::now;
use super::session::{Event, Role};
use super::session_task::SessionTask;
use super::tls::{TlsSetup, certified_node_ids};
use super::wire::CONTACT_HEADER_LEN;

/// A session's connection after a TLS handshake.
pub(super) enum Connection {
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl<A: BundleSink> SessionTask<A> {
    pub(super) async fn run_connection(&mut self, mut stream: TcpStream) {
        // The contact headers (§4.2) are exchanged on the bare socket, reading exactly the
        // peer's header so that a TLS handshake that follows is not read as TCPCL. A session
        // shed before it has begun just closes.
        let activity = self.activity.clone();
        let exchanged = tokio::select! {
            exchanged = self.exchange_contact_headers(&mut stream) => exchanged,
            () = crate::listener::shed(activity.as_deref()) => Err(std::io::Error::other("shed before its contact header (too many connections)")),
        };
        if let Err(error) = exchanged {
            self.closing(format_args!("contact failed: {error}"));
            self.fail_all("the connection closed");
            return;
        }
        // §4.4: TLS begins right after the contact headers when both offered it.
        while let Some(event) = self.session.poll_event() {
            if event == Event::StartTls {
                self.start_tls(stream).await;
                return;
            }
            self.early_events.push_back(event);
        }
        let (reader, writer) = tokio::io::split(stream);
        self.run_established(reader, writer).await;
    }

    /// Runs the TLS handshake (the active side as client) and the session over it.
    pub(super) async fn start_tls(&mut self, stream: TcpStream) {
        let address = self.status.address;
        let Some(tls) = self.layer.shared.config.tls.clone() else {
            // Not reached: without a TLS setup the session never offers TLS.
            self.fail_all("TLS is not configured");
            return;
        };
        let timeout = self.layer.shared.config.session.negotiation_timeout;
        let role = self.session.role();
        let handshake = async {
            match role {
                Role::Active => {
                    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.client));
                    let stream = connector.connect(TlsSetup::server_name(address), stream).await?;
                    let ids = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(certified_node_ids);
                    Ok::<_, std::io::Error>((Connection::Client(Box::new(stream)), ids.unwrap_or_default()))
                }
                Role::Passive => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.server));
                    let stream = acceptor.accept(stream).await?;
                    let ids = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(certified_node_ids);
                    Ok((Connection::Server(Box::new(stream)), ids.unwrap_or_default()))
                }
            }
        };
        let activity = self.activity.clone();
        let handshake = async {
            tokio::select! {
                done = handshake => done,
                () = crate::listener::shed(activity.as_deref()) => Err(std::io::Error::other("shed (too many connections)")),
            }
        };
        let (connection, node_ids) = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(done)) => done,
            Ok(Err(error)) => {
                self.closing(format_args!("the TLS handshake failed: {error}"));
                self.fail_all("the TLS handshake failed");
                return;
            }
            Err(_) => {
                self.closing(format_args!("the TLS handshake timed out after {timeout:?}"));
                self.fail_all("the TLS handshake timed out");
                return;
            }
        };
        tracing::debug!(%address, ?node_ids, "TLS established");
        self.session.tls_established(node_ids, now());
        match connection {
            Connection::Client(stream) => {
                let (reader, writer) = tokio::io::split(*stream);
                self.run_established(reader, writer).await;
            }
            Connection::Server(stream) => {
                let (reader, writer) = tokio::io::split(*stream);
                self.run_established(reader, writer).await;
            }
        }
    }

    pub(super) async fn exchange_contact_headers(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        self.write_plain(stream).await?;
        let deadline = self.session.poll_timeout();
        let mut header = [0u8; CONTACT_HEADER_LEN];
        let read = stream.read_exact(&mut header);
        match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), read).await {
                Ok(result) => result.map(drop)?,
                Err(_) => {
                    self.session.handle_timeout(now());
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no contact header from the peer in time",
                    ));
                }
            },
            None => read.await.map(drop)?,
        }
        self.status.bytes_received.fetch_add(header.len() as u64, Ordering::Relaxed);
        self.session.handle_input(&header, now());
        // The passive side answers with its own header now, in the clear, before any TLS.
        self.write_plain(stream).await
    }

    /// Writes what the session queued straight to the bare socket (before the writer task).
    pub(super) async fn write_plain(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        while let Some(bytes) = self.session.poll_transmit() {
            stream.write_all(&bytes).await?;
            self.status.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            self.session.on_transmitted(now());
        }
        Ok(())
    }
}
