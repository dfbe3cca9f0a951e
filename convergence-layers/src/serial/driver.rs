//! The tokio driver of a serial link: the port opened (and reopened when it fails or is
//! unplugged), frames read into the agent, bundles written as frames, and the
//! [`ConvergenceLayer`] the agent sends through.
//!
//! A serial link is point to point: its peer's node ID comes from the configuration, and the
//! peer is a neighbour while the port is open. Bundles larger than `max_frame` are fragmented by
//! the agent before they get here (RFC 9171 §5.8), so a frame lost to line noise costs one
//! fragment. Nothing is sent while idle (half-duplex radios), and an optional gap is kept
//! between frames. No acknowledgement: a frame written counts as forwarded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bpa::Eid;
use bpa::cla::{BundleSink, ClaError, ClaFuture, ConvergenceLayer, OutgoingBundle, Refusal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_serial::SerialPortBuilderExt;

use super::codec::{Deframed, Deframer, DropReason, Framing};
use crate::lock;

/// Flow control on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControl {
    None,
    /// XON/XOFF. Frames carry 0x11 and 0x13 raw, so only with a modem that escapes them.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// How the link behaves.
#[derive(Debug, Clone)]
pub struct SerialConfig {
    /// The device (`/dev/ttyUSB0`).
    pub device: String,
    pub baud: u32,
    pub flow_control: FlowControl,
    pub framing: Framing,
    /// The largest bundle sent in one frame; larger ones are fragmented by the agent.
    pub max_frame: usize,
    /// The largest bundle taken from the line in one frame.
    pub max_frame_received: usize,
    /// A pause after each frame written (half-duplex radios that need to turn around).
    pub min_gap: Option<Duration>,
    /// The node at the other end; `None`: learnt from the Previous Node block of the first
    /// bundle it sends (the link carries nothing to it until then).
    pub peer: Option<Eid>,
    /// How long to wait before opening the device again after it failed.
    pub reopen: Duration,
}

impl SerialConfig {
    pub fn new(device: impl Into<String>, baud: u32, peer: Option<Eid>) -> SerialConfig {
        SerialConfig {
            device: device.into(),
            baud,
            flow_control: FlowControl::None,
            framing: Framing::Cobs,
            max_frame: 4096,
            max_frame_received: 64 * 1024,
            min_gap: None,
            peer,
            reopen: Duration::from_secs(5),
        }
    }
}

/// A snapshot of the link's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SerialStats {
    pub open: bool,
    pub frames_received: u64,
    pub bytes_received: u64,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// Frames whose CRC failed.
    pub crc_failures: u64,
    /// Frames that were not valid COBS/SLIP (bytes inserted or lost): dropped, read on from the
    /// next delimiter.
    pub malformed: u64,
    pub too_long: u64,
    /// Whole frames the agent refused (not a bundle, no room).
    pub refused: u64,
}

#[derive(Debug, Default)]
struct Counters {
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    crc_failures: AtomicU64,
    malformed: AtomicU64,
    too_long: AtomicU64,
    refused: AtomicU64,
}

struct Outbound {
    bundle: OutgoingBundle,
    done: oneshot::Sender<Result<(), ClaError>>,
}

struct Shared<A: BundleSink> {
    agent: A,
    config: SerialConfig,
    counters: Counters,
    open: watch::Sender<bool>,
    /// The peer: configured, or learnt from its first bundle.
    peer: std::sync::Mutex<Option<Eid>>,
    outbound: std::sync::Mutex<Option<mpsc::Sender<Outbound>>>,
    shutdown: watch::Sender<bool>,
}

impl<A: BundleSink> std::fmt::Debug for Shared<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serial").field("config", &self.config).finish_non_exhaustive()
    }
}

/// One serial link. Cheap to clone.
#[derive(Debug)]
pub struct Serial<A: BundleSink> {
    shared: Arc<Shared<A>>,
}

impl<A: BundleSink> Clone for Serial<A> {
    fn clone(&self) -> Self {
        Serial { shared: Arc::clone(&self.shared) }
    }
}

impl<A: BundleSink> Serial<A> {
    pub fn new(agent: A, mut config: SerialConfig) -> Serial<A> {
        config.max_frame = config.max_frame.max(64);
        config.max_frame_received = config.max_frame_received.max(config.max_frame);
        let (open, _) = watch::channel(false);
        let (shutdown, _) = watch::channel(false);
        let peer = config.peer.as_ref().map(Eid::node_id);
        Serial {
            shared: Arc::new(Shared {
                agent,
                config,
                counters: Counters::default(),
                open,
                peer: std::sync::Mutex::new(peer),
                outbound: std::sync::Mutex::new(None),
                shutdown,
            }),
        }
    }

