//! The filesystem spool (design §3, after NNCP's `nncp-xfer`): bundles carried on a removable
//! medium between nodes that never meet. [`layout`] names directories and files; [`driver`]
//! watches the directory, exports and imports.

pub mod driver;
pub mod layout;
pub mod medium;

pub use driver::{ExportError, Spool, SpoolConfig, SpoolStats};
