//! The BPv7 bundle (RFC 9171 §4): model, parser, validator, encoder and builder.
//!
//! Parsing works over [`bytes::Bytes`] and hands out views: block data and the payload are never
//! copied. [`Bundle::parse`] checks every rule of RFC 9171 §4 and each violation is its own
//! [`BundleError`] variant. [`BundleHeader::parse`] does the same from a prefix of a bundle, up to
//! the payload, so large bundles can be streamed. [`BundleBuilder`] makes new bundles.

mod block;
mod builder;
pub mod cbor;
mod crc;
mod eid;
mod error;
mod flags;
mod options;
mod parse;
mod primary;
mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use block::{
    CanonicalBlock, HopCount, block_type, block_type_name, bundle_age_data, hop_count_data,
    previous_node_data,
};
pub use builder::{BundleBuilder, ExtensionBlock, PayloadEncoder, PayloadLengthMismatch, streamed_head};
pub use cbor::CborProblem;
pub use crc::{CrcState, CrcType};
pub use eid::{Eid, EidError};
pub use error::{BlockRef, BundleError};
pub use flags::{BlockFlags, BundleFlags};
pub use options::ParseOptions;
pub use primary::{BP_VERSION, CreationTimestamp, FragmentInfo, PrimaryBlock};
pub use stream::PayloadCheck;

use parse::{Mode, scan};

/// The identity of a bundle (RFC 9171 §5.9 uses it for duplicates and reassembly): source,
/// creation timestamp, and for fragments the offset and payload length — and here also the total
/// ADU length the fragment claims, so two fragments that agree on the rest but contradict each
/// other on the ADU's length (one of them forged, or a broken sender) are two bundles, kept
/// apart, rather than the second taken for a duplicate of the first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId {
    /// The source node's endpoint.
    pub source: Eid,
    /// When and in which order the source made it.
    pub creation: CreationTimestamp,
    /// Which part of its ADU, for a fragment.
    pub fragment: Option<FragmentId>,
}

/// Where a fragment's payload sits in its ADU (RFC 9171 §4.3.1, §5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragmentId {
    /// Where its payload starts in the ADU.
    pub offset: u64,
    /// The fragment's payload length.
    pub length: u64,
    /// The total ADU length it claims.
    pub adu_length: u64,
}

impl FragmentId {
    /// One past the fragment's last byte in the ADU.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

impl std::fmt::Display for BundleId {
    /// The RFC's identity (the ADU length is not part of it): `source/time/sequence`, and
    /// `/offset+length` for a fragment.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.source, self.creation.time, self.creation.sequence)?;
        if let Some(fragment) = self.fragment {
            write!(f, "/{}+{}", fragment.offset, fragment.length)?;
        }
        Ok(())
    }
}

/// A complete, valid bundle. Blocks are kept in wire order; the payload block is last.
///
/// A parsed bundle keeps its primary block's bytes as received and encodes them unchanged: a
/// node never modifies the primary block, and BIBs may sign it exactly as it was sent (for
/// example with a legacy two-element ipn EID carrying an allocator). Canonical blocks are
/// re-encoded from their fields; their data is always kept byte for byte.
#[derive(Debug, Clone)]
pub struct Bundle {
    primary: PrimaryBlock,
    /// The primary block as received, when parsed.
    primary_encoded: Option<Bytes>,
    /// Extension blocks in order, then the payload block.
    blocks: Vec<CanonicalBlock>,
    max_eid_length: usize,
}

impl Bundle {
    /// Parses and validates a whole bundle (RFC 9171 §4). Block data and payload are views
    /// into `input`.
    pub fn parse(input: &Bytes, options: &ParseOptions) -> Result<Bundle, BundleError> {
        let scanned = scan(input, options, Mode::Whole)?;
        let mut blocks = Vec::with_capacity(scanned.extensions.len() + 1);
        blocks.extend(scanned.extensions.iter().map(|raw| raw.to_block(input)));
        blocks.push(scanned.payload.to_block(input));
        Ok(Bundle {
            primary: scanned.primary,
            primary_encoded: Some(input.slice(scanned.primary_range)),
            blocks,
            max_eid_length: options.max_eid_length,
        })
    }

