//! `dtn bundle create | inspect | validate` run as a user runs them: the real binary, real files.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn dtn(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dtn"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dtn");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(data) = stdin {
            input.write_all(data).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait for dtn")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn create(dir: &tempfile::TempDir, name: &str, extra: &[&str], payload: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    let mut args = vec!["bundle", "create", "-o", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let out = dtn(&args, Some(payload));
    assert!(out.status.success(), "create failed: {}", stderr(&out));
    path
}

#[test]
fn create_then_inspect_json_has_the_documented_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = create(
        &dir,
        "b.bundle",
        &[
            "--from",
            "ipn:1.1",
            "--to",
            "dtn://node/svc",
            "--report-to",
            "ipn:1.0",
            "--lifetime",
            "90s",
            "--creation-time",
            "123456",
            "--sequence",
            "7",
            "--hop-limit",
            "12",
            "--block",
            "200:cafe:0x10",
            "--fragment",
            "0:100",
            "--crc",
            "16",
        ],
        b"hello world",
    );
    let out = dtn(&["bundle", "inspect", "--json", path.to_str().expect("path")], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let p = &v["primary"];
    assert_eq!(p["version"], 7);
    assert_eq!(p["flags"], 1);
    assert_eq!(p["crc_type"], 2);
    assert_eq!(p["destination"], "dtn://node/svc");
    assert_eq!(p["source"], "ipn:1.1");
    assert_eq!(p["report_to"], "ipn:1.0");
    assert_eq!(p["creation_time"], 123456);
    assert_eq!(p["sequence"], 7);
    assert_eq!(p["lifetime"], 90_000);
    assert_eq!(p["fragment_offset"], 0);
    assert_eq!(p["total_adu_length"], 100);
    let blocks = v["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 3);
    assert_eq!(
        (blocks[0]["type"].clone(), blocks[0]["number"].clone(), blocks[0]["crc_type"].clone()),
        (10.into(), 2.into(), 1.into())
    );
    assert_eq!(blocks[0]["value"], serde_json::json!({"limit": 12, "count": 0}));
    assert_eq!(
        (blocks[1]["type"].clone(), blocks[1]["flags"].clone(), blocks[1]["length"].clone()),
        (200.into(), 16.into(), 2.into())
    );
    assert_eq!(
        (blocks[2]["type"].clone(), blocks[2]["number"].clone(), blocks[2]["length"].clone()),
        (1.into(), 1.into(), 11.into())
    );
    assert_eq!(v["payload_length"], 11);
}

#[test]
fn absent_fragment_fields_are_null_and_text_output_is_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path =
        create(&dir, "b.bundle", &["--from", "ipn:1.1", "--to", "ipn:2.1", "--creation-time", "0"], b"x");
    let out = dtn(&["bundle", "inspect", "--json", path.to_str().expect("path")], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["primary"]["fragment_offset"].is_null() && v["primary"]["total_adu_length"].is_null());
    // Creation time 0 brought a Bundle Age block with it (RFC 9171 §4.4.2).
    assert_eq!(v["blocks"][0]["type"], 7);
    let text = dtn(&["bundle", "inspect", path.to_str().expect("path")], None);
    let text = String::from_utf8(text.stdout).expect("utf-8");
    assert!(text.starts_with("bundle ipn:1.1/0/0 ("), "{text}");
    assert!(text.contains("created       unknown (no clock)"), "{text}");
}

#[test]
fn stdin_and_stdout_work_as_a_pipe() {
    let out = dtn(&["bundle", "create", "--from", "ipn:1.1", "--to", "ipn:2.1"], Some(b"piped"));
    assert!(out.status.success(), "{}", stderr(&out));
    let check = dtn(&["bundle", "validate"], Some(&out.stdout));
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("<stdin>: valid bundle ipn:1.1/"));
}

#[test]
fn an_invalid_bundle_fails_with_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = create(&dir, "b.bundle", &["--from", "ipn:1.1", "--to", "ipn:2.1"], b"payload bytes");
    let mut bytes = std::fs::read(&path).expect("read");
    let n = bytes.len();
    bytes[n - 8] ^= 0xff; // inside the payload
    let bad = dir.path().join("bad.bundle");
    std::fs::write(&bad, &bytes).expect("write");
    for command in ["validate", "inspect"] {
        let out = dtn(&["bundle", command, bad.to_str().expect("path")], None);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("is not a valid bundle: CRC mismatch in block number 1"), "{err}");
    }
    // Truncated inside the primary block.
    std::fs::write(&bad, &bytes[..10]).expect("write");
    let out = dtn(&["bundle", "validate", bad.to_str().expect("path")], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("the input ends inside this item"), "{}", stderr(&out));
    // Not a bundle at all.
    let out = dtn(&["bundle", "validate"], Some(b"hello"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("found 0x68 (RFC 9171 §4.1)"), "{}", stderr(&out));
}

#[test]
fn a_primary_block_without_crc_needs_lenient() {
    // What dtn7-rs sends: primary block CRC type 0.
    let bundle: &[u8] = &[
        0x9f, 0x88, 0x07, 0x00, 0x00, 0x82, 0x02, 0x82, 0x02, 0x01, 0x82, 0x02, 0x82, 0x01, 0x01, 0x82, 0x01,
        0x00, 0x82, 0x1a, 0x00, 0x01, 0x00, 0x00, 0x00, 0x19, 0x03, 0xe8, 0x85, 0x01, 0x01, 0x00, 0x00, 0x41,
        0x61, 0xff,
    ];
    let out = dtn(&["bundle", "validate"], Some(bundle));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("the primary block has no CRC"), "{}", stderr(&out));
    let out = dtn(&["bundle", "validate", "--lenient"], Some(bundle));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("accepted leniently: the primary block has no CRC")
    );
}

#[test]
fn large_payloads_stream_through_inspect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let payload = vec![0x5au8; 3 << 20];
    let path = create(&dir, "big.bundle", &["--from", "ipn:1.1", "--to", "ipn:2.1"], &payload);
    let out = dtn(&["bundle", "inspect", "--json", path.to_str().expect("path")], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["payload_length"], 3 << 20);
}

#[test]
fn bad_arguments_are_explained() {
    let out = dtn(&["bundle", "create", "--to", "ipn:x.1"], Some(b""));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("ipn number \"x\" is not a decimal number"), "{}", stderr(&out));
    let out = dtn(&["bundle", "create", "--to", "ipn:2.1", "--hop-limit", "0", "-o", "/dev/null"], Some(b""));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("hop limit 0 is outside 1..=255"), "{}", stderr(&out));
    let out = dtn(&["bundle", "inspect", "/nonexistent/file"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot open /nonexistent/file"), "{}", stderr(&out));
}

#[test]
fn status_reports_are_described() {
    // An administrative-record bundle whose payload is a "delivered" status report.
    let payload = hex_payload();
    let out = dtn(
        &["bundle", "create", "--from", "ipn:1.0", "--to", "ipn:5.0", "--flags", "admin-record"],
        Some(&payload),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = dtn(&["bundle", "inspect"], Some(&out.stdout));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("status report: delivered for ipn:5.1/99/3 (no additional information)"), "{text}");
}

fn hex_payload() -> Vec<u8> {
    // [1, [[[false], [false], [true], [false]], 0, [2, [5, 1]], [99, 3]]]
    vec![
        0x82, 0x01, 0x84, 0x84, 0x81, 0xf4, 0x81, 0xf4, 0x81, 0xf5, 0x81, 0xf4, 0x00, 0x82, 0x02, 0x82, 0x05,
        0x01, 0x82, 0x18, 0x63, 0x03,
    ]
}
