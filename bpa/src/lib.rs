//! The bundle protocol agent: BPv7 bundles (RFC 9171), administrative records, the store, the
//! agent and the local API.
//!
//! Module map: [`bundle`] is the codec; [`admin`] the administrative records of RFC 9171 §6
//! and of BIBE custody transfer; [`store`] the durable bundle store; [`agent`] the bundle
//! pipeline; [`cla`] the convergence-layer interface; `api` (feature `api`) the local
//! application API; [`time`] the one clock.
//!
//! A bundle made, encoded and read back:
//!
//! ```
//! use bpa::bundle::{BundleBuilder, CreationTimestamp, ParseOptions};
//! use bpa::{Bundle, Eid};
//!
//! let created = CreationTimestamp { time: 800_000_000_000, sequence: 0 };
//! let bundle = BundleBuilder::new(Eid::ipn(1, 1), Eid::ipn(2, 1), created, 60_000)
//!     .payload(&b"hello"[..])
//!     .build()?;
//! let encoded = bytes::Bytes::from(bundle.encode());
//! let parsed = Bundle::parse(&encoded, &ParseOptions::default())?;
//! assert_eq!(parsed.payload().as_ref(), b"hello");
//! assert_eq!(parsed.primary().destination, Eid::ipn(2, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod admin;
pub mod agent;
#[cfg(feature = "api")]
pub mod api;
pub mod bundle;
pub mod cla;
pub mod log;
pub mod store;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;

// The names most users need, at the crate's root.
pub use agent::{Agent, AgentConfig, AgentError, Delivery, Reception, Route};
pub use bundle::{Bundle, BundleFlags, Eid};
pub use cla::{BundleSink, ClaError, ConvergenceLayer, IncomingBundle, OutgoingBundle, Refusal, SinkError};
#[cfg(feature = "sqlite")]
pub use store::{SqliteStore, StoreConfig};
pub use store::{Store, StoreError};
pub use time::{Clock, ManualClock, RuntimeClock, SystemClock};
