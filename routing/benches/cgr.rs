//! The first route over the benchmark plan of A-SABR (`../shared/plans/sample1.tvgutil.json`,
//! 206 nodes, 16,138 contacts over 8 h; see its README): a bundle of 47,419,533 bytes expiring
//! at t = 24,060 s, routed at t = 60 s, from the node named "74" to "57" (A-SABR's query), and
//! from "178" to "159". Prints each route, then times the search.
//!
//!     cargo bench -p routing --bench cgr

use criterion::{Criterion, criterion_group, criterion_main};
use routing::cgr::{Query, earliest_route};
use routing::tvgutil;

const PLAN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/plans/sample1.tvgutil.json");

fn cgr(c: &mut Criterion) {
    let Ok(text) = std::fs::read_to_string(PLAN) else {
        eprintln!("{PLAN} is not there: nothing to measure");
        return;
    };
    let started = std::time::Instant::now();
    let plan = tvgutil::parse(&text, 0).expect("sample1 parses");
    eprintln!(
        "parsed {} nodes, {} contacts in {:.1?}",
        plan.node_count(),
        plan.contacts.len(),
        started.elapsed()
    );
    for (from, to) in [("74", "57"), ("178", "159")] {
        let query = Query {
            from: plan.find(from).expect("from"),
            to: plan.find(to).expect("to"),
            now: 60_000,
            size: 47_419_533,
            expiry: 24_060_000,
            previous_hop: None,
        };
        match earliest_route(&plan, &query) {
            Some(route) => {
                let hops: Vec<String> = route
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
                    .collect();
                eprintln!(
                    "{from} -> {to}: arrival {:.3} s over {}",
                    route.arrival as f64 / 1e3,
                    hops.join(", ")
                );
            }
            None => eprintln!("{from} -> {to}: no route"),
        }
        c.bench_function(&format!("first route {from} -> {to} (sample1)"), |b| {
            b.iter(|| earliest_route(&plan, std::hint::black_box(&query)))
        });
    }
}

criterion_group!(benches, cgr);
criterion_main!(benches);
