//! The framing of STCP and MTCP, sans-IO: a header before each bundle, nothing else.
//!
//! - **STCP** (ION's "simple TCP", `libstcpcla.c`): the bundle's length as a 32-bit big-endian
//!   integer, then the bundle. A length of 0 is a keepalive (ION's sender sends one every 15 s
//!   when idle; its receiver skips them).
//! - **MTCP** (µD3TN's and dtn7-rs's "minimal TCP"): the bundle as one CBOR byte string of
//!   definite length (major type 2: a head of 1, 2, 3, 5 or 9 bytes, then the bytes). An empty
//!   byte string is skipped as a keepalive would be.
//!
//! [`FrameDecoder`] takes bytes as they come and says where each bundle starts, hands its bytes
//! on as they arrive (a bundle is never held whole here), and where it ends. A frame longer than
//! the configured limit is an error: neither protocol can refuse a bundle, so the connection ends.

use std::fmt;

/// Which framing a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Stcp,
    Mtcp,
}

impl Framing {
    /// The protocol's name in logs, configuration and status.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Stcp => "stcp",
            Framing::Mtcp => "mtcp",
        }
    }

    /// The port a peer listens on unless told otherwise: ION's STCP 4456, dtn7-rs's MTCP 16162.
    pub fn default_port(self) -> u16 {
        match self {
            Framing::Stcp => 4456,
            Framing::Mtcp => 16162,
        }
    }

    /// The header that goes before a bundle of `length` bytes (`None` for STCP past 4 GiB - 1,
    /// which its 32-bit length cannot say).
    pub fn header(self, length: u64) -> Option<Vec<u8>> {
        match self {
            Framing::Stcp => u32::try_from(length).ok().map(|l| l.to_be_bytes().to_vec()),
            Framing::Mtcp => Some(cbor_bytes_head(length)),
        }
    }

    /// The largest bundle the framing can carry.
    pub fn max_length(self) -> u64 {
        match self {
            Framing::Stcp => u64::from(u32::MAX),
            Framing::Mtcp => u64::MAX,
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The head of a CBOR byte string of `length` bytes (RFC 8949 §3.1, shortest form).
fn cbor_bytes_head(length: u64) -> Vec<u8> {
    const MAJOR: u8 = 2 << 5;
    match length {
        0..=23 => vec![MAJOR | length as u8],
        24..=0xff => vec![MAJOR | 24, length as u8],
        0x100..=0xffff => {
            let mut head = vec![MAJOR | 25];
            head.extend_from_slice(&(length as u16).to_be_bytes());
            head
        }
        0x1_0000..=0xffff_ffff => {
            let mut head = vec![MAJOR | 26];
            head.extend_from_slice(&(length as u32).to_be_bytes());
            head
        }
        _ => {
            let mut head = vec![MAJOR | 27];
            head.extend_from_slice(&length.to_be_bytes());
            head
        }
    }
}

/// Why a byte stream is not a valid sequence of frames. The connection cannot continue after
/// any of them: where the next frame would start is unknown, or the frame is not to be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error(
        "a {framing} frame announces {length} bytes, more than the {limit} this node takes; the connection is closed ({framing} cannot refuse one bundle)"
    )]
    TooLarge { framing: Framing, length: u64, limit: u64 },
    #[error(
        "an MTCP frame must be a CBOR byte string (major type 2, definite length); it starts with 0x{byte:02x}"
    )]
    NotByteString { byte: u8 },
}

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameEvent<'a> {
    /// A bundle of `length` bytes starts.
    Start { length: u64 },
    /// The next bytes of the current bundle.
    Data(&'a [u8]),
    /// The current bundle is complete.
    End,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Reading a header: the bytes so far.
    Header { bytes: [u8; 9], have: usize },
    /// Inside a bundle: this many bytes still to come.
    Body { remaining: u64 },
    /// A bundle's last byte was handed on: `End` is next.
    Ending,
}

/// Splits a byte stream into bundles, streaming each one's bytes (sans-IO; the caller reads the
/// socket).
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    framing: Framing,
    limit: u64,
    state: State,
}

impl FrameDecoder {
    /// A decoder taking bundles of at most `limit` bytes.
    pub fn new(framing: Framing, limit: u64) -> FrameDecoder {
        FrameDecoder { framing, limit, state: State::Header { bytes: [0; 9], have: 0 } }
    }