    /// Builds a bundle from parts already validated by [`BundleBuilder`].
    pub(crate) fn from_parts(primary: PrimaryBlock, blocks: Vec<CanonicalBlock>) -> Bundle {
        Bundle {
            primary,
            primary_encoded: None,
            blocks,
            max_eid_length: ParseOptions::default().max_eid_length,
        }
    }

    /// The primary block.
    pub fn primary(&self) -> &PrimaryBlock {
        &self.primary
    }

    /// Every canonical block in wire order, the payload block last.
    pub fn blocks(&self) -> &[CanonicalBlock] {
        &self.blocks
    }

    /// The extension blocks (every canonical block but the payload), in wire order.
    pub fn extension_blocks(&self) -> &[CanonicalBlock] {
        &self.blocks[..self.blocks.len() - 1]
    }

    /// The payload block.
    pub fn payload_block(&self) -> &CanonicalBlock {
        &self.blocks[self.blocks.len() - 1]
    }

    /// The payload (the ADU or a fragment of it), a view into the parsed input.
    pub fn payload(&self) -> &Bytes {
        &self.payload_block().data
    }

    /// The canonical block with this block number.
    pub fn block(&self, number: u64) -> Option<&CanonicalBlock> {
        self.blocks.iter().find(|b| b.number == number)
    }

    fn block_of_type(&self, code: u64) -> Option<&CanonicalBlock> {
        self.blocks.iter().find(|b| b.block_type == code)
    }

    /// The Previous Node block's node ID, if there is one (RFC 9171 §4.4.1).
    pub fn previous_node(&self) -> Option<Eid> {
        self.block_of_type(block_type::PREVIOUS_NODE)?.previous_node(self.max_eid_length).ok()
    }

    /// The Bundle Age block's age in milliseconds, if there is one (RFC 9171 §4.4.2).
    pub fn bundle_age(&self) -> Option<u64> {
        self.block_of_type(block_type::BUNDLE_AGE)?.bundle_age().ok()
    }

    /// The Hop Count block, if there is one (RFC 9171 §4.4.3).
    pub fn hop_count(&self) -> Option<HopCount> {
        self.block_of_type(block_type::HOP_COUNT)?.hop_count().ok()
    }

    /// True when the primary block carries no CRC and no BIB targets it: accepted only under
    /// [`ParseOptions::accept_primary_without_crc`].
    pub fn primary_crc_missing(&self) -> bool {
        self.primary.crc_type == CrcType::None && !self.blocks.iter().any(|b| b.bib_targets(0))
    }

    /// True when the creation time is 0 and there is no Bundle Age block: accepted only under
    /// [`ParseOptions::accept_missing_bundle_age`].
    pub fn bundle_age_missing(&self) -> bool {
        self.primary.creation.time == 0 && self.bundle_age().is_none()
    }

    /// The bundle's ID (RFC 9171 §4.2.1 with the fragment's offset and length).
    pub fn id(&self) -> BundleId {
        BundleId {
            source: self.primary.source.clone(),
            creation: self.primary.creation,
            fragment: self.primary.fragment.map(|f| FragmentId {
                offset: f.offset,
                length: self.payload().len() as u64,
                adu_length: f.total_adu_length,
            }),
        }
    }

    /// Whether an extension block is numbered 0 or as an earlier block is (possible only when
    /// parsed with [`ParseOptions::accept_duplicate_block_numbers`]).
    pub fn block_numbers_clash(&self) -> bool {
        let extensions = self.extension_blocks();
        extensions
            .iter()
            .enumerate()
            .any(|(i, b)| b.number == 0 || extensions[..i].iter().any(|earlier| earlier.number == b.number))
    }

    /// Gives every extension block numbered 0, or numbered as an earlier block is, the lowest
    /// number above 1 that no block has (RFC 9171 §4.1: each block's number unique, 0 the
    /// primary block's, 1 the payload's); the others keep theirs. Answers how many changed. The
    /// blocks' CRCs are computed afresh when the bundle is encoded.
    pub fn renumber_blocks(&mut self) -> usize {
        let last = self.blocks.len() - 1;
        let mut taken: std::collections::BTreeSet<u64> = std::collections::BTreeSet::from([0, 1]);
        let mut clashing = Vec::new();
        for (i, block) in self.blocks[..last].iter().enumerate() {
            if !taken.insert(block.number) {
                clashing.push(i);
            }
        }
        let mut next = 2u64;
        for &i in &clashing {
            while taken.contains(&next) {
                next += 1;
            }
            taken.insert(next);
            self.blocks[i].number = next;
        }
        clashing.len()
    }

