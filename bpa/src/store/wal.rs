//! Finding acknowledged changes that SQLite will not replay (design §3.9: nothing lost
//! silently).
//!
//! SQLite replays its write-ahead log at open up to the first frame whose checksum fails and
//! silently ignores the rest. After a crash the end of the log may legitimately be a torn,
//! unacknowledged transaction; but a damaged frame followed by *complete committed
//! transactions of the same log generation* means changes that were fsync'd and acknowledged
//! are gone. This module reads the log before SQLite does and says which case it is.
//!
//! Format (sqlite.org/fileformat.html, "WAL file format"): a 32-byte header (magic whose low bit
//! gives the checksum byte order, version, page size, checkpoint sequence, two salts, a
//! checksum of the first 24 bytes), then frames of a 24-byte header (page number, database size
//! after commit — non-zero only on a transaction's last frame —, the two salts, a cumulative
//! checksum) and one page.
//!
//! What cannot be told apart: damage inside the *last* committed transaction from a torn write
//! of an unacknowledged one (both look like a bad tail), and a log cut short exactly at a frame
//! boundary (the missing frames leave no trace). Damage to the database file itself is SQLite's
//! `integrity_check`'s to find, and a damaged bundle's bytes the checksums' (`integrity.rs`).

use std::io::Read;
use std::path::Path;

const MAGIC_LITTLE: u32 = 0x377f_0682;
const MAGIC_BIG: u32 = 0x377f_0683;
const HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

/// What the write-ahead log held when the store opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalReport {
    /// Frames in the file (whole ones).
    pub frames: u64,
    /// Committed transactions SQLite can replay.
    pub replayable_transactions: u64,
    /// Committed transactions of the current log generation after a damaged frame: changes
    /// that were acknowledged and are lost.
    pub lost_transactions: u64,
    /// The first frame (1-based) whose checksum fails while its salts are current.
    pub first_damaged_frame: Option<u64>,
    /// The log's header is damaged: SQLite ignores the whole log.
    pub header_damaged: bool,
}

impl WalReport {
    /// A sentence naming the loss, when acknowledged changes are gone.
    pub fn loss(&self) -> Option<String> {
        if self.header_damaged && self.frames > 0 {
            return Some(format!(
                "the write-ahead log's header is damaged: its {} frames cannot be replayed and \
                 acknowledged changes may be lost",
                self.frames
            ));
        }
        (self.lost_transactions > 0).then(|| {
            format!(
                "the write-ahead log is damaged at frame {}: {} committed (acknowledged) transactions \
                 after it cannot be replayed and are lost",
                self.first_damaged_frame.unwrap_or(0),
                self.lost_transactions
            )
        })
    }
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
fn checksum(big_endian: bool, mut s: (u32, u32), data: &[u8]) -> (u32, u32) {
    for pair in data.chunks_exact(8) {
        let word = |b: &[u8]| {
            let b = [b[0], b[1], b[2], b[3]];
            if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
        };
        s.0 = s.0.wrapping_add(word(&pair[..4])).wrapping_add(s.1);
        s.1 = s.1.wrapping_add(word(&pair[4..])).wrapping_add(s.0);
    }
    s
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads the log at `path` (absent: nothing to replay). Reads it once, a frame at a time.
pub(crate) fn inspect(path: &Path) -> std::io::Result<WalReport> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(WalReport::default()),
        Err(error) => return Err(error),
    };
    inspect_reader(std::io::BufReader::with_capacity(1 << 16, file))
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

fn inspect_reader(mut reader: impl Read) -> std::io::Result<WalReport> {
    let mut report = WalReport::default();
    let mut header = [0u8; HEADER];
    if !read_full(&mut reader, &mut header)? {
        return Ok(report);
    }
    let magic = be32(&header[0..]);
    let page_size = be32(&header[8..]) as usize;
    let big_endian = magic == MAGIC_BIG;
    let salts = (be32(&header[16..]), be32(&header[20..]));
    let computed = checksum(big_endian, (0, 0), &header[..24]);
    let header_sound = (magic == MAGIC_LITTLE || magic == MAGIC_BIG)
        && (512..=65536).contains(&page_size)
        && page_size.is_power_of_two()
        && computed == (be32(&header[24..]), be32(&header[28..]));
    // A page size that cannot be trusted still lets the frames be counted with SQLite's largest.
    let page_size = if header_sound { page_size } else { 4096 };
    let mut frame = vec![0u8; FRAME_HEADER + page_size];
    let mut running = computed;
    let mut chain_intact = header_sound;
    while read_full(&mut reader, &mut frame)? {
        report.frames += 1;
        if !header_sound {
            continue;
        }
        let commit = be32(&frame[4..]) != 0;
        let current = (be32(&frame[8..]), be32(&frame[12..])) == salts;
        if !current {
            // Frames of an earlier generation: the log's live part ended before them.
            if chain_intact {
                break;
            }
            continue;
        }
        if chain_intact {
            let s = checksum(big_endian, running, &frame[..8]);
            let s = checksum(big_endian, s, &frame[FRAME_HEADER..]);
            if s == (be32(&frame[16..]), be32(&frame[20..])) {
                running = s;
                if commit {
                    report.replayable_transactions += 1;
                }
                continue;
            }
            chain_intact = false;
            report.first_damaged_frame = Some(report.frames);
        }
        if commit {
            report.lost_transactions += 1;
        }
    }
    report.header_damaged = !header_sound;
    // A bad tail whose only commit is the damaged transaction's own last frame cannot be told
    // from a torn, unacknowledged write: only commits after a damaged frame's transaction count.
    if report.lost_transactions == 1 && report.first_damaged_frame.is_some() {
        report.lost_transactions = 0;
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
