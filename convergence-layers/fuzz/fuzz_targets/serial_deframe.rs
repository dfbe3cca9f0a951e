//! The serial deframers (`convergence_layers::serial::Deframer`, COBS + CRC-32C and SLIP) on
//! arbitrary line bytes, cut where the input says: no panic, no frame beyond the limit, never
//! more held than one frame's worth; and frames encoded then fed back come out whole.
#![no_main]

use convergence_layers::serial::{Deframed, Deframer, Framing};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Some((&control, line)) = data.split_first() else { return };
    let framing = if control & 1 == 0 { Framing::Cobs } else { Framing::Slip };
    let cut = usize::from(control >> 1).max(1);
    let mut deframer = Deframer::new(framing, LIMIT);
    for piece in line.chunks(cut) {
        for deframed in deframer.push(piece) {
            if let Deframed::Frame(frame) = deframed {
                assert!(frame.len() <= framing.max_encoded_len(LIMIT));
            }
        }
        assert!(deframer.held() <= framing.max_encoded_len(LIMIT));
    }
    // Whatever state the garbage left, a whole frame after a delimiter is read intact.
    let bundle = &line[..line.len().min(LIMIT)];
    if !bundle.is_empty() {
        let mut encoded = framing.encode(bundle);
        if framing == Framing::Slip {
            encoded.insert(0, 0xC0);
        }
        let got = deframer.push(&encoded);
        assert_eq!(got.last(), Some(&Deframed::Frame(bundle.to_vec())), "{got:?}");
    }
});
