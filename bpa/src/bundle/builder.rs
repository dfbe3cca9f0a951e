//! Making new bundles (RFC 9171 §5.2 "bundle transmission" creates them).

use bytes::Bytes;

use super::Bundle;
use super::block::{
    CanonicalBlock, HopCount, block_type, bundle_age_data, hop_count_data, previous_node_data,
};
use super::cbor;
use super::crc::{CrcState, CrcType};
use super::eid::Eid;
use super::error::BundleError;
use super::flags::{BlockFlags, BundleFlags};
use super::options::ParseOptions;
use super::parse::validate;
use super::primary::{CreationTimestamp, FragmentInfo, PrimaryBlock};

/// An extension block to add, by type code; numbers are assigned by the builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionBlock {
    /// Its type code.
    pub block_type: u64,
    /// Its block processing control flags.
    pub flags: BlockFlags,
    /// Its block-type-specific data.
    pub data: Bytes,
}

/// Builds a new bundle. The primary block always carries a CRC (CRC-32C unless told otherwise),
/// and [`BundleBuilder::build`] enforces the same rules the parser does.
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    primary: PrimaryBlock,
    block_crc_type: CrcType,
    payload_flags: BlockFlags,
    extensions: Vec<ExtensionBlock>,
    payload: Bytes,
}

impl BundleBuilder {
    /// A bundle from `source` to `destination`, created at `creation` (DTN time in ms and a
    /// sequence number), living `lifetime_ms` milliseconds.
    pub fn new(source: Eid, destination: Eid, creation: CreationTimestamp, lifetime_ms: u64) -> Self {
        BundleBuilder {
            primary: PrimaryBlock {
                flags: BundleFlags::default(),
                crc_type: CrcType::Crc32c,
                destination,
                report_to: Eid::Null,
                source,
                creation,
                lifetime: lifetime_ms,
                fragment: None,
            },
            block_crc_type: CrcType::Crc32c,
            payload_flags: BlockFlags::default(),
            extensions: Vec::new(),
            payload: Bytes::new(),
        }
    }

    /// Where status reports go (default: the source).
    pub fn report_to(mut self, report_to: Eid) -> Self {
        self.primary.report_to = report_to;
        self
    }

    /// Bundle processing control flags (RFC 9171 §4.2.3). The fragment flag follows
    /// [`BundleBuilder::fragment`] and is ignored here.
    pub fn flags(mut self, flags: BundleFlags) -> Self {
        self.primary.flags = BundleFlags(flags.0 & !BundleFlags::IS_FRAGMENT);
        self
    }

    /// CRC type of the primary block: CRC-16 or CRC-32C. `CrcType::None` makes `build` fail.
    pub fn primary_crc(mut self, crc_type: CrcType) -> Self {
        self.primary.crc_type = crc_type;
        self
    }

    /// CRC type of the canonical blocks added by this builder.
    pub fn block_crc(mut self, crc_type: CrcType) -> Self {
        self.block_crc_type = crc_type;
        self
    }

    /// Marks the bundle as a fragment of an ADU (RFC 9171 §5.8).
    pub fn fragment(mut self, offset: u64, total_adu_length: u64) -> Self {
        self.primary.fragment = Some(FragmentInfo { offset, total_adu_length });
        self
    }

    /// The payload's bytes.
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = payload.into();
        self
    }

    /// The payload block's processing control flags.
    pub fn payload_flags(mut self, flags: BlockFlags) -> Self {
        self.payload_flags = flags;
        self
    }

    /// Adds a Hop Count block with this limit and a count of 0.
    pub fn hop_limit(self, limit: u64) -> Self {
        self.extension(
            block_type::HOP_COUNT,
            BlockFlags::default(),
            hop_count_data(HopCount { limit, count: 0 }),
        )
    }

    /// Adds a Bundle Age block of `age_ms` milliseconds.
    pub fn bundle_age(self, age_ms: u64) -> Self {
        self.extension(block_type::BUNDLE_AGE, BlockFlags::default(), bundle_age_data(age_ms))
    }

    /// Adds a Previous Node block naming `node`.
    pub fn previous_node(self, node: &Eid) -> Self {
        self.extension(block_type::PREVIOUS_NODE, BlockFlags::default(), previous_node_data(node))
    }

    /// Adds any extension block; its data is taken as is.
    pub fn extension(mut self, block_type: u64, flags: BlockFlags, data: Bytes) -> Self {
        self.extensions.push(ExtensionBlock { block_type, flags, data });
        self
    }

    /// Validates and returns the bundle. Extension blocks are numbered 2, 3, ... in the order
    /// they were added; the payload block is number 1 and last.
    pub fn build(mut self) -> Result<Bundle, BundleError> {
        let payload_data = std::mem::take(&mut self.payload);
        let payload_len = payload_data.len() as u64;
        let (primary, mut blocks, mut payload) = self.into_blocks(payload_len)?;
        payload.data = payload_data;
        blocks.push(payload);
        Ok(Bundle::from_parts(primary, blocks))
    }

    /// Validates the bundle for a payload of `payload_length` bytes that is not in memory and
    /// returns the encoded bytes before the payload content, with the [`PayloadEncoder`] that
    /// computes the payload block's CRC as the content streams past and gives the bytes after
    /// it. `head ‖ payload ‖ encoder.finish()` is exactly what [`BundleBuilder::build`] would
    /// encode with that payload; a payload set with [`BundleBuilder::payload`] is ignored.
    pub fn build_streamed(self, payload_length: u64) -> Result<(Vec<u8>, PayloadEncoder), BundleError> {
        let (primary, blocks, payload) = self.into_blocks(payload_length)?;
        Ok(streamed_head(&primary, &blocks, payload.flags, payload.crc_type, payload_length))
    }

    /// The blocks as built, checked by the parser's rules; the payload block's data is empty
    /// and `payload_len` stands for its length.
    fn into_blocks(
        self,
        payload_len: u64,
    ) -> Result<(PrimaryBlock, Vec<CanonicalBlock>, CanonicalBlock), BundleError> {
        if self.primary.crc_type == CrcType::None {
            return Err(BundleError::MissingPrimaryCrc);
        }
        let mut primary = self.primary;
        if primary.fragment.is_some() {
            primary.flags.0 |= BundleFlags::IS_FRAGMENT;
        }
        let crc_type = self.block_crc_type;
        let blocks: Vec<CanonicalBlock> = self
            .extensions
            .into_iter()
            .zip(2u64..)
            .map(|(e, number)| CanonicalBlock {
                block_type: e.block_type,
                number,
                flags: e.flags,
                crc_type,
                data: e.data,
            })
            .collect();
        let payload = CanonicalBlock {
            block_type: block_type::PAYLOAD,
            number: 1,
            flags: self.payload_flags,
            crc_type,
            data: Bytes::new(),
        };
        // The same rules the parser enforces, checked on the blocks as built.
        validate(&primary, &blocks, &payload, payload_len, &[], &ParseOptions::default())?;
        Ok((primary, blocks, payload))
    }
}

