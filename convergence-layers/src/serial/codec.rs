//! The serial line framings, sans-IO: bundles in, bytes out, and a deframer that takes bytes as
//! the line gives them and answers whole frames.
//!
//! - [`Framing::Cobs`] (design §3, no standard exists): each frame is COBS(bundle ‖ CRC-32C of
//!   the bundle, little-endian) followed by a 0x00 delimiter; a 0x00 is sent before the frame
//!   too, so a receiver that joined mid-frame or lost bytes starts clean at the next one. A
//!   frame whose CRC fails is dropped and counted.
//! - [`Framing::Slip`] (RFC 1055), as HDTN's `slip_over_uart` frames bundles: END (0xC0), the
//!   bundle with END and ESC (0xDB) escaped, END. SLIP has no check of its own: the bundle's
//!   CRCs are what catch damage.
//!
//! The deframer holds at most one frame's worth of bytes (the configured limit, encoded): a
//! longer run without a delimiter is dropped whole (counted) and the deframer waits for the
//! next delimiter, so no input grows memory beyond the limit.

/// Which framing a serial link uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// COBS with a CRC-32C, 0x00-delimited (the default).
    Cobs,
    /// RFC 1055 SLIP, for HDTN's `slip_over_uart`.
    Slip,
}

impl Framing {
    pub fn name(self) -> &'static str {
        match self {
            Framing::Cobs => "cobs",
            Framing::Slip => "slip",
        }
    }

    /// The most bytes a frame carrying `bundle_len` bytes of bundle takes on the line.
    pub fn max_encoded_len(self, bundle_len: usize) -> usize {
        match self {
            // Leading and trailing delimiter, COBS's one byte in 254, the CRC.
            Framing::Cobs => 2 + cobs::max_encoding_length(bundle_len + CRC_LEN),
            // Every byte may be escaped.
            Framing::Slip => 2 + 2 * bundle_len,
        }
    }

    /// The bytes to write for one bundle.
    pub fn encode(self, bundle: &[u8]) -> Vec<u8> {
        match self {
            Framing::Cobs => {
                let mut plain = Vec::with_capacity(bundle.len() + CRC_LEN);
                plain.extend_from_slice(bundle);
                plain.extend_from_slice(&crc32c::crc32c(bundle).to_le_bytes());
                let mut out = vec![0u8; self.max_encoded_len(bundle.len())];
                // out[0] stays the leading delimiter.
                let n = cobs::encode(&plain, &mut out[1..]);
                out.truncate(1 + n);
                out.push(DELIMITER);
                out
            }
            Framing::Slip => {
                let mut out = Vec::with_capacity(bundle.len() + bundle.len() / 64 + 2);
                out.push(SLIP_END);
                for &byte in bundle {
                    match byte {
                        SLIP_END => out.extend_from_slice(&[SLIP_ESC, SLIP_ESC_END]),
                        SLIP_ESC => out.extend_from_slice(&[SLIP_ESC, SLIP_ESC_ESC]),
                        other => out.push(other),
                    }
                }
                out.push(SLIP_END);
                out
            }
        }
    }
}

impl std::fmt::Display for Framing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Framing {
    type Err = String;
    fn from_str(text: &str) -> Result<Framing, String> {
        match text {
            "cobs" => Ok(Framing::Cobs),
            "slip" => Ok(Framing::Slip),
            other => Err(format!(
                "framing {other:?}: use \"cobs\" (the default) or \"slip\" (HDTN's slip_over_uart)"
            )),
        }
    }
}

const DELIMITER: u8 = 0x00;
const CRC_LEN: usize = 4;
const SLIP_END: u8 = 0xC0;
const SLIP_ESC: u8 = 0xDB;
const SLIP_ESC_END: u8 = 0xDC;
const SLIP_ESC_ESC: u8 = 0xDD;

/// What the deframer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deframed {
    /// A whole frame's bundle bytes (checked by its CRC in COBS framing).
    Frame(Vec<u8>),
    /// A frame dropped, and why.
    Dropped(DropReason),
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("its CRC-32C does not match (bytes damaged on the line)")]
    Crc,
    #[error("it is not valid {0} (bytes damaged, inserted or lost on the line)")]
    Malformed(Framing),
    #[error("it is longer than the frame limit")]
    TooLong,
}

/// Takes the line's bytes, answers frames. Bounded by the frame limit.
#[derive(Debug)]
pub struct Deframer {
    framing: Framing,
    /// The most encoded bytes held for one frame.
    max_encoded: usize,
    frame: Vec<u8>,
    /// Inside a frame that was too long: its bytes are skipped to the next delimiter.
    skipping: bool,
    /// SLIP: the previous byte was ESC.
    escaped: bool,
    /// SLIP: the escape sequence of the frame being read was invalid.
    slip_malformed: bool,
}

