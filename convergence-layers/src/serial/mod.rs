//! Serial lines (design §3): bundles framed for a byte stream with no framing of its own — a
//! serial cable, a radio modem behind a serial port. [`codec`] is the sans-IO framing;
//! [`driver`] opens the device and carries bundles both ways.

pub mod codec;
pub mod driver;

pub use codec::{Deframed, Deframer, DropReason, Framing};
pub use driver::{FlowControl, Serial, SerialConfig, SerialStats};