/// More or fewer payload bytes than declared to [`BundleBuilder::build_streamed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the payload was declared as {declared} bytes but {received} came")]
pub struct PayloadLengthMismatch {
    /// The length declared.
    pub declared: u64,
    /// The bytes that came.
    pub received: u64,
}

/// The encoded bytes of a bundle before its payload content — `primary`, the extension `blocks`
/// and the head of a payload block (number 1) with these flags and CRC type for a payload of
/// `payload_length` bytes — and the [`PayloadEncoder`] that gives the bytes after the content.
/// For bundles whose payload is not in memory ([`BundleBuilder::build_streamed`], reassembly
/// from stored fragments); the caller has checked the blocks.
pub fn streamed_head(
    primary: &PrimaryBlock,
    blocks: &[CanonicalBlock],
    payload_flags: BlockFlags,
    payload_crc: CrcType,
    payload_length: u64,
) -> (Vec<u8>, PayloadEncoder) {
    let mut head = vec![cbor::INDEFINITE_ARRAY];
    primary.encode(&mut head);
    for block in blocks {
        block.encode(&mut head);
    }
    let block_start = head.len();
    cbor::write_array(&mut head, if payload_crc == CrcType::None { 5 } else { 6 });
    cbor::write_uint(&mut head, block_type::PAYLOAD);
    cbor::write_uint(&mut head, 1);
    cbor::write_uint(&mut head, payload_flags.0);
    cbor::write_uint(&mut head, payload_crc.code());
    cbor::write_head(&mut head, cbor::MAJOR_BYTES, payload_length);
    let mut crc = CrcState::new(payload_crc);
    crc.update(&head[block_start..]);
    (head, PayloadEncoder { crc_type: payload_crc, crc, declared: payload_length, received: 0 })
}

/// The payload block's CRC, computed as the payload content streams past (RFC 9171 §4.3.2: the
/// CRC covers the whole block with the CRC field's value zeroed). Sans-IO.
#[derive(Debug, Clone)]
pub struct PayloadEncoder {
    crc_type: CrcType,
    crc: CrcState,
    declared: u64,
    received: u64,
}

impl PayloadEncoder {
    /// Takes the next payload bytes. Refuses (and ignores) bytes beyond the declared length.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), PayloadLengthMismatch> {
        let received = self.received + chunk.len() as u64;
        if received > self.declared {
            return Err(PayloadLengthMismatch { declared: self.declared, received });
        }
        self.crc.update(chunk);
        self.received = received;
        Ok(())
    }

    /// Payload bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.declared - self.received
    }

    /// The bytes after the payload content: the payload block's CRC field and the bundle's
    /// final break. Refuses when fewer bytes than declared came.
    pub fn finish(mut self) -> Result<Vec<u8>, PayloadLengthMismatch> {
        if self.received != self.declared {
            return Err(PayloadLengthMismatch { declared: self.declared, received: self.received });
        }
        let mut tail = Vec::with_capacity(6);
        if self.crc_type != CrcType::None {
            let n = self.crc_type.value_len();
            self.crc.update(&[0x40 | n as u8]);
            self.crc.update(&[0u8; 4][..n]);
            let (value, _) = self.crc_type.value_bytes(self.crc.finalize());
            tail.push(0x40 | n as u8);
            tail.extend_from_slice(&value[..n]);
        }
        tail.push(cbor::BREAK);
        Ok(tail)
    }
}
