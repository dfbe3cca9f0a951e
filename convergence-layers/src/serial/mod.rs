//! Serial lines (design §3): bundles framed for a byte stream with no framing of its own — a
//! serial cable, a radio modem behind a serial port. [`codec`] is the sans-IO framing.

pub mod codec;

pub use codec::{Deframed, Deframer, DropReason, Framing};
