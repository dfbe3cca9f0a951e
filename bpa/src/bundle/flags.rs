//! Bundle and block processing control flags (RFC 9171 §4.2.3, §4.2.4).
//!
//! Both are kept as the raw integer from the wire: unrecognised flags must be ignored, not dropped,
//! so a forwarded bundle keeps them.

/// Bundle processing control flags (RFC 9171 §4.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BundleFlags(pub u64);

impl BundleFlags {
    pub const IS_FRAGMENT: u64 = 0x00_0001;
    pub const ADMIN_RECORD: u64 = 0x00_0002;
    pub const MUST_NOT_FRAGMENT: u64 = 0x00_0004;
    pub const APP_ACK_REQUESTED: u64 = 0x00_0020;
    pub const STATUS_TIME_REQUESTED: u64 = 0x00_0040;
    pub const REPORT_RECEPTION: u64 = 0x00_4000;
    pub const REPORT_FORWARDING: u64 = 0x01_0000;
    pub const REPORT_DELIVERY: u64 = 0x02_0000;
    pub const REPORT_DELETION: u64 = 0x04_0000;
    /// All four status report request flags.
    pub const REPORT_REQUESTS: u64 =
        Self::REPORT_RECEPTION | Self::REPORT_FORWARDING | Self::REPORT_DELIVERY | Self::REPORT_DELETION;

    pub fn contains(self, flag: u64) -> bool {
        self.0 & flag == flag
    }
    pub fn is_fragment(self) -> bool {
        self.contains(Self::IS_FRAGMENT)
    }
    pub fn is_admin_record(self) -> bool {
        self.contains(Self::ADMIN_RECORD)
    }
    pub fn must_not_fragment(self) -> bool {
        self.contains(Self::MUST_NOT_FRAGMENT)
    }
    pub fn report_requests(self) -> u64 {
        self.0 & Self::REPORT_REQUESTS
    }

    /// Names of the flags that are set, for people.
    pub fn names(self) -> Vec<&'static str> {
        const NAMES: [(u64, &str); 9] = [
            (BundleFlags::IS_FRAGMENT, "fragment"),
            (BundleFlags::ADMIN_RECORD, "admin-record"),
            (BundleFlags::MUST_NOT_FRAGMENT, "must-not-fragment"),
            (BundleFlags::APP_ACK_REQUESTED, "app-ack"),
            (BundleFlags::STATUS_TIME_REQUESTED, "status-time"),
            (BundleFlags::REPORT_RECEPTION, "report-reception"),
            (BundleFlags::REPORT_FORWARDING, "report-forwarding"),
            (BundleFlags::REPORT_DELIVERY, "report-delivery"),
            (BundleFlags::REPORT_DELETION, "report-deletion"),
        ];
        NAMES.iter().filter(|(bit, _)| self.contains(*bit)).map(|(_, name)| *name).collect()
    }
}

/// Block processing control flags (RFC 9171 §4.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BlockFlags(pub u64);

impl BlockFlags {
    pub const REPLICATE_IN_EVERY_FRAGMENT: u64 = 0x01;
    pub const REPORT_IF_UNPROCESSABLE: u64 = 0x02;
    pub const DELETE_BUNDLE_IF_UNPROCESSABLE: u64 = 0x04;
    pub const DISCARD_IF_UNPROCESSABLE: u64 = 0x10;

    pub fn contains(self, flag: u64) -> bool {
        self.0 & flag == flag
    }

    /// Names of the flags that are set, for people.
    pub fn names(self) -> Vec<&'static str> {
        const NAMES: [(u64, &str); 4] = [
            (BlockFlags::REPLICATE_IN_EVERY_FRAGMENT, "replicate"),
            (BlockFlags::REPORT_IF_UNPROCESSABLE, "report-if-unprocessable"),
            (BlockFlags::DELETE_BUNDLE_IF_UNPROCESSABLE, "delete-bundle-if-unprocessable"),
            (BlockFlags::DISCARD_IF_UNPROCESSABLE, "discard-if-unprocessable"),
        ];
        NAMES.iter().filter(|(bit, _)| self.contains(*bit)).map(|(_, name)| *name).collect()
    }
}