    /// Sets (or adds) the Previous Node block (RFC 9171 §4.4.1), as a forwarding node does.
    pub fn set_previous_node(&mut self, node: &Eid) {
        let (at, crc) = (self.blocks.len() - 1, self.primary.crc_type);
        set_extension(&mut self.blocks, at, crc, block_type::PREVIOUS_NODE, previous_node_data(node));
    }

    /// Sets (or adds) the Bundle Age block (RFC 9171 §4.4.2).
    pub fn set_bundle_age(&mut self, age_ms: u64) {
        let (at, crc) = (self.blocks.len() - 1, self.primary.crc_type);
        set_extension(&mut self.blocks, at, crc, block_type::BUNDLE_AGE, bundle_age_data(age_ms));
    }

    /// Sets the Hop Count block's count, if there is one (RFC 9171 §4.4.3).
    pub fn set_hop_count(&mut self, count: u64) {
        if let Some(hop) = self.hop_count() {
            let (at, crc) = (self.blocks.len() - 1, self.primary.crc_type);
            let data = hop_count_data(HopCount { count, ..hop });
            set_extension(&mut self.blocks, at, crc, block_type::HOP_COUNT, data);
        }
    }

    /// Encodes the bundle in canonical CBOR with fresh CRCs.
    pub fn encode(&self) -> Vec<u8> {
        let payload = self.payload();
        let mut out = Vec::with_capacity(self.encoded_len_hint() + payload.len());
        let (head_end, trailer) = self.encode_head_into(&mut out);
        debug_assert_eq!(head_end, out.len());
        out.extend_from_slice(payload);
        out.extend_from_slice(&trailer.bytes[..trailer.len]);
        out
    }

    /// Encodes everything but the payload content: the bytes before it and the bytes after it
    /// (payload CRC and break). `head ‖ payload ‖ tail` is the encoded bundle; a sender can write
    /// the three with one vectored write and never copy the payload.
    pub fn encode_parts(&self) -> (Vec<u8>, Bytes, Vec<u8>) {
        let mut head = Vec::with_capacity(self.encoded_len_hint());
        let (_, trailer) = self.encode_head_into(&mut head);
        (head, self.payload().clone(), trailer.bytes[..trailer.len].to_vec())
    }

    /// The length of [`Bundle::encode`]'s output, without copying the payload.
    pub fn encoded_len(&self) -> usize {
        let mut head = Vec::with_capacity(self.encoded_len_hint());
        let (_, trailer) = self.encode_head_into(&mut head);
        head.len() + self.payload().len() + trailer.len
    }

    fn encoded_len_hint(&self) -> usize {
        64 + self.extension_blocks().iter().map(|b| b.data.len() + 16).sum::<usize>()
    }

    /// Writes the bundle up to the payload content; returns where the head ends and the trailer.
    fn encode_head_into(&self, out: &mut Vec<u8>) -> (usize, Trailer) {
        out.push(cbor::INDEFINITE_ARRAY);
        match &self.primary_encoded {
            Some(encoded) => out.extend_from_slice(encoded),
            None => self.primary.encode(out),
        }
        for block in self.extension_blocks() {
            block.encode(out);
        }
        let payload_block = self.payload_block();
        let block_start = out.len();
        payload_block.encode_head(out);
        let mut trailer = Trailer { bytes: [0; 6], len: 0 };
        let crc_type = payload_block.crc_type;
        if crc_type != CrcType::None {
            let n = crc_type.value_len();
            let mut state = CrcState::new(crc_type);
            state.update(&out[block_start..]);
            state.update(&payload_block.data);
            state.update(&[0x40 | n as u8]);
            state.update(&[0u8; 4][..n]);
            let (value, _) = crc_type.value_bytes(state.finalize());
            trailer.bytes[0] = 0x40 | n as u8;
            trailer.bytes[1..1 + n].copy_from_slice(&value[..n]);
            trailer.len = 1 + n;
        }
        trailer.bytes[trailer.len] = cbor::BREAK;
        trailer.len += 1;
        (out.len(), trailer)
    }
}

