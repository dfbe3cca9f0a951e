//! The local API's client side: HTTP/1.1 over the daemon's Unix socket (docs/api.md).

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use anyhow::Context;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// Where the daemon's API is.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

/// A request body read from a channel (a file streamed by a task), with its exact length when
/// known (sent chunked otherwise).
#[derive(Debug)]
pub struct ChannelBody {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    length: Option<u64>,
}

impl ChannelBody {
    pub fn new(
        chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
        length: Option<u64>,
    ) -> ChannelBody {
        ChannelBody { chunks, length }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.chunks.poll_recv(cx).map(|chunk| chunk.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        self.length.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// No daemon answered on the socket: nothing was sent, nothing received.
#[derive(Debug)]
pub struct NoDaemon {
    socket: PathBuf,
    error: std::io::Error,
}

impl std::fmt::Display for NoDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.error.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => write!(
                f,
                "no daemon at {}: start one with `dtn daemon`, or point --socket (or DTN_SOCKET) at it",
                self.socket.display()
            ),
            _ => write!(f, "cannot connect to the daemon at {}: {}", self.socket.display(), self.error),
        }
    }
}

impl std::error::Error for NoDaemon {}

impl Client {
    /// The socket from `--socket`, else `DTN_SOCKET`, else the default data directory's.
    pub fn new(socket: Option<PathBuf>) -> anyhow::Result<Client> {
        let socket = match socket.or_else(|| std::env::var_os("DTN_SOCKET").map(PathBuf::from)) {
            Some(path) => path,
            None => crate::config::default_data_dir()?.join(crate::config::SOCKET_NAME),
        };
        Ok(Client { socket })
    }

    /// Sends one request on a fresh connection.
    pub async fn request<B>(&self, method: Method, path: &str, body: B) -> anyhow::Result<Response<Incoming>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|error| anyhow::Error::new(NoDaemon { socket: self.socket.clone(), error }))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("the daemon did not speak HTTP on its socket")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost")
            .body(body)
            .context("building the request")?;
        sender.send_request(request).await.context("the daemon closed the connection")
    }

    /// A request whose answer is JSON (or nothing); a 4xx/5xx becomes an error with the
    /// daemon's reason.
    pub async fn json(&self, method: Method, path: &str) -> anyhow::Result<Value> {
        let response = self.request(method, path, Full::new(Bytes::new())).await?;
        read_json(response).await
    }
}

/// The JSON of an answer; an error answer becomes an error carrying the daemon's message.
pub async fn read_json(response: Response<Incoming>) -> anyhow::Result<Value> {
    let status = response.status();
    let body = response.into_body().collect().await.context("reading the daemon's answer")?.to_bytes();
    if !status.is_success() {
        return Err(api_error(status, &body));
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).context("the daemon's answer is not JSON")
}

/// An error from an error answer: the `error` field of its JSON body, or the body itself.
pub fn api_error(status: StatusCode, body: &[u8]) -> anyhow::Error {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    anyhow::anyhow!("the daemon refused: {message} ({status})")
}

/// Percent-encodes a query parameter value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
