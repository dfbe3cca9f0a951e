//! Cross-decoding with pyD3TN 0.15.2, µD3TN's independent Python codec: 1,000 bundles we make
//! decode in pyD3TN with the same fields and CRCs that pyD3TN's own encoder reproduces, and
//! 1,000 random bundles pyD3TN makes decode in ours with the same fields, byte for byte.
//!
//! The Python side is `interop-tests/py/pyd3tn_cross.py`, run with the interpreter of the
//! virtual environment that `scripts/test` creates (or `$PYD3TN_PYTHON`).

use std::io::Write;
use std::process::Stdio;

use bpa::admin::{AdminRecord, AdminRecordTypes, BibePdu, ReasonCode, StatusAssertion, StatusReport};
use bpa::bundle::{Bundle, Eid, ParseOptions};
use bpa::testing::{BundleShape, arb_bundle_with};
use bytes::Bytes;
use interop_tests::{BlockFields, BundleFields, pyd3tn_script};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;

const COUNT: usize = 1000;

fn run_python(args: &[&str], stdin: &[u8]) -> Vec<Value> {
    let mut child = pyd3tn_script("pyd3tn_cross.py", args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the pyD3TN script");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().expect("pyD3TN script runs");
    writer.join().expect("writer thread").expect("write to the pyD3TN script");
    assert!(out.status.success(), "pyD3TN script failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} is not an integer in {v}"))
}

fn fields_from_json(v: &Value) -> BundleFields {
    let blocks = v["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| BlockFields {
            number: u64_of(b, "number"),
            block_type: u64_of(b, "type"),
            flags: u64_of(b, "flags"),
            crc_type: u64_of(b, "crc_type"),
            data: hex::decode(b["data"].as_str().expect("data")).expect("hex"),
        })
        .collect();
    BundleFields {
        destination: v["destination"].as_str().expect("destination").to_string(),
        source: v["source"].as_str().expect("source").to_string(),
        report_to: v["report_to"].as_str().expect("report_to").to_string(),
        creation_time: u64_of(v, "creation_time"),
        sequence: u64_of(v, "sequence"),
        lifetime_ms: u64_of(v, "lifetime"),
        flags: u64_of(v, "flags"),
        primary_crc_type: u64_of(v, "primary_crc_type"),
        fragment: v["fragment"]
            .as_array()
            .map(|f| (f[0].as_u64().expect("offset"), f[1].as_u64().expect("total"))),
        blocks,
    }
}

#[test]
fn bundles_we_make_decode_in_pyd3tn() {
    // pyD3TN knows no unrecognised block types (its BlockType enum rejects them) and prints
    // 2-element ipn EIDs as they are, so allocators stay out.
    let shape = BundleShape { allocators: false, unknown_blocks: false, ..BundleShape::default() };
    let strategy = arb_bundle_with(shape);
    let mut runner =
        TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let bundles: Vec<Bundle> =
        (0..COUNT).map(|_| strategy.new_tree(&mut runner).expect("a bundle").current()).collect();
    let input: String = bundles.iter().map(|b| hex::encode(b.encode()) + "\n").collect();
    let decoded = run_python(&["decode"], input.as_bytes());
    assert_eq!(decoded.len(), COUNT);
    for (bundle, theirs) in bundles.iter().zip(&decoded) {
        assert!(theirs.get("error").is_none(), "pyD3TN rejects {}: {}", bundle.id(), theirs["error"]);
        assert_eq!(theirs["crc_ok"], true, "pyD3TN computes other CRCs for {}", bundle.id());
        assert_eq!(fields_from_json(theirs), BundleFields::of(bundle));
    }
}

#[test]
fn bundles_pyd3tn_makes_decode_in_ours() {
    let generated = run_python(&["generate", &COUNT.to_string(), "20261123"], b"");
    assert_eq!(generated.len(), COUNT);
    for theirs in &generated {
        let bytes = Bytes::from(hex::decode(theirs["hex"].as_str().expect("hex")).expect("hex"));
        let ours = Bundle::parse(&bytes, &ParseOptions::default())
            .unwrap_or_else(|e| panic!("we reject pyD3TN's bundle {}: {e}", theirs["hex"]));
        assert_eq!(BundleFields::of(&ours), fields_from_json(theirs));
        assert_eq!(ours.encode(), bytes.as_ref(), "re-encoding differs");
    }
}

