//! Bundle and block processing control flags (RFC 9171 §4.2.3, §4.2.4).
//!
//! Both are kept as the raw integer from the wire: unrecognised flags must be ignored, not dropped,
//! so a forwarded bundle keeps them.

/// Bundle processing control flags (RFC 9171 §4.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BundleFlags(pub u64);

impl BundleFlags {
    /// The bundle is a fragment.
    pub const IS_FRAGMENT: u64 = 0x00_0001;
    /// The payload is an administrative record.
    pub const ADMIN_RECORD: u64 = 0x00_0002;
    /// The bundle must not be fragmented.
    pub const MUST_NOT_FRAGMENT: u64 = 0x00_0004;
    /// The destination application is asked to acknowledge the bundle.
    pub const APP_ACK_REQUESTED: u64 = 0x00_0020;
    /// Status reports are to carry times.
    pub const STATUS_TIME_REQUESTED: u64 = 0x00_0040;
    /// A report of the bundle's reception is asked for.
    pub const REPORT_RECEPTION: u64 = 0x00_4000;
    /// A report of its forwarding is asked for.
    pub const REPORT_FORWARDING: u64 = 0x01_0000;
    /// A report of its delivery is asked for.
    pub const REPORT_DELIVERY: u64 = 0x02_0000;
    /// A report of its deletion is asked for.
    pub const REPORT_DELETION: u64 = 0x04_0000;
    /// All four status report request flags.
    pub const REPORT_REQUESTS: u64 =
        Self::REPORT_RECEPTION | Self::REPORT_FORWARDING | Self::REPORT_DELIVERY | Self::REPORT_DELETION;

    /// Whether every bit of `flag` is set.
    pub fn contains(self, flag: u64) -> bool {
        self.0 & flag == flag
    }
    /// Whether the bundle is a fragment.
    pub fn is_fragment(self) -> bool {
        self.contains(Self::IS_FRAGMENT)
    }
    /// Whether the payload is an administrative record.
    pub fn is_admin_record(self) -> bool {
        self.contains(Self::ADMIN_RECORD)
    }
    /// Whether the bundle must not be fragmented.
    pub fn must_not_fragment(self) -> bool {
        self.contains(Self::MUST_NOT_FRAGMENT)
    }
    /// The status report request flags that are set.
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

/// Bundle flags written by people: a number (decimal or `0x` hex) or names separated by commas
/// (those [`BundleFlags::names`] gives, except `fragment`, which only fragmentation sets).
impl std::str::FromStr for BundleFlags {
    type Err = String;

    fn from_str(text: &str) -> Result<BundleFlags, String> {
        let text = text.trim();
        let number = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => text.parse().ok(),
        };
        if let Some(n) = number {
            return Ok(BundleFlags(n));
        }
        text.split(',').filter(|s| !s.trim().is_empty()).try_fold(BundleFlags(0), |acc, name| {
            let bit = match name.trim() {
                "must-not-fragment" => BundleFlags::MUST_NOT_FRAGMENT,
                "admin-record" => BundleFlags::ADMIN_RECORD,
                "app-ack" => BundleFlags::APP_ACK_REQUESTED,
                "status-time" => BundleFlags::STATUS_TIME_REQUESTED,
                "report-reception" => BundleFlags::REPORT_RECEPTION,
                "report-forwarding" => BundleFlags::REPORT_FORWARDING,
                "report-delivery" => BundleFlags::REPORT_DELIVERY,
                "report-deletion" => BundleFlags::REPORT_DELETION,
                other => {
                    return Err(format!(
                        "unknown flag {other:?}: use a number or must-not-fragment, admin-record, app-ack, \
                         status-time, report-reception, report-forwarding, report-delivery, report-deletion"
                    ));
                }
            };
            Ok(BundleFlags(acc.0 | bit))
        })
    }
}

/// Block processing control flags (RFC 9171 §4.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BlockFlags(pub u64);

impl BlockFlags {
    /// The block goes in every fragment.
    pub const REPLICATE_IN_EVERY_FRAGMENT: u64 = 0x01;
    /// A status report is asked for if the block cannot be processed.
    pub const REPORT_IF_UNPROCESSABLE: u64 = 0x02;
    /// The bundle is deleted if the block cannot be processed.
    pub const DELETE_BUNDLE_IF_UNPROCESSABLE: u64 = 0x04;
    /// The block is discarded if it cannot be processed.
    pub const DISCARD_IF_UNPROCESSABLE: u64 = 0x10;

    /// Whether every bit of `flag` is set.
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
