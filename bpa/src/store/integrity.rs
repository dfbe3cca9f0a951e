//! Integrity on every read (design §3.7): the store records a CRC-32C of every bundle's bytes
//! as they arrive, before they reach the disk, and every read of a stored bundle checks it as
//! it streams. A reader that finds damage fails before it hands out the bundle's last byte, so
//! a damaged bundle is never delivered or forwarded whole; the bundle is then quarantined
//! (kept as evidence, never served) and counted.
//!
//! The checksum covers the bundle as stored, headers included, so damage is found for bundles
//! that carry no CRC of their own too.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

use super::error::StoreError;
use super::types::StoreId;
use crate::bundle::BundleError;

/// CRC-32C of `data`, continuing from `crc` (0 to start).
pub(crate) fn extend(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// Where damage found while reading a stored bundle is reported: the store quarantines the
/// bundle so it is never served again.
pub(crate) trait Quarantine: Send + Sync {
    fn quarantine(&self, id: StoreId, problem: String);
}

/// What a read of a stored bundle checks its bytes against, and whom it tells of damage.
#[derive(Clone)]
pub struct Integrity {
    /// The CRC-32C recorded at insert; `None` for bundles stored before checksums were kept
    /// (schema 2), which are checked only by their own CRCs (`dtn store check`).
    expected: Option<u32>,
    /// The store and the bundle to quarantine when the check fails.
    report_to: Option<(Arc<dyn Quarantine>, StoreId)>,
}

impl std::fmt::Debug for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integrity")
            .field("expected", &self.expected)
            .field("store_id", &self.report_to.as_ref().map(|(_, id)| *id))
            .finish()
    }
}

impl Integrity {
    /// No recorded checksum and nobody to tell: bytes read as they are (tests, tools).
    pub fn unchecked() -> Integrity {
        Integrity { expected: None, report_to: None }
    }

    /// Bytes whose whole CRC-32C must be `expected`.
    pub fn expecting(expected: u32) -> Integrity {
        Integrity { expected: Some(expected), report_to: None }
    }

    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn recorded(expected: Option<u32>, inner: Arc<dyn Quarantine>, id: StoreId) -> Integrity {
        Integrity { expected, report_to: Some((inner, id)) }
    }

    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    /// Checks a whole bundle's bytes at once.
    pub(crate) fn check(&self, data: &[u8], path: &str) -> std::io::Result<()> {
        self.verdict(extend(0, data), path)
    }

    /// A stored file whose header no longer parses, or that no longer fits its length: it parsed
    /// when it was stored, so that is damage (quarantined like a checksum mismatch) — unless
    /// only a leniency the node no longer grants refuses it (its `[accept]` switches changed),
    /// which is no damage and is reported as an invalid bundle.
    pub(crate) fn unreadable(&self, error: BundleError, path: &std::path::Path) -> StoreError {
        if matches!(error, BundleError::MissingPrimaryCrc | BundleError::MissingBundleAge) {
            return StoreError::InvalidBundle(error);
        }
        let problem = format!("it no longer reads as stored: {error}");
        if let Some((inner, id)) = &self.report_to {
            inner.quarantine(*id, problem.clone());
        }
        StoreError::Damaged { path: path.to_path_buf(), problem }
    }

    /// The verdict on the CRC of all of a bundle's bytes; damage is reported to the store.
    pub(crate) fn verdict(&self, computed: u32, path: &str) -> std::io::Result<()> {
        match self.expected {
            Some(expected) if expected != computed => {
                let problem = format!(
                    "checksum mismatch: stored as 0x{expected:08x}, the bytes now give 0x{computed:08x}"
                );
                let id = self.report_to.as_ref().map(|(inner, id)| {
                    inner.quarantine(*id, problem.clone());
                    *id
                });
                let id = id.map_or_else(String::new, |id| format!(" (store id {id})"));
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    DamagedBundle(format!("the stored bundle{id} in {path} is damaged: {problem}")),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The error a read of a damaged bundle fails with (inside an [`std::io::Error`] of kind
/// `InvalidData`); [`is_damage`] recognises it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DamagedBundle(String);

/// Whether an I/O error is a stored bundle found damaged.
pub fn is_damage(error: &std::io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<DamagedBundle>())
}

/// A region of a stored bundle's file, read as a stream and checked as it goes: the CRC of
/// every byte before the region (given), the region itself, and the bytes after it (read in
/// advance, for payload-only reads) must give the checksum recorded at insert. The last read
/// of the region fails instead of returning its bytes when they do not.
#[derive(Debug)]
pub struct CheckedFile {
    file: tokio::io::Take<tokio::fs::File>,
    crc: u32,
    /// The bytes after the region, folded in at its end.
    trailer: Vec<u8>,
    integrity: Integrity,
    path: String,
    failed: bool,
}

impl CheckedFile {
    /// `file` is positioned at the region's start; `crc` covers every byte before it.
    pub(crate) fn new(
        file: tokio::fs::File,
        length: u64,
        crc: u32,
        integrity: Integrity,
        path: String,
    ) -> Self {
        use tokio::io::AsyncReadExt;
        CheckedFile { file: file.take(length), crc, trailer: Vec::new(), integrity, path, failed: false }
    }

    /// Bytes left to read.
    pub fn len(&self) -> u64 {
        self.file.limit()
    }

    /// Whether nothing is left to read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Narrows the region to its first `length` bytes; the rest of it (a few bytes: the payload
    /// CRC and the breaks) is read now, to be checked with it at the end.
    pub(crate) async fn narrow(mut self, length: u64) -> Result<CheckedFile, StoreError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        // The payload CRC field, the payload block's break and the bundle's: at most 7 bytes.
        const MOST_AFTER_PAYLOAD: u64 = 16;
        let rest = self.file.limit().saturating_sub(length);
        let path = std::path::PathBuf::from(&self.path);
        if rest > MOST_AFTER_PAYLOAD {
            return Err(StoreError::Damaged {
                path,
                problem: format!(
                    "{rest} bytes follow the payload; a bundle has at most {MOST_AFTER_PAYLOAD}"
                ),
            });
        }
        let result: std::io::Result<Vec<u8>> = async {
            let file = self.file.get_mut();
            let start = file.stream_position().await?;
            file.seek(std::io::SeekFrom::Start(start + length)).await?;
            let mut trailer = vec![0u8; rest as usize];
            file.read_exact(&mut trailer).await?;
            file.seek(std::io::SeekFrom::Start(start)).await?;
            Ok(trailer)
        }
        .await;
        self.trailer = result.map_err(StoreError::io("reading the end of", path))?;
        self.file.set_limit(length);
        Ok(self)
    }
}

impl AsyncRead for CheckedFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                DamagedBundle(format!("the stored bundle in {} is damaged", this.path)),
            )));
        }
        if this.file.limit() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.file).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if read.is_empty() {
            this.failed = true;
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                DamagedBundle(format!("the stored bundle in {} is shorter than its row says", this.path)),
            )));
        }
        this.crc = extend(this.crc, read);
        if this.file.limit() == 0 {
            let crc = extend(this.crc, &this.trailer);
            if let Err(error) = this.integrity.verdict(crc, &this.path) {
                this.failed = true;
                // The bytes just read are not handed out.
                buf.set_filled(before);
                return Poll::Ready(Err(error));
            }
        }
        Poll::Ready(Ok(()))
    }
}
