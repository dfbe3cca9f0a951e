//! The writer task of a session: control messages and segments in the order the session task
//! queues them, each segment's data read from its transfer's bytes (the store's file) as it goes.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use super::driver::{SessionStatus, WRITE_BUFFER};

/// What the writer task is asked to write.
pub(super) enum WriteJob {
    /// Session bytes (messages, segment heads are part of [`WriteJob::Segment`]).
    Control(Bytes),
    /// A new outgoing transfer's bytes, to be read as its segments go out.
    Start { transfer_id: u64, reader: Pin<Box<dyn AsyncRead + Send>> },
    /// One segment: its head, then `data_length` bytes of the transfer.
    Segment { transfer_id: u64, head: Bytes, data_length: u64, end: bool },
    /// The peer refused the transfer: its bytes are no longer needed.
    Abandon { transfer_id: u64 },
}

/// What the writer reports back.
pub(super) enum Written {
    Segment { data_length: u64 },
    Control { length: u64 },
    Failed(String),
}

/// Writes what the session task queues, in order, reading each segment's data from its
/// transfer's bytes; flushes whenever nothing more is queued.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    writer: W,
    mut jobs: mpsc::UnboundedReceiver<WriteJob>,
    written: mpsc::UnboundedSender<Written>,
    status: Arc<SessionStatus>,
) {
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, writer);
    let mut sources: HashMap<u64, Pin<Box<dyn AsyncRead + Send>>> = HashMap::new();
    // Grown to SEGMENT_DATA_BUFFER by the first large segment, so a session of small bundles
    // keeps a small one.
    let mut buffer = Vec::new();
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Empty) => {
                if let Err(error) = writer.flush().await {
                    let _ = written.send(Written::Failed(error.to_string()));
                    return;
                }
                match jobs.recv().await {
                    Some(job) => job,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let result = match job {
            WriteJob::Control(bytes) => {
                let result = writer.write_all(&bytes).await;
                status.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                result.map(|()| Written::Control { length: bytes.len() as u64 }).map_err(|e| e.to_string())
            }
            WriteJob::Start { transfer_id, reader } => {
                sources.insert(transfer_id, reader);
                continue;
            }
            WriteJob::Abandon { transfer_id } => {
                sources.remove(&transfer_id);
                continue;
            }
            WriteJob::Segment { transfer_id, head, data_length, end } => {
                let result = match sources.get_mut(&transfer_id) {
                    Some(source) => {
                        write_segment(&mut writer, &head, source, data_length, &mut buffer, &status).await
                    }
                    None => Err(format!("transfer {transfer_id} has no data to send")),
                };
                if end {
                    sources.remove(&transfer_id);
                }
                result.map(|()| Written::Segment { data_length })
            }
        };
        match result {
            Ok(report) => {
                let _ = written.send(report);
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

/// Segment data is read from the bundle in pieces of up to this size: each read of a stored
/// bundle's file is a trip through the blocking pool, and 1 MiB pieces make those few (the
/// 1 GiB transfer: 297–660 MiB/s with 256 KiB pieces, 509–1,113 MiB/s with 1 MiB, same run).
/// Writes this large bypass the socket's buffered writer.
const SEGMENT_DATA_BUFFER: usize = 1 << 20;

pub(super) async fn write_segment<W: AsyncWrite + Unpin>(
    writer: &mut W,
    head: &[u8],
    source: &mut Pin<Box<dyn AsyncRead + Send>>,
    data_length: u64,
    buffer: &mut Vec<u8>,
    status: &SessionStatus,
) -> Result<(), String> {
    let wanted = usize::try_from(data_length).unwrap_or(usize::MAX).min(SEGMENT_DATA_BUFFER);
    if buffer.len() < wanted {
        buffer.resize(wanted, 0);
    }
    writer.write_all(head).await.map_err(|e| e.to_string())?;
    status.bytes_sent.fetch_add(head.len() as u64, Ordering::Relaxed);
    let mut left = data_length;
    while left > 0 {
        let want = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = source.read(&mut buffer[..want]).await.map_err(|e| format!("reading the bundle: {e}"))?;
        if n == 0 {
            return Err(format!("the bundle ended {left} bytes early"));
        }
        writer.write_all(&buffer[..n]).await.map_err(|e| e.to_string())?;
        status.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
        left -= n as u64;
    }
    Ok(())
}
