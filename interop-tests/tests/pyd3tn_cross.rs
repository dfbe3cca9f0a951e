//! Cross-decoding with pyD3TN 0.15.2, µD3TN's independent Python codec: 1,000 bundles we make
//! decode in pyD3TN with the same fields and CRCs that pyD3TN's own encoder reproduces, and
//! 1,000 random bundles pyD3TN makes decode in ours with the same fields, byte for byte.
//!
//! The Python side is `interop-tests/py/pyd3tn_cross.py`, run with the interpreter of the
//! virtual environment that `scripts/test` creates (or `$PYD3TN_PYTHON`).

use std::io::Write;
use std::process::{Command, Stdio};

use bpa::bundle::{Bundle, ParseOptions};
use bpa::testing::{BundleShape, arb_bundle_with};
use bytes::Bytes;
use interop_tests::{BlockFields, BundleFields, pyd3tn_python, workspace_root};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;

const COUNT: usize = 1000;

fn run_python(args: &[&str], stdin: &[u8]) -> Vec<Value> {
    let python = pyd3tn_python();
    assert!(
        python.exists(),
        "no Python with pyD3TN at {}: run scripts/test, which creates it, or set PYD3TN_PYTHON",
        python.display()
    );
    let script = workspace_root().join("interop-tests/py/pyd3tn_cross.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args(args)
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
