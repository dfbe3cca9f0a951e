//! Contact Graph Routing, measured (results in docs/benchmarks.md).
//!
//! - The benchmark plan of A-SABR (`../shared/plans/sample1.tvgutil.json`, 206 nodes, 16,138
//!   contacts over 8 h; see its README): a bundle of 47,419,533 bytes expiring at t = 24,060 s,
//!   routed at t = 60 s, from the node named "74" to "57" (A-SABR's query), and from "178" to
//!   "159". Prints each route, then times the search.
//! - Synthetic plans of 100 nodes with 1,000, 10,000 and 100,000 contacts over a day (written in
//!   ION's form and parsed, the parse timed too): the first route from node 0 to node 99, the
//!   first routes from node 0 to each other node (no cache), and decisions with the cache warm
//!   (every other node as destination in turn).
//!
//!     cargo bench -p routing --bench cgr

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use routing::cgr::{ContactGraph, Query};
use routing::{ion, tvgutil};

const PLAN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/plans/sample1.tvgutil.json");

fn describe(graph: &ContactGraph, route: &routing::Route) -> String {
    let plan = graph.plan();
    route
        .contacts
        .iter()
        .map(|&i| {
            let k = &plan.contacts[i];
            format!(
                "{}>{} [{:.1} s, {:.1} s]",
                plan.name(k.from),
                plan.name(k.to),
                k.start as f64 / 1e3,
                k.end as f64 / 1e3
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn sample1(c: &mut Criterion) {
    let Ok(text) = std::fs::read_to_string(PLAN) else {
        eprintln!("{PLAN} is not there: nothing to measure");
        return;
    };
    let started = Instant::now();
    let plan = tvgutil::parse(&text, 0).expect("sample1 parses");
    let parsed = started.elapsed();
    let started = Instant::now();
    let graph = ContactGraph::new(plan);
    eprintln!(
        "sample1: parsed {} nodes, {} contacts in {parsed:.1?}, prepared in {:.1?}",
        graph.plan().node_count(),
        graph.plan().contacts.len(),
        started.elapsed()
    );
    for (from, to) in [("74", "57"), ("178", "159")] {
        let query = Query {
            from: graph.plan().find(from).expect("from"),
            to: graph.plan().find(to).expect("to"),
            now: 60_000,
            size: 47_419_533,
            expiry: 24_060_000,
            previous_hop: None,
        };
        match graph.earliest_route(&query) {
            Some(route) => eprintln!(
                "{from} -> {to}: arrival {:.3} s over {}",
                route.arrival as f64 / 1e3,
                describe(&graph, &route)
            ),
            None => eprintln!("{from} -> {to}: no route"),
        }
        c.bench_function(&format!("first route {from} -> {to} (sample1)"), |b| {
            b.iter(|| graph.earliest_route(black_box(&query)))
        });
    }
    // A-SABR's router computes a tree to every destination on its first route; the same work
    // here is a search to each node in turn.
    let from = graph.plan().find("74").expect("74");
    let everyone: Vec<Query> = (0..graph.plan().node_count() as u32)
        .map(routing::NodeIndex)
        .filter(|&to| to != from)
        .map(|to| Query { from, to, now: 60_000, size: 47_419_533, expiry: 24_060_000, previous_hop: None })
        .collect();
    let reached = everyone.iter().filter(|q| graph.earliest_route(q).is_some()).count();
    eprintln!("74 -> each of the other {} nodes: {reached} reachable", everyone.len());
    c.bench_function("first routes 74 -> every other node, no cache (sample1)", |b| {
        b.iter(|| {
            for q in &everyone {
                black_box(graph.earliest_route(black_box(q)));
            }
        })
    });
}

/// A plan of `nodes` nodes and `contacts` contacts over a day in ION's form: random pairs,
/// 5–30 minute windows, 100 kB/s–1 MB/s, a range of 0–2 s per pair (xorshift, fixed seed).
fn synthetic(nodes: u64, contacts: usize) -> String {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ contacts as u64;
    let mut next = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let mut text = String::new();
    for from in 0..nodes {
        for to in 0..nodes {
            if from != to {
                let _ = writeln!(text, "a range +0 +86400 {from} {to} {}", next(3));
            }
        }
    }
    for _ in 0..contacts {
        let from = next(nodes);
        let to = (from + 1 + next(nodes - 1)) % nodes;
        let start = next(86_400 - 1_800);
        let length = 300 + next(1_500);
        let rate = 100_000 + next(900_000);
        let _ = writeln!(text, "a contact +{start} +{} {from} {to} {rate}", start + length);
    }
    text
}

fn synthetic_plans(c: &mut Criterion) {
    let mut group = c.benchmark_group("synthetic 100 nodes");
    for contacts in [1_000usize, 10_000, 100_000] {
        let text = synthetic(100, contacts);
        let started = Instant::now();
        let plan = ion::parse(&text, 0).expect("synthetic plan parses");
        let parsed = started.elapsed();
        let started = Instant::now();
        let mut graph = ContactGraph::new(plan);
        let prepared = started.elapsed();
        let query = |graph: &ContactGraph, to: u64| Query {
            from: graph.plan().find("0").expect("0"),
            to: graph.plan().find(&to.to_string()).expect("to"),
            now: 0,
            size: 1_000_000,
            expiry: 86_400_000,
            previous_hop: None,
        };
        let first = query(&graph, 99);
        let route = graph.earliest_route(&first);
        eprintln!(
            "{contacts} contacts: parsed in {parsed:.1?} ({} bytes of text), prepared in {prepared:.1?}; 0 -> 99: {}",
            text.len(),
            route.map_or("no route".to_string(), |r| format!(
                "arrival {:.3} s, {} hops",
                r.arrival as f64 / 1e3,
                r.hops()
            ))
        );
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("first route 0 -> 99", contacts), &first, |b, q| {
            b.iter(|| graph.earliest_route(black_box(q)))
        });
        let queries: Vec<Query> = (1..100).map(|to| query(&graph, to)).collect();
        group.throughput(Throughput::Elements(queries.len() as u64));
        group.bench_with_input(BenchmarkId::new("99 first routes, no cache", contacts), &queries, |b, qs| {
            b.iter(|| {
                for q in qs {
                    black_box(graph.earliest_route(black_box(q)));
                }
            })
        });
        for q in &queries {
            let _ = graph.route(q);
        }
        group.throughput(Throughput::Elements(queries.len() as u64));
        group.bench_with_input(BenchmarkId::new("99 decisions, cache warm", contacts), &queries, |b, qs| {
            b.iter(|| {
                for q in qs {
                    black_box(graph.route(black_box(q)));
                }
            })
        });
        group.throughput(Throughput::Elements(1));
    }
    group.finish();
}

criterion_group!(benches, sample1, synthetic_plans);
criterion_main!(benches);