    /// Whether the stream is between bundles (a connection may end here without losing one).
    pub fn between_frames(&self) -> bool {
        matches!(self.state, State::Header { have: 0, .. })
    }

    /// Takes what it can of `input`: answers how many bytes it used and what that made, if
    /// anything. Call again with the rest until it uses nothing and says nothing.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<FrameEvent<'a>>), FrameError> {
        match self.state {
            State::Ending => {
                self.state = State::Header { bytes: [0; 9], have: 0 };
                Ok((0, Some(FrameEvent::End)))
            }
            State::Body { remaining } => {
                if input.is_empty() {
                    return Ok((0, None));
                }
                let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len());
                let left = remaining - take as u64;
                self.state = if left == 0 { State::Ending } else { State::Body { remaining: left } };
                Ok((take, Some(FrameEvent::Data(&input[..take]))))
            }
            State::Header { mut bytes, mut have } => {
                let mut used = 0;
                loop {
                    if let Some(length) = self.header_length(&bytes[..have])? {
                        if length == 0 {
                            // A keepalive (STCP), an empty byte string (MTCP): nothing to hand on.
                            have = 0;
                            continue;
                        }
                        if length > self.limit {
                            return Err(FrameError::TooLarge {
                                framing: self.framing,
                                length,
                                limit: self.limit,
                            });
                        }
                        self.state = State::Body { remaining: length };
                        return Ok((used, Some(FrameEvent::Start { length })));
                    }
                    let Some(&byte) = input.get(used) else {
                        self.state = State::Header { bytes, have };
                        return Ok((used, None));
                    };
                    bytes[have] = byte;
                    have += 1;
                    used += 1;
                }
            }
        }
    }

    /// The length a complete header says, `None` while it is incomplete.
    fn header_length(&self, bytes: &[u8]) -> Result<Option<u64>, FrameError> {
        match self.framing {
            Framing::Stcp => {
                Ok(bytes.get(..4).map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))))
            }
            Framing::Mtcp => {
                let Some(&first) = bytes.first() else { return Ok(None) };
                if first >> 5 != 2 {
                    return Err(FrameError::NotByteString { byte: first });
                }
                let extra = match first & 0x1f {
                    info @ 0..=23 => return Ok(Some(u64::from(info))),
                    24 => 1,
                    25 => 2,
                    26 => 4,
                    27 => 8,
                    _ => return Err(FrameError::NotByteString { byte: first }),
                };
                let Some(tail) = bytes.get(1..=extra) else { return Ok(None) };
                Ok(Some(tail.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bundle of `stream`, fed `chunk` bytes at a time.
    fn bundles(
        framing: Framing,
        stream: &[u8],
        chunk: usize,
        limit: u64,
    ) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut decoder = FrameDecoder::new(framing, limit);
        let mut out = Vec::new();
        let mut current: Option<Vec<u8>> = None;
        for piece in stream.chunks(chunk.max(1)) {
            let mut at = 0;
            loop {
                let (used, event) = decoder.decode(&piece[at..])?;
                at += used;
                match event {
                    Some(FrameEvent::Start { length }) => {
                        assert!(current.is_none());
                        current = Some(Vec::with_capacity(length as usize));
                    }
                    Some(FrameEvent::Data(bytes)) => {
                        current.as_mut().expect("inside").extend_from_slice(bytes)
                    }
                    Some(FrameEvent::End) => out.push(current.take().expect("inside")),
                    None => break,
                }
            }
        }
        // A final End waits for the next call.
        if let Ok((_, Some(FrameEvent::End))) = decoder.decode(&[]) {
            out.push(current.take().expect("inside"));
        }
        assert!(decoder.between_frames());
        Ok(out)
    }

    fn framed(framing: Framing, payloads: &[&[u8]]) -> Vec<u8> {
        let mut stream = Vec::new();
        for p in payloads {
            stream.extend(framing.header(p.len() as u64).expect("header"));
            stream.extend_from_slice(p);
        }
        stream
    }

    #[test]
    fn headers_are_what_each_protocol_writes() {
        assert_eq!(Framing::Stcp.header(300), Some(vec![0, 0, 1, 44]));
        assert_eq!(Framing::Stcp.header(1 << 32), None, "STCP cannot say 4 GiB");
        assert_eq!(Framing::Mtcp.header(23), Some(vec![0x57]));
        assert_eq!(Framing::Mtcp.header(24), Some(vec![0x58, 24]));
        assert_eq!(Framing::Mtcp.header(300), Some(vec![0x59, 1, 44]));
        assert_eq!(Framing::Mtcp.header(70_000), Some(vec![0x5a, 0, 1, 0x11, 0x70]));
        assert_eq!(Framing::Mtcp.header(1 << 32), Some(vec![0x5b, 0, 0, 0, 1, 0, 0, 0, 0]));
    }

    #[test]
    fn bundles_come_out_whole_however_the_stream_is_cut() {
        let big = vec![7u8; 70_000];
        let payloads: [&[u8]; 4] = [
            b"one",
            &big,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24],
            b"x",
        ];
        for framing in [Framing::Stcp, Framing::Mtcp] {
            let stream = framed(framing, &payloads);
            for chunk in [1, 2, 3, 5, 64, 4096, stream.len()] {
                let got = bundles(framing, &stream, chunk, 1 << 20).expect("decodes");
                assert_eq!(
                    got,
                    payloads.iter().map(|p| p.to_vec()).collect::<Vec<_>>(),
                    "{framing} in {chunk}s"
                );
            }
        }
    }

    #[test]
    fn keepalives_and_empty_frames_are_skipped() {
        let mut stream = vec![0, 0, 0, 0, 0, 0, 0, 0];
        stream.extend(framed(Framing::Stcp, &[b"after"]));
        assert_eq!(bundles(Framing::Stcp, &stream, 3, 100).expect("ok"), vec![b"after".to_vec()]);
        let mut stream = vec![0x40, 0x40];
        stream.extend(framed(Framing::Mtcp, &[b"after"]));
        assert_eq!(bundles(Framing::Mtcp, &stream, 1, 100).expect("ok"), vec![b"after".to_vec()]);
    }

    #[test]
    fn what_is_not_a_frame_is_refused_with_the_reason() {
        let huge = Framing::Stcp.header(5_000).expect("header");
        assert_eq!(
            bundles(Framing::Stcp, &huge, 4, 4_999),
            Err(FrameError::TooLarge { framing: Framing::Stcp, length: 5_000, limit: 4_999 })
        );
        assert_eq!(
            bundles(Framing::Mtcp, &[0x83, 1, 2, 3], 4, 100),
            Err(FrameError::NotByteString { byte: 0x83 })
        );
        assert_eq!(
            bundles(Framing::Mtcp, &[0x5f, 0x41, 0, 0xff], 4, 100),
            Err(FrameError::NotByteString { byte: 0x5f }),
            "indefinite length"
        );
        let message = FrameError::TooLarge { framing: Framing::Mtcp, length: 9, limit: 8 }.to_string();
        assert!(message.contains("mtcp frame announces 9 bytes, more than the 8"), "{message}");
    }

    #[test]
    fn a_stream_cut_mid_bundle_is_not_between_frames() {
        let stream = framed(Framing::Mtcp, &[b"abcdef"]);
        let mut decoder = FrameDecoder::new(Framing::Mtcp, 100);
        let (used, event) = decoder.decode(&stream[..4]).expect("ok");
        assert_eq!((used, event), (1, Some(FrameEvent::Start { length: 6 })));
        assert!(!decoder.between_frames());
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic, and a bundle is never announced beyond the limit.
        #[test]
        fn any_bytes_decode_without_panic_within_the_limit(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            chunk in 1usize..16,
            stcp in proptest::prelude::any::<bool>(),
        ) {
            let framing = if stcp { Framing::Stcp } else { Framing::Mtcp };
            let mut decoder = FrameDecoder::new(framing, 64);
            for piece in bytes.chunks(chunk) {
                let mut at = 0;
                loop {
                    match decoder.decode(&piece[at..]) {
                        Ok((used, event)) => {
                            at += used;
                            if let Some(FrameEvent::Start { length }) = event {
                                proptest::prop_assert!(length <= 64);
                            }
                            if event.is_none() {
                                break;
                            }
                        }
                        Err(_) => return Ok(()),
                    }
                }
            }
        }

        /// Framed bundles come back as they went, cut anywhere.
        #[test]
        fn framed_bundles_round_trip(
            payloads in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..300), 0..6),
            chunk in 1usize..50,
            stcp in proptest::prelude::any::<bool>(),
        ) {
            let framing = if stcp { Framing::Stcp } else { Framing::Mtcp };
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let stream = framed(framing, &refs);
            proptest::prop_assert_eq!(bundles(framing, &stream, chunk, 1000).expect("decodes"), payloads);
        }
    }
}