    /// Opens the device and keeps it open (reopening after `reopen` when it fails) until
    /// [`Serial::shutdown`].
    pub fn start(&self) {
        let link = self.clone();
        tokio::spawn(async move { link.keep_open().await });
    }

    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// The [`ConvergenceLayer`] the agent sends through.
    pub fn link(&self) -> Arc<dyn ConvergenceLayer> {
        Arc::new(SerialLink { shared: Arc::clone(&self.shared) })
    }

    pub fn config(&self) -> &SerialConfig {
        &self.shared.config
    }

    /// The node at the other end: configured, or learnt; `None` until then.
    pub fn peer(&self) -> Option<Eid> {
        lock(&self.shared.peer).clone()
    }

    fn peer_text(&self) -> String {
        self.peer().map_or_else(|| self.shared.config.device.clone(), |p| p.to_string())
    }

    /// Whether the device is open now.
    pub fn opened(&self) -> watch::Receiver<bool> {
        self.shared.open.subscribe()
    }

    pub fn stats(&self) -> SerialStats {
        let c = &self.shared.counters;
        SerialStats {
            open: *self.shared.open.borrow(),
            frames_received: c.frames_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            frames_sent: c.frames_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            crc_failures: c.crc_failures.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            too_long: c.too_long.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
        }
    }