/// Sets the data of the first block of type `code` among `blocks`, or inserts a new block at
/// `insert_at` numbered one above every block number in use (the payload's, 1, included).
fn set_extension(
    blocks: &mut Vec<CanonicalBlock>,
    insert_at: usize,
    crc_type: CrcType,
    code: u64,
    data: Bytes,
) {
    if let Some(block) = blocks.iter_mut().find(|b| b.block_type == code) {
        block.data = data;
        return;
    }
    let number = blocks.iter().map(|b| b.number).max().unwrap_or(1).max(1) + 1;
    blocks
        .insert(insert_at, CanonicalBlock { block_type: code, number, flags: BlockFlags(0), crc_type, data });
}

/// Two bundles are equal when their blocks are; how the primary block was encoded on the wire
/// does not matter.
impl PartialEq for Bundle {
    fn eq(&self, other: &Self) -> bool {
        self.primary == other.primary && self.blocks == other.blocks
    }
}

impl Eq for Bundle {}

#[derive(Debug)]
struct Trailer {
    bytes: [u8; 6],
    len: usize,
}

/// Where the payload lies in a bundle whose header was parsed from a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadLocation {
    /// The payload block's processing control flags.
    pub block_flags: BlockFlags,
    /// The CRC the payload block carries.
    pub crc_type: CrcType,
    /// Offset of the payload block's first byte in the bundle.
    pub block_offset: usize,
    /// Offset of the head of the payload's byte string in the bundle.
    pub data_head_offset: usize,
    /// Offset of the payload's first content byte in the bundle.
    pub data_offset: usize,
    /// The payload's length in bytes.
    pub data_length: u64,
    /// The payload block is an indefinite-length array, so a break follows its CRC field.
    pub block_indefinite: bool,
    /// Length of the whole bundle: payload, its CRC field and the final break included.
    pub bundle_length: u64,
}

/// The blocks before the payload, parsed from a prefix of a bundle, and where the payload is.
///
/// Every rule that does not need the payload content is checked. The payload block's CRC, the
/// final break and the absence of trailing bytes can only be checked by whoever streams the rest
/// ([`CrcState`] computes the CRC incrementally from the payload block's first byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleHeader {
    /// The primary block.
    pub primary: PrimaryBlock,
    /// Where the primary block's bytes are in the bundle (kept as received when forwarding).
    pub primary_range: std::ops::Range<usize>,
    /// The blocks between the primary block and the payload block, in wire order.
    pub extension_blocks: Vec<CanonicalBlock>,
    /// Where the payload lies.
    pub payload: PayloadLocation,
}

impl BundleHeader {
    /// True when the primary block carries no CRC and no BIB targets it (accepted only under
    /// [`ParseOptions::accept_primary_without_crc`]).
    pub fn primary_crc_missing(&self) -> bool {
        self.primary.crc_type == CrcType::None && !self.extension_blocks.iter().any(|b| b.bib_targets(0))
    }

    /// True when the creation time is 0 and there is no Bundle Age block (accepted only under
    /// [`ParseOptions::accept_missing_bundle_age`]).
    pub fn bundle_age_missing(&self) -> bool {
        self.primary.creation.time == 0
            && !self.extension_blocks.iter().any(|b| b.block_type == block_type::BUNDLE_AGE)
    }

    /// The bundle's ID (RFC 9171 §4.2.1 with the fragment's offset and length).
    pub fn id(&self) -> BundleId {
        BundleId {
            source: self.primary.source.clone(),
            creation: self.primary.creation,
            fragment: self.primary.fragment.map(|f| FragmentId {
                offset: f.offset,
                length: self.payload.data_length,
                adu_length: f.total_adu_length,
            }),
        }
    }

    /// The Previous Node block's node ID, if there is one (RFC 9171 §4.4.1).
    pub fn previous_node(&self, max_eid_length: usize) -> Option<Eid> {
        let block = self.extension_blocks.iter().find(|b| b.block_type == block_type::PREVIOUS_NODE)?;
        block.previous_node(max_eid_length).ok()
    }

