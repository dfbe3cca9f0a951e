//! STCP (ION's simple TCP) and MTCP (µD3TN's and dtn7-rs's minimal TCP): a header before each
//! bundle on a TCP connection, no handshake, no acknowledgement. [`codec`] is the framing,
//! sans-IO; [`driver`] the tokio side.

pub mod codec;
pub mod driver;

pub use codec::{FrameDecoder, FrameError, FrameEvent, Framing};
pub use driver::{Framed, FramedConfig, FramedError, FramedStats};
