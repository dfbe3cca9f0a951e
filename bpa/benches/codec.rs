//! Codec benchmarks, side by side with `bp7` (dtn7-rs) and `hardy-bpv7` (Hardy) in one run.
//!
//! Inputs: (a) a 100-byte payload with CRC-32C, Hop Count and Bundle Age blocks; (b) the same
//! with a 1 MiB payload. The bytes are made by our encoder and decoded by all three codecs.
//! "decode" means decode and validate, CRCs included:
//! - ours: `Bundle::parse` (every RFC 9171 §4 rule and every CRC);
//! - bp7: `Bundle::try_from` then `validate()` and `crc_valid()` (its decoder checks neither);
//! - hardy: `ParsedBundle::parse` (checks CRCs and validity).
//!
//! "encode" turns an in-memory bundle into bytes with fresh CRCs (ours `encode`, bp7
//! `to_cbor`); "build" makes a new bundle from its parts (ours `BundleBuilder` + `encode`,
//! hardy `Builder::build`, which is Hardy's only way to produce bytes).
//!
//! Run: `cargo bench -p bpa --bench codec`; results go to docs/benchmarks.md.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Duration;

use bpa::bundle::{Bundle, BundleBuilder, CrcType, CreationTimestamp, Eid, ParseOptions};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const CREATED: u64 = 785_000_000_000;

fn ours_build(payload: &Bytes) -> Bundle {
    BundleBuilder::new(
        Eid::ipn(1, 1),
        Eid::ipn(2, 1),
        CreationTimestamp { time: CREATED, sequence: 1 },
        3_600_000,
    )
    .report_to(Eid::ipn(1, 0))
    .primary_crc(CrcType::Crc32c)
    .block_crc(CrcType::Crc32c)
    .hop_limit(32)
    .bundle_age(1000)
    .payload(payload.clone())
    .build()
    .expect("valid bundle")
}

fn hardy_build(payload: &[u8]) -> Box<[u8]> {
    use hardy_bpv7::{builder::Builder, creation_timestamp::CreationTimestamp as HardyTs, dtn_time::DtnTime};
    let src: hardy_bpv7::eid::Eid = "ipn:1.1".parse().expect("eid");
    let dst: hardy_bpv7::eid::Eid = "ipn:2.1".parse().expect("eid");
    let (_, data) = Builder::new(src, dst)
        .with_report_to("ipn:1.0".parse().expect("eid"))
        .with_lifetime(Duration::from_millis(3_600_000))
        .with_hop_count(&hardy_bpv7::hop_info::HopInfo { limit: 32, count: 0 })
        .with_payload(Cow::Borrowed(payload))
        .build(HardyTs::from_parts(Some(DtnTime::new(CREATED)), 1))
        .expect("hardy builds");
    data
}

fn codecs(c: &mut Criterion, label: &str, payload_len: usize) {
    let payload = Bytes::from((0..payload_len).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>());
    let bundle = ours_build(&payload);
    let encoded = Bytes::from(bundle.encode());
    let options = ParseOptions::default();
    let mut bp7_bundle = bp7::Bundle::try_from(encoded.as_ref()).expect("bp7 decodes it");
    assert!(bp7_bundle.crc_valid());
    assert!(
        hardy_bpv7::bundle::ParsedBundle::parse(&encoded, |_, _| Box::new(
            hardy_bpv7::bpsec::key::KeySet::EMPTY
        ))
        .is_ok()
    );

    let mut group = c.benchmark_group(format!("decode/{label}"));
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("ours", |b| b.iter(|| Bundle::parse(black_box(&encoded), &options).expect("valid")));
    group.bench_function("bp7", |b| {
        b.iter(|| {
            let mut bundle = bp7::Bundle::try_from(black_box(encoded.as_ref())).expect("valid");
            assert!(bundle.validate().is_ok() && bundle.crc_valid());
            bundle
        })
    });
    group.bench_function("hardy", |b| {
        b.iter(|| {
            hardy_bpv7::bundle::ParsedBundle::parse(black_box(&encoded), |_, _| {
                Box::new(hardy_bpv7::bpsec::key::KeySet::EMPTY)
            })
            .expect("valid")
        })
    });
    group.finish();

    let mut group = c.benchmark_group(format!("encode/{label}"));
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("ours", |b| b.iter(|| black_box(&bundle).encode()));
    group.bench_function("bp7", |b| b.iter(|| black_box(&mut bp7_bundle).to_cbor()));
    group.finish();

    let mut group = c.benchmark_group(format!("build/{label}"));
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("ours", |b| b.iter(|| ours_build(black_box(&payload)).encode()));
    group.bench_function("hardy", |b| b.iter(|| hardy_build(black_box(&payload))));
    group.finish();

    if payload_len >= 1 << 20 {
        let mut group = c.benchmark_group(format!("crc32c/{label}"));
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function(BenchmarkId::new("crc32c", payload.len()), |b| {
            b.iter(|| crc32c::crc32c(black_box(&payload)))
        });
        group.finish();
    }
}

fn small(c: &mut Criterion) {
    codecs(c, "100B", 100);
}

fn large(c: &mut Criterion) {
    codecs(c, "1MiB", 1 << 20);
}

/// Why the codec reads CBOR heads itself rather than through `ciborium-ll` (design §5): the same
/// 12 heads of a small bundle's primary block, decoded by both.
fn cbor_heads(c: &mut Criterion) {
    let heads: Vec<u8> = vec![
        0x89, 0x07, 0x00, 0x02, 0x82, 0x02, 0x82, 0x18, 0x2a, 0x01, 0x1b, 0, 0, 0, 0xb6, 0xc5, 0x2d, 0x0f,
        0x80, 0x1a, 0x00, 0x36, 0xee, 0x80,
    ];
    let mut group = c.benchmark_group("cbor-head");
    group.bench_function("ours", |b| {
        b.iter(|| {
            let mut r = bpa::bundle::cbor::Reader::new(black_box(&heads));
            let mut n = 0u64;
            while let Ok(head) = r.head() {
                n = n.wrapping_add(head.argument.unwrap_or(0));
            }
            n
        })
    });
    group.bench_function("ciborium-ll", |b| {
        b.iter(|| {
            let mut d = ciborium_ll::Decoder::from(black_box(heads.as_slice()));
            let mut n = 0u64;
            while let Ok(header) = d.pull() {
                match header {
                    ciborium_ll::Header::Positive(v) => n = n.wrapping_add(v),
                    ciborium_ll::Header::Array(Some(len)) => n = n.wrapping_add(len as u64),
                    _ => {}
                }
            }
            n
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    targets = small, large, cbor_heads
}
criterion_main!(benches);