    async fn keep_open(&self) {
        let config = &self.shared.config;
        let mut shutdown = self.shared.shutdown.subscribe();
        let mut failing: Option<String> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let flow = match config.flow_control {
                FlowControl::None => tokio_serial::FlowControl::None,
                FlowControl::Software => tokio_serial::FlowControl::Software,
                FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
            };
            match tokio_serial::new(&config.device, config.baud).flow_control(flow).open_native_async() {
                Ok(port) => {
                    failing = None;
                    tracing::info!(device = %config.device, baud = config.baud, framing = %config.framing, peer = %config.peer.as_ref().map_or_else(|| "(any)".to_string(), ToString::to_string), "serial link open");
                    self.run(port, &mut shutdown).await;
                    tracing::info!(device = %config.device, "serial link closed");
                }
                Err(error) => {
                    let reason = error.to_string();
                    if failing.as_deref() != Some(reason.as_str()) {
                        tracing::warn!(device = %config.device, %error, retry_in = %bpa::time::format_duration(config.reopen), "cannot open the serial device; trying again (logged again when the reason changes)");
                        failing = Some(reason);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(config.reopen) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Runs the open port until it fails or the link shuts down.
    async fn run<P: AsyncRead + AsyncWrite>(&self, port: P, shutdown: &mut watch::Receiver<bool>) {
        let (reader, writer) = tokio::io::split(port);
        let (outbound, queue) = mpsc::channel(16);
        *lock(&self.shared.outbound) = Some(outbound);
        self.shared.open.send_replace(true);
        let known = lock(&self.shared.peer).clone();
        if let Some(peer) = known {
            self.peer_up(peer).await;
        }
        tokio::select! {
            () = self.read_frames(reader) => {}
            () = self.write_frames(writer, queue) => {}
            _ = shutdown.changed() => {}
        }
        *lock(&self.shared.outbound) = None;
        self.shared.open.send_replace(false);
        let known = lock(&self.shared.peer).clone();
        if let Some(peer) = known {
            self.shared.agent.neighbour_down(&peer);
        }
    }

    async fn peer_up(&self, peer: Eid) {
        if let Err(error) = self.shared.agent.neighbour_up(peer.clone(), self.link()).await {
            tracing::error!(%error, neighbour = %peer, "the agent did not take the serial neighbour");
        }
    }

    /// With no peer configured, the first bundle's Previous Node block names it (RFC 9171
    /// §4.4.1): from then on it is the neighbour at the other end of the line.
    async fn learn_peer(&self, frame: &bytes::Bytes) {
        if lock(&self.shared.peer).is_some() {
            return;
        }
        let Ok(Some(header)) = bpa::bundle::BundleHeader::parse(frame, &bpa::bundle::ParseOptions::lenient())
        else {
            return;
        };
        let Some(node) = header
            .extension_blocks
            .iter()
            .find(|b| b.block_type == bpa::bundle::block_type::PREVIOUS_NODE)
            .and_then(|b| b.previous_node(1024).ok())
            .map(|eid| eid.node_id())
        else {
            return;
        };
        *lock(&self.shared.peer) = Some(node.clone());
        tracing::info!(device = %self.shared.config.device, peer = %node, "the serial peer named itself in its first bundle's Previous Node block");
        self.peer_up(node).await;
    }

    async fn read_frames<R: AsyncRead + Unpin>(&self, mut reader: R) {
        let config = &self.shared.config;
        let counters = &self.shared.counters;
        let mut deframer = Deframer::new(config.framing, config.max_frame_received);
        let mut buffer = vec![0u8; 4096];
        let mut warnings = bpa::log::RateLimit::new(Duration::from_secs(60));
        loop {
            let n = match reader.read(&mut buffer).await {
                Ok(0) => return,
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(device = %config.device, %error, "reading the serial device failed");
                    return;
                }
            };
            counters.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
            for deframed in deframer.push(&buffer[..n]) {
                match deframed {
                    Deframed::Frame(frame) => {
                        counters.frames_received.fetch_add(1, Ordering::Relaxed);
                        let frame = bytes::Bytes::from(frame);
                        self.learn_peer(&frame).await;
                        if let Err(error) = self.shared.agent.receive(frame).await {
                            counters.refused.fetch_add(1, Ordering::Relaxed);
                            if let Some(suppressed) = warnings.allow(crate::clock::now()) {
                                tracing::warn!(device = %config.device, %error, earlier_not_logged = suppressed, "a frame from the serial line was refused");
                            }
                        }
                    }
                    Deframed::Dropped(reason) => {
                        let counter = match reason {
                            DropReason::Crc => &counters.crc_failures,
                            DropReason::Malformed(_) => &counters.malformed,
                            DropReason::TooLong => &counters.too_long,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if let Some(suppressed) = warnings.allow(crate::clock::now()) {
                            tracing::warn!(device = %config.device, %reason, earlier_not_logged = suppressed, "a frame from the serial line was dropped");
                        }
                    }
                }
            }
        }
    }

    async fn write_frames<W: AsyncWrite + Unpin>(&self, mut writer: W, mut queue: mpsc::Receiver<Outbound>) {
        let config = &self.shared.config;
        let counters = &self.shared.counters;
        while let Some(Outbound { bundle, done }) = queue.recv().await {
            let length = bundle.len();
            if length > config.max_frame as u64 {
                let _ = done.send(Err(ClaError::Refused {
                    peer: self.peer_text(),
                    reason: Refusal::TooLarge { limit: config.max_frame as u64 },
                }));
                continue;
            }
            let bytes = match bundle.into_bytes().await {
                Ok(bytes) => bytes,
                Err(error) => {
                    let _ = done.send(Err(ClaError::Failed {
                        peer: self.peer_text(),
                        reason: format!("reading the bundle: {error}"),
                    }));
                    continue;
                }
            };
            let frame = config.framing.encode(&bytes);
            let written = async {
                writer.write_all(&frame).await?;
                writer.flush().await
            }
            .await;
            match written {
                Ok(()) => {
                    counters.frames_sent.fetch_add(1, Ordering::Relaxed);
                    counters.bytes_sent.fetch_add(frame.len() as u64, Ordering::Relaxed);
                    let _ = done.send(Ok(()));
                }
                Err(error) => {
                    let _ = done
                        .send(Err(ClaError::Failed { peer: self.peer_text(), reason: error.to_string() }));
                    return;
                }
            }
            if let Some(gap) = config.min_gap {
                tokio::time::sleep(gap).await;
            }
        }
    }
}

/// The agent's way onto the line.
#[derive(Debug)]
struct SerialLink<A: BundleSink> {
    shared: Arc<Shared<A>>,
}

impl<A: BundleSink> ConvergenceLayer for SerialLink<A> {
    fn name(&self) -> &str {
        "serial"
    }

    fn max_bundle_size(&self) -> Option<usize> {
        Some(self.shared.config.max_frame)
    }

    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        let route = lock(&self.shared.outbound).clone();
        let peer = peer.node_id().to_string();
        Box::pin(async move {
            let Some(route) = route else { return Err(ClaError::LinkDown { peer }) };
            let (done, answer) = oneshot::channel();
            if route.send(Outbound { bundle, done }).await.is_err() {
                return Err(ClaError::LinkDown { peer });
            }
            answer.await.unwrap_or(Err(ClaError::LinkDown { peer }))
        })
    }
}