impl Deframer {
    /// A deframer for bundles of at most `max_bundle` bytes.
    pub fn new(framing: Framing, max_bundle: usize) -> Deframer {
        Deframer {
            framing,
            max_encoded: framing.max_encoded_len(max_bundle),
            frame: Vec::new(),
            skipping: false,
            escaped: false,
            slip_malformed: false,
        }
    }

    /// Feeds `input`; answers what it completed, in order. The bytes of a frame still open are
    /// kept for the next call.
    pub fn push(&mut self, input: &[u8]) -> Vec<Deframed> {
        let mut out = Vec::new();
        match self.framing {
            Framing::Cobs => self.push_cobs(input, &mut out),
            Framing::Slip => self.push_slip(input, &mut out),
        }
        out
    }

    fn push_cobs(&mut self, input: &[u8], out: &mut Vec<Deframed>) {
        let mut rest = input;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == DELIMITER) {
                None => {
                    self.take(rest, out);
                    return;
                }
                Some(at) => {
                    self.take(&rest[..at], out);
                    rest = &rest[at + 1..];
                    if std::mem::take(&mut self.skipping) {
                        self.frame.clear();
                        continue;
                    }
                    if self.frame.is_empty() {
                        continue; // back-to-back delimiters: nothing between them
                    }
                    out.push(self.finish_cobs());
                }
            }
        }
    }

    /// Holds `bytes` of the frame being read, or starts skipping it when it grows too long.
    fn take(&mut self, bytes: &[u8], out: &mut Vec<Deframed>) {
        if self.skipping || bytes.is_empty() {
            return;
        }
        if self.frame.len() + bytes.len() > self.max_encoded {
            self.frame = Vec::new();
            self.skipping = true;
            out.push(Deframed::Dropped(DropReason::TooLong));
            return;
        }
        self.frame.extend_from_slice(bytes);
    }

    fn finish_cobs(&mut self) -> Deframed {
        let mut frame = std::mem::take(&mut self.frame);
        let Ok(n) = cobs::decode_in_place(&mut frame) else {
            return Deframed::Dropped(DropReason::Malformed(Framing::Cobs));
        };
        if n < CRC_LEN {
            return Deframed::Dropped(DropReason::Malformed(Framing::Cobs));
        }
        frame.truncate(n);
        let crc = frame.split_off(n - CRC_LEN);
        if crc32c::crc32c(&frame).to_le_bytes()[..] != crc[..] {
            return Deframed::Dropped(DropReason::Crc);
        }
        Deframed::Frame(frame)
    }

    fn push_slip(&mut self, input: &[u8], out: &mut Vec<Deframed>) {
        for &byte in input {
            if byte == SLIP_END {
                let frame = std::mem::take(&mut self.frame);
                let malformed = std::mem::take(&mut self.slip_malformed) || std::mem::take(&mut self.escaped);
                if std::mem::take(&mut self.skipping) || frame.is_empty() {
                    continue;
                }
                out.push(if malformed {
                    Deframed::Dropped(DropReason::Malformed(Framing::Slip))
                } else {
                    Deframed::Frame(frame)
                });
                continue;
            }
            if self.skipping {
                continue;
            }
            let decoded = if std::mem::take(&mut self.escaped) {
                match byte {
                    SLIP_ESC_END => SLIP_END,
                    SLIP_ESC_ESC => SLIP_ESC,
                    other => {
                        // RFC 1055 leaves it in; a byte damaged on the line, so the frame is.
                        self.slip_malformed = true;
                        other
                    }
                }
            } else if byte == SLIP_ESC {
                self.escaped = true;
                continue;
            } else {
                byte
            };
            // The limit counts decoded bytes here (an escape pair is one).
            if self.frame.len() >= self.max_encoded / 2 {
                self.frame = Vec::new();
                self.skipping = true;
                self.escaped = false;
                self.slip_malformed = false;
                out.push(Deframed::Dropped(DropReason::TooLong));
                continue;
            }
            self.frame.push(decoded);
        }
    }

    /// Bytes held for the frame being read.
    pub fn held(&self) -> usize {
        self.frame.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(deframed: Vec<Deframed>) -> Vec<Vec<u8>> {
        deframed
            .into_iter()
            .filter_map(|d| match d {
                Deframed::Frame(f) => Some(f),
                Deframed::Dropped(_) => None,
            })
            .collect()
    }

    #[test]
    fn cobs_frames_have_no_zero_inside_and_end_in_one() {
        let bundle = [0u8, 1, 0, 2, 0xff, 0];
        let encoded = Framing::Cobs.encode(&bundle);
        assert_eq!(encoded[0], 0);
        assert_eq!(*encoded.last().expect("bytes"), 0);
        assert!(!encoded[1..encoded.len() - 1].contains(&0));
        assert!(encoded.len() <= Framing::Cobs.max_encoded_len(bundle.len()));
        let mut deframer = Deframer::new(Framing::Cobs, 100);
        assert_eq!(deframer.push(&encoded), vec![Deframed::Frame(bundle.to_vec())]);
    }

    #[test]
    fn a_damaged_cobs_frame_is_dropped_and_the_next_one_taken() {
        let (one, two) = (vec![7u8; 300], vec![9u8; 40]);
        let mut line = Framing::Cobs.encode(&one);
        line[100] ^= 0x10; // flipped on the line (not into a zero)
        line.extend(Framing::Cobs.encode(&two));
        let mut deframer = Deframer::new(Framing::Cobs, 1000);
        assert_eq!(
            deframer.push(&line),
            vec![Deframed::Dropped(DropReason::Crc), Deframed::Frame(two.clone())]
        );
        // Bytes lost in the middle of a frame: it fails, the next is whole.
        let mut line = Framing::Cobs.encode(&one);
        line.drain(50..60);
        line.extend(Framing::Cobs.encode(&two));
        let got = deframer.push(&line);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(got[0], Deframed::Dropped(_)));
        assert_eq!(got[1], Deframed::Frame(two.clone()));
        // Joining mid-frame: garbage, then a whole frame.
        let mut line = vec![0x55; 17];
        line.extend(Framing::Cobs.encode(&two));
        let got = deframer.push(&line);
        assert_eq!(frames(got), vec![two]);
    }

    #[test]
    fn a_frame_longer_than_the_limit_is_dropped_without_holding_it() {
        let mut deframer = Deframer::new(Framing::Cobs, 100);
        let big = Framing::Cobs.encode(&[1u8; 500]);
        let got = deframer.push(&big[..300]);
        assert_eq!(got, vec![Deframed::Dropped(DropReason::TooLong)]);
        assert_eq!(deframer.held(), 0);
        let mut rest = big[300..].to_vec();
        rest.extend(Framing::Cobs.encode(&[2u8; 100]));
        assert_eq!(deframer.push(&rest), vec![Deframed::Frame(vec![2u8; 100])]);
    }

    #[test]
    fn slip_follows_rfc_1055() {
        let bundle = [1u8, 0xC0, 2, 0xDB, 3];
        let encoded = Framing::Slip.encode(&bundle);
        assert_eq!(encoded, [0xC0, 1, 0xDB, 0xDC, 2, 0xDB, 0xDD, 3, 0xC0]);
        let mut deframer = Deframer::new(Framing::Slip, 100);
        // Split anywhere, with a stray END between frames.
        let mut line = encoded.clone();
        line.push(0xC0);
        line.extend(Framing::Slip.encode(b"next"));
        let mut got = Vec::new();
        for byte in &line {
            got.extend(deframer.push(std::slice::from_ref(byte)));
        }
        assert_eq!(got, vec![Deframed::Frame(bundle.to_vec()), Deframed::Frame(b"next".to_vec())]);
        // An escape followed by anything else is damage.
        assert_eq!(
            deframer.push(&[0xC0, 1, 0xDB, 0x05, 0xC0]),
            vec![Deframed::Dropped(DropReason::Malformed(Framing::Slip))]
        );
        let mut small = Deframer::new(Framing::Slip, 3);
        assert_eq!(
            small.push(&Framing::Slip.encode(&[1, 2, 3, 4, 5, 6, 7])),
            vec![Deframed::Dropped(DropReason::TooLong)]
        );
        assert_eq!(small.push(&Framing::Slip.encode(&[1, 2])), vec![Deframed::Frame(vec![1, 2])]);
    }

    #[test]
    fn framings_parse_from_their_names() {
        assert_eq!("cobs".parse::<Framing>(), Ok(Framing::Cobs));
        assert_eq!("slip".parse::<Framing>(), Ok(Framing::Slip));
        assert!("kiss".parse::<Framing>().expect_err("unknown").contains("use \"cobs\""));
    }

    proptest! {
        #[test]
        fn frames_round_trip_cut_anywhere(
            bundles in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..6),
            cut in 1usize..64,
            slip in any::<bool>(),
        ) {
            let framing = if slip { Framing::Slip } else { Framing::Cobs };
            let line: Vec<u8> = bundles.iter().flat_map(|b| framing.encode(b)).collect();
            let mut deframer = Deframer::new(framing, 300);
            let mut got = Vec::new();
            for piece in line.chunks(cut) {
                got.extend(deframer.push(piece));
            }
            prop_assert_eq!(got, bundles.into_iter().map(Deframed::Frame).collect::<Vec<_>>());
        }

        #[test]
        fn any_bytes_never_panic_and_never_exceed_the_limit(
            line in proptest::collection::vec(any::<u8>(), 0..2048),
            cut in 1usize..128,
            slip in any::<bool>(),
        ) {
            let framing = if slip { Framing::Slip } else { Framing::Cobs };
            let mut deframer = Deframer::new(framing, 64);
            for piece in line.chunks(cut) {
                for d in deframer.push(piece) {
                    if let Deframed::Frame(f) = d {
                        prop_assert!(f.len() <= framing.max_encoded_len(64));
                    }
                }
                prop_assert!(deframer.held() <= framing.max_encoded_len(64));
            }
        }
    }
}