fn status_json(report: &StatusReport) -> Value {
    let assertions = [report.received, report.forwarded, report.delivered, report.deleted];
    serde_json::json!({
        "kind": "status",
        "asserted": assertions.iter().map(|a| a.asserted).collect::<Vec<_>>(),
        "times": assertions.iter().map(|a| a.time).collect::<Vec<_>>(),
        "reason": report.reason.0,
        "source": report.source.to_string(),
        "creation": [report.creation.time, report.creation.sequence],
        "fragment": report.fragment.map(|(o, l)| vec![o, l]),
    })
}

fn bibe_json(pdu: &BibePdu, record_type: u64) -> Value {
    serde_json::json!({
        "kind": "bibe",
        "record_type": record_type,
        "transmission_id": pdu.transmission_id,
        "retransmission_time": pdu.retransmission_time,
        "bundle": hex::encode(&pdu.bundle),
    })
}

/// pyD3TN's status reports and BIBE PDUs (record types 64443 and 7) decode in ours, and ours in
/// pyD3TN (which knows only those two BIBE codes). pyD3TN writes status times in seconds where
/// RFC 9171 §6.1.1 says milliseconds; the integers on the wire are compared as they are.
#[test]
fn administrative_records_cross_both_ways() {
    let generated = run_python(&["admin-generate", "500", "11"], b"");
    assert_eq!(generated.len(), 500);
    for theirs in &generated {
        let payload = Bytes::from(hex::decode(theirs["hex"].as_str().expect("hex")).expect("hex"));
        let ours = AdminRecord::decode(&payload, &AdminRecordTypes::default())
            .unwrap_or_else(|e| panic!("we reject pyD3TN's record {}: {e}", theirs["hex"]));
        let mut expected = theirs.clone();
        expected.as_object_mut().expect("object").remove("hex");
        let got = match &ours {
            AdminRecord::StatusReport(r) => status_json(r),
            AdminRecord::BibePdu(p) => bibe_json(p, u64_of(theirs, "record_type")),
            other => panic!("pyD3TN's record decoded as {other:?}"),
        };
        assert_eq!(got, expected);
    }

    let strategy = arb_bundle_with(BundleShape::default());
    let mut runner =
        TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[9; 32]));
    let mut ours: Vec<(AdminRecord, u64)> = Vec::new();
    for i in 0..500u64 {
        if i % 2 == 0 {
            let bundle = strategy.new_tree(&mut runner).expect("a bundle").current();
            let time = (i % 4 == 0).then_some(i * 1000);
            ours.push((
                AdminRecord::StatusReport(StatusReport {
                    received: StatusAssertion::yes(time),
                    forwarded: StatusAssertion::no(),
                    delivered: StatusAssertion {
                        asserted: i % 3 == 0,
                        time: (i % 3 == 0).then_some(7).and(time),
                    },
                    deleted: StatusAssertion::no(),
                    reason: ReasonCode(i % 17),
                    source: Eid::ipn((i + 1) as u32, i),
                    creation: bundle.primary().creation,
                    fragment: (i % 5 == 0).then_some((i, i * 2)),
                }),
                1,
            ));
        } else {
            let bundle = strategy.new_tree(&mut runner).expect("a bundle").current();
            let code = if i % 4 == 1 { 64443 } else { 7 };
            ours.push((
                AdminRecord::BibePdu(BibePdu {
                    transmission_id: i,
                    retransmission_time: i * 1_000_000,
                    bundle: Bytes::from(bundle.encode()),
                }),
                code,
            ));
        }
    }
    let input: String = ours
        .iter()
        .map(|(record, code)| {
            hex::encode(record.encode(&AdminRecordTypes { bibe_pdu: *code, custody_signal: 4 })) + "\n"
        })
        .collect();
    let decoded = run_python(&["admin-decode"], input.as_bytes());
    assert_eq!(decoded.len(), ours.len());
    for ((record, code), theirs) in ours.iter().zip(&decoded) {
        assert!(theirs.get("error").is_none(), "pyD3TN rejects {record:?}: {}", theirs["error"]);
        let expected = match record {
            AdminRecord::StatusReport(r) => status_json(r),
            AdminRecord::BibePdu(p) => bibe_json(p, *code),
            _ => unreachable!("only status reports and PDUs are made"),
        };
        assert_eq!(theirs, &expected);
    }
}
