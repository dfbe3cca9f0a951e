//! The STCP and MTCP frame decoder (`convergence_layers::framed::FrameDecoder`) on arbitrary
//! bytes, cut where the input says: no panic, no bundle announced beyond the limit, and the
//! bytes handed on for a bundle never more than it announced.
#![no_main]

use convergence_layers::framed::{FrameDecoder, FrameEvent, Framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else { return };
    let framing = if control & 1 == 0 { Framing::Stcp } else { Framing::Mtcp };
    let chunk = usize::from(control >> 1).max(1);
    let mut decoder = FrameDecoder::new(framing, 4096);
    let mut expected: Option<u64> = None;
    let mut seen = 0u64;
    for piece in stream.chunks(chunk) {
        let mut at = 0;
        loop {
            let Ok((used, event)) = decoder.decode(&piece[at..]) else { return };
            at += used;
            match event {
                Some(FrameEvent::Start { length }) => {
                    assert!(length <= 4096 && length > 0 && expected.is_none());
                    expected = Some(length);
                    seen = 0;
                }
                Some(FrameEvent::Data(bytes)) => {
                    seen += bytes.len() as u64;
                    assert!(seen <= expected.expect("inside a frame"));
                }
                Some(FrameEvent::End) => {
                    assert_eq!(Some(seen), expected.take());
                }
                None => break,
            }
        }
    }
});
