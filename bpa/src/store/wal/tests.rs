use super::*;

/// A database in WAL mode with `transactions` committed inserts and nothing checkpointed,
/// copied as a crash would leave it (database file and log, the connection still open).
fn crashed_copy(transactions: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let live = tempfile::tempdir().expect("tempdir");
    let db = live.path().join("db.sqlite");
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
    conn.pragma_update(None, "wal_autocheckpoint", 0).expect("no checkpoints");
    conn.execute_batch("CREATE TABLE t (x INTEGER, pad BLOB)").expect("table");
    for i in 0..transactions {
        conn.execute("INSERT INTO t VALUES (?1, zeroblob(100))", [i as i64]).expect("insert");
    }
    let copy = tempfile::tempdir().expect("tempdir");
    for name in ["db.sqlite", "db.sqlite-wal"] {
        std::fs::copy(live.path().join(name), copy.path().join(name)).expect("copy");
    }
    drop(conn);
    let db = copy.path().join("db.sqlite");
    (copy, db)
}

fn wal_of(db: &Path) -> std::path::PathBuf {
    db.with_file_name("db.sqlite-wal")
}

fn rows(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count")
}

/// The page size the test databases use, to find frame boundaries.
fn frame_len(wal: &[u8]) -> usize {
    FRAME_HEADER + be32(&wal[8..]) as usize
}

#[test]
fn a_sound_log_replays_everything() {
    let (_dir, db) = crashed_copy(20);
    let report = inspect(&wal_of(&db)).expect("inspect");
    assert_eq!(report.lost_transactions, 0);
    assert_eq!(report.first_damaged_frame, None);
    assert!(!report.header_damaged);
    // The table's creation and the 20 inserts.
    assert_eq!(report.replayable_transactions, 21);
    assert_eq!(report.loss(), None);
    assert_eq!(rows(&db), 20);
}

#[test]
fn a_damaged_frame_before_committed_transactions_is_a_loss_sqlite_would_hide() {
    let (_dir, db) = crashed_copy(20);
    let wal_path = wal_of(&db);
    let mut wal = std::fs::read(&wal_path).expect("read");
    let frame = frame_len(&wal);
    // Inside the page of the 10th frame.
    let at = HEADER + 9 * frame + FRAME_HEADER + 100;
    wal[at] ^= 0x40;
    std::fs::write(&wal_path, &wal).expect("write");
    let report = inspect(&wal_path).expect("inspect");
    assert_eq!(report.first_damaged_frame, Some(10));
    assert_eq!(report.replayable_transactions + report.lost_transactions, 21, "{report:?}");
    assert!(report.lost_transactions >= 2, "{report:?}");
    let loss = report.loss().expect("a loss");
    assert!(loss.contains("damaged at frame 10"), "{loss}");
    // What SQLite does with it: the later transactions are silently gone.
    assert_eq!(rows(&db), report.replayable_transactions as i64 - 1);
}

#[test]
fn a_torn_last_transaction_is_not_called_a_loss() {
    let (_dir, db) = crashed_copy(5);
    let wal_path = wal_of(&db);
    let mut wal = std::fs::read(&wal_path).expect("read");
    let frame = frame_len(&wal);
    let frames = (wal.len() - HEADER) / frame;
    // Damage the last frame only (a torn final write looks like this) ...
    let at = HEADER + (frames - 1) * frame + FRAME_HEADER + 7;
    wal[at] ^= 1;
    std::fs::write(&wal_path, &wal).expect("write");
    let report = inspect(&wal_path).expect("inspect");
    assert_eq!(report.first_damaged_frame, Some(frames as u64));
    assert_eq!(report.lost_transactions, 0);
    assert_eq!(report.loss(), None);
    // ... and a log cut in the middle of its last frame.
    let cut = &wal[..wal.len() - 10];
    std::fs::write(&wal_path, cut).expect("write");
    let report = inspect(&wal_path).expect("inspect");
    assert_eq!(report.lost_transactions, 0);
    assert_eq!(report.frames, frames as u64 - 1);
}

#[test]
fn a_damaged_header_is_a_loss_when_frames_follow() {
    let (_dir, db) = crashed_copy(3);
    let wal_path = wal_of(&db);
    let mut wal = std::fs::read(&wal_path).expect("read");
    wal[17] ^= 0xff; // a salt
    std::fs::write(&wal_path, &wal).expect("write");
    let report = inspect(&wal_path).expect("inspect");
    assert!(report.header_damaged);
    assert!(report.loss().expect("loss").contains("header is damaged"), "{report:?}");
}

#[test]
fn no_log_nothing_to_say_and_garbage_is_no_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = inspect(&dir.path().join("absent-wal")).expect("absent is fine");
    assert_eq!(report, WalReport::default());
    for len in [0usize, 5, 32, 33, 5000] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let report = inspect_reader(bytes.as_slice()).expect("garbage reads");
        assert_eq!(report.replayable_transactions, 0);
    }
}
