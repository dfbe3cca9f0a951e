//! The writer task of a TCPCLv3 connection: control messages as soon as they are queued (but
//! never inside a data segment), and each bundle cut into data segments read from its bytes as
//! they go, stopping between segments if the peer refused it (§5.4).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use super::session::Session;

/// A bundle to write.
pub(super) struct BundleJob {
    pub token: u64,
    /// A LENGTH message to write before the first segment.
    pub length_message: Option<Bytes>,
    pub length: u64,
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
    /// Set by the session task when the peer refused the bundle.
    pub abandoned: Arc<AtomicBool>,
}

/// What the writer reports back.
#[derive(Debug)]
pub(super) enum Written {
    /// Bytes went out (keepalive timing).
    Progress,
    /// The bundle's last segment is written (`complete`), or it was abandoned part-way.
    Bundle {
        token: u64,
        complete: bool,
    },
    Failed(String),
}

pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    writer: W,
    mut control: mpsc::UnboundedReceiver<Bytes>,
    mut bundles: mpsc::Receiver<BundleJob>,
    written: mpsc::UnboundedSender<Written>,
    segment_size: u64,
    queued: Arc<AtomicU64>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut buffer = Vec::new();
    let (mut control_open, mut bundles_open) = (true, true);
    loop {
        // Whatever control messages are queued go first.
        while let Ok(bytes) = control.try_recv() {
            if let Err(error) = write_control(&mut writer, &bytes, &queued).await {
                let _ = written.send(Written::Failed(error.to_string()));
                return;
            }
        }
        let job = match bundles.try_recv() {
            Ok(job) => Some(job),
            Err(_) => {
                if let Err(error) = writer.flush().await {
                    let _ = written.send(Written::Failed(error.to_string()));
                    return;
                }
                let _ = written.send(Written::Progress);
                tokio::select! {
                    biased;
                    message = control.recv(), if control_open => match message {
                        Some(bytes) => {
                            if let Err(error) = write_control(&mut writer, &bytes, &queued).await {
                                let _ = written.send(Written::Failed(error.to_string()));
                                return;
                            }
                            None
                        }
                        None => {
                            control_open = false;
                            None
                        }
                    },
                    job = bundles.recv(), if bundles_open => {
                        if job.is_none() {
                            bundles_open = false;
                        }
                        job
                    }
                    else => break,
                }
            }
        };
        let Some(job) = job else { continue };
        let token = job.token;
        match write_bundle(&mut writer, job, &mut control, &mut buffer, &written, segment_size, &queued).await
        {
            Ok(complete) => {
                let _ = written.send(Written::Bundle { token, complete });
            }
            Err(error) => {
                let _ = written.send(Written::Failed(error));
                return;
            }
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

/// Writes one bundle in segments of at most `segment_size`; answers whether it went whole.
async fn write_bundle<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    mut job: BundleJob,
    control: &mut mpsc::UnboundedReceiver<Bytes>,
    buffer: &mut Vec<u8>,
    written: &mpsc::UnboundedSender<Written>,
    segment_size: u64,
    queued: &AtomicU64,
) -> Result<bool, String> {
    if let Some(message) = job.length_message.take() {
        writer.write_all(&message).await.map_err(|e| e.to_string())?;
    }
    if job.length == 0 {
        let head = Session::segment_head(true, true, 0);
        writer.write_all(&head).await.map_err(|e| e.to_string())?;
        return Ok(true);
    }
    // The bundle is read up to READ_PIECE at a time (few trips to a stored bundle's file) and
    // cut into segments from that buffer.
    let piece = usize::try_from(job.length).unwrap_or(usize::MAX).min(READ_PIECE);
    if buffer.len() < piece {
        buffer.resize(piece, 0);
    }
    let segment = usize::try_from(segment_size).unwrap_or(usize::MAX).max(1);
    let mut sent = 0u64;
    loop {
        // Fill the buffer with the bundle's next bytes.
        let want = usize::try_from(job.length - sent).unwrap_or(usize::MAX).min(piece);
        let mut filled = 0;
        while filled < want {
            let n = job
                .reader
                .read(&mut buffer[filled..want])
                .await
                .map_err(|e| format!("reading the bundle: {e}"))?;
            if n == 0 {
                return Err(format!("the bundle ended {} bytes early", job.length - sent - filled as u64));
            }
            filled += n;
        }
        for chunk in buffer[..filled].chunks(segment) {
            if job.abandoned.load(Ordering::Acquire) {
                return Ok(false);
            }
            let first = sent == 0;
            let end = sent + chunk.len() as u64 == job.length;
            let head = Session::segment_head(first, end, chunk.len() as u64);
            writer.write_all(&head).await.map_err(|e| e.to_string())?;
            writer.write_all(chunk).await.map_err(|e| e.to_string())?;
            sent += chunk.len() as u64;
            if end {
                return Ok(true);
            }
            let _ = written.send(Written::Progress);
            // Between segments: acknowledgements and keepalives for the other direction.
            while let Ok(bytes) = control.try_recv() {
                write_control(writer, &bytes, queued).await.map_err(|e| e.to_string())?;
            }
        }
    }
}

/// Writes a control message and counts it off the bytes queued for writing.
async fn write_control<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    bytes: &[u8],
    queued: &AtomicU64,
) -> std::io::Result<()> {
    let result = writer.write_all(bytes).await;
    queued.fetch_sub(bytes.len() as u64, Ordering::Relaxed);
    result
}

/// A bundle's bytes are read in pieces of up to this size.
const READ_PIECE: usize = 1 << 20;
