//! A stored bundle's bytes as they are read back: whole in memory, or streamed from its file
//! and checked as they stream (`integrity.rs`); opened for forwarding with only its header
//! parsed.

use bytes::Bytes;

use super::StoreError;
use super::integrity::{CheckedFile, Integrity, extend, is_damage};
use crate::bundle::{BundleError, BundleHeader, ParseOptions};

/// The encoded bytes of a stored bundle, for reading.
#[derive(Debug)]
pub enum BundleData {
    /// Small bundles come from the database, whole.
    Inline(Bytes),
    /// Large bundles are streamed from their file, checked as they stream.
    File {
        /// The bundle's file, opened.
        file: tokio::fs::File,
        /// The bundle's length in bytes.
        length: u64,
        /// The file's path, for messages.
        path: std::path::PathBuf,
        /// What the bytes are checked against as they stream.
        integrity: Integrity,
    },
}

impl BundleData {
    /// All the bytes in memory: for small bundles, and for callers that cannot stream yet.
    pub async fn into_bytes(self) -> Result<Bytes, StoreError> {
        match self {
            BundleData::Inline(bytes) => Ok(bytes),
            BundleData::File { file, length, path, integrity } => {
                use tokio::io::AsyncReadExt;
                let mut out = Vec::with_capacity(length as usize);
                let name = path.display().to_string();
                let mut reader = CheckedFile::new(file, length, 0, integrity, name);
                reader.read_to_end(&mut out).await.map_err(|source| read_failure(path, source))?;
                Ok(out.into())
            }
        }
    }
}

/// The payload content of a stored bundle, ready to stream: in memory for small bundles, a
/// region of the bundle's file for large ones.
#[derive(Debug)]
pub enum PayloadContent {
    /// The bytes themselves.
    Memory(Bytes),
    /// A region of the bundle's file, checked as it is read.
    File(CheckedFile),
}

impl BundleData {
    /// The blocks before the payload and the payload content, without reading the payload
    /// into memory: only the header is read from a file, which is then left at the payload.
    pub async fn into_payload(
        self,
        options: &ParseOptions,
    ) -> Result<(BundleHeader, PayloadContent), StoreError> {
        let OpenedBundle { header, rest, .. } = self.into_opened(options).await?;
        // `rest` runs to the end of the bundle; the payload content is its first bytes.
        let length = header.payload.data_length;
        let content = match rest {
            PayloadContent::Memory(bytes) => PayloadContent::Memory(bytes.slice(..length as usize)),
            PayloadContent::File(file) => PayloadContent::File(file.narrow(length).await?),
        };
        Ok((header, content))
    }
}

/// A stored bundle opened for forwarding: its header, the bytes it was parsed from (at least up
/// to the payload content) and the rest of the bundle — payload content, payload CRC, final
/// break — in memory or as a region of its file.
#[derive(Debug)]
pub struct OpenedBundle {
    /// The blocks before the payload, and the payload block's head.
    pub header: BundleHeader,
    /// The bytes the header was parsed from.
    pub prefix: Bytes,
    /// Everything from the payload content to the end of the bundle.
    pub rest: PayloadContent,
}

impl BundleData {
    /// Opens a stored bundle for forwarding: only the header is read from a file, which is left
    /// at the payload.
    pub async fn into_opened(self, options: &ParseOptions) -> Result<OpenedBundle, StoreError> {
        use tokio::io::AsyncSeekExt;
        match self {
            BundleData::Inline(bytes) => {
                let header = BundleHeader::parse(&bytes, options)?.ok_or(truncated(bytes.len()))?;
                whole_bundle(&header, bytes.len() as u64)?;
                let rest = PayloadContent::Memory(bytes.slice(header.payload.data_offset..));
                Ok(OpenedBundle { header, prefix: bytes, rest })
            }
            BundleData::File { mut file, length, path, integrity } => {
                let read_error = |source| StoreError::Io {
                    action: "reading a stored bundle's file",
                    path: path.clone(),
                    source,
                };
                let (header, prefix) = read_header(&mut file, options)
                    .await
                    .map_err(read_error)?
                    .map_err(|error| integrity.unreadable(error, &path))?;
                whole_bundle(&header, length).map_err(|error| integrity.unreadable(error, &path))?;
                let start = header.payload.data_offset as u64;
                file.seek(std::io::SeekFrom::Start(start)).await.map_err(read_error)?;
                let before = extend(0, &prefix[..header.payload.data_offset]);
                let name = path.display().to_string();
                let rest =
                    PayloadContent::File(CheckedFile::new(file, length - start, before, integrity, name));
                Ok(OpenedBundle { header, prefix: prefix.into(), rest })
            }
        }
    }
}

/// A failed read of a stored bundle: damage found by its checksum, or the file system's error.
pub(crate) fn read_failure(path: std::path::PathBuf, source: std::io::Error) -> StoreError {
    if is_damage(&source) {
        StoreError::Damaged { path, problem: source.to_string() }
    } else {
        StoreError::Io { action: "reading a stored bundle's file", path, source }
    }
}

/// Reads a bundle file from its start until its header parses: the header and every byte read
/// (the payload's first bytes may be among them), or what is wrong with the bundle.
pub(crate) async fn read_header(
    file: &mut tokio::fs::File,
    options: &ParseOptions,
) -> std::io::Result<Result<(BundleHeader, Vec<u8>), BundleError>> {
    use tokio::io::AsyncReadExt;
    let mut prefix = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut chunk).await?;
        prefix.extend_from_slice(&chunk[..n]);
        let bytes = Bytes::copy_from_slice(&prefix);
        match BundleHeader::parse(&bytes, options) {
            Ok(Some(header)) => return Ok(Ok((header, prefix))),
            Ok(None) if n > 0 => continue,
            Ok(None) => {
                let error =
                    crate::bundle::Bundle::parse(&bytes, options).err().unwrap_or(truncated(prefix.len()));
                return Ok(Err(error));
            }
            Err(error) => return Ok(Err(error)),
        }
    }
}

fn truncated(offset: usize) -> BundleError {
    BundleError::Cbor { field: "the bundle", offset, problem: crate::bundle::CborProblem::Truncated }
}

/// The header's lengths must agree with the stored bytes': one whole bundle, no more. (A
/// damaged row or file must not make a reader slice past the end.)
fn whole_bundle(header: &BundleHeader, length: u64) -> Result<(), BundleError> {
    let end = header.payload.bundle_length;
    if end > length {
        return Err(BundleError::Cbor {
            field: "the block-type-specific data",
            offset: header.payload.data_head_offset,
            problem: crate::bundle::CborProblem::Truncated,
        });
    }
    if end < length {
        return Err(BundleError::TrailingBytes { offset: end as usize, count: (length - end) as usize });
    }
    Ok(())
}