    /// The Bundle Age block's age in milliseconds, if there is one (RFC 9171 §4.4.2).
    pub fn bundle_age(&self) -> Option<u64> {
        self.extension_blocks.iter().find(|b| b.block_type == block_type::BUNDLE_AGE)?.bundle_age().ok()
    }

    /// The Hop Count block, if there is one (RFC 9171 §4.4.3).
    pub fn hop_count(&self) -> Option<HopCount> {
        self.extension_blocks.iter().find(|b| b.block_type == block_type::HOP_COUNT)?.hop_count().ok()
    }

    /// Sets (or adds) the Previous Node block (RFC 9171 §4.4.1).
    pub fn set_previous_node(&mut self, node: &Eid) {
        let (at, crc) = (self.extension_blocks.len(), self.primary.crc_type);
        let data = previous_node_data(node);
        set_extension(&mut self.extension_blocks, at, crc, block_type::PREVIOUS_NODE, data);
    }

    /// Sets (or adds) the Bundle Age block (RFC 9171 §4.4.2).
    pub fn set_bundle_age(&mut self, age_ms: u64) {
        let (at, crc) = (self.extension_blocks.len(), self.primary.crc_type);
        let data = bundle_age_data(age_ms);
        set_extension(&mut self.extension_blocks, at, crc, block_type::BUNDLE_AGE, data);
    }

    /// Sets the Hop Count block's count, if there is one (RFC 9171 §4.4.3).
    pub fn set_hop_count(&mut self, count: u64) {
        if let Some(hop) = self.hop_count() {
            let (at, crc) = (self.extension_blocks.len(), self.primary.crc_type);
            let data = hop_count_data(HopCount { count, ..hop });
            set_extension(&mut self.extension_blocks, at, crc, block_type::HOP_COUNT, data);
        }
    }

    /// The bundle's bytes up to its payload content with this header's extension blocks:
    /// the primary block and the payload block's head are copied from `original` (the bundle
    /// this header was parsed from, at least up to the payload content), so the primary
    /// block's and the payload block's CRCs stay valid; the extension blocks are encoded from
    /// their fields with fresh CRCs. Followed by the original bytes from
    /// [`PayloadLocation::data_offset`] to the end, this is the whole, valid bundle — how a
    /// node forwards a bundle it streams from its store (RFC 9171 §5.4).
    pub fn encode_head(&self, original: &[u8]) -> Vec<u8> {
        let payload_head = &original[self.payload.block_offset..self.payload.data_offset];
        let mut out = Vec::with_capacity(
            self.payload.data_offset + self.extension_blocks.iter().map(|b| b.data.len() + 16).sum::<usize>(),
        );
        out.push(cbor::INDEFINITE_ARRAY);
        out.extend_from_slice(&original[self.primary_range.clone()]);
        for block in &self.extension_blocks {
            block.encode(&mut out);
        }
        out.extend_from_slice(payload_head);
        out
    }

    /// Parses the header from a prefix. `Ok(None)` means the prefix ends before the payload
    /// block's data begins: call again with more bytes. Once the prefix reaches
    /// [`ParseOptions::max_header_size`] without a payload, the answer is
    /// [`BundleError::HeaderTooLarge`].
    pub fn parse(prefix: &Bytes, options: &ParseOptions) -> Result<Option<BundleHeader>, BundleError> {
        match scan(prefix, options, Mode::HeaderOnly) {
            Ok(scanned) => {
                let payload = &scanned.payload;
                let data_length = (payload.data.end - payload.data.start) as u64;
                Ok(Some(BundleHeader {
                    extension_blocks: scanned.extensions.iter().map(|raw| raw.to_block(prefix)).collect(),
                    payload: PayloadLocation {
                        block_flags: payload.flags,
                        crc_type: payload.crc_type,
                        block_offset: payload.start,
                        data_head_offset: payload.data_head,
                        data_offset: payload.data.start,
                        data_length,
                        block_indefinite: payload.indefinite,
                        bundle_length: payload.bundle_length(),
                    },
                    primary: scanned.primary,
                    primary_range: scanned.primary_range,
                }))
            }
            Err(e) if e.is_truncation() => {
                if prefix.len() >= options.max_header_size {
                    Err(BundleError::HeaderTooLarge { limit: options.max_header_size })
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(e),
        }
    }
}
