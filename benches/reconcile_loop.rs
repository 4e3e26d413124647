//! Reconciling in memory, timed over a fixed workload instead of criterion's
//! samples: `N` receipts of fresh deliveries are made first (issued, signed,
//! written as JSON), then reconciled one after the other, each against its
//! ticket as issued, into one in-memory store that grows to `N` decisions.
//! Prints microseconds per reconciliation (and per reading of the receipt
//! alone, timed on the same texts just before), so two builds run in turn
//! compare on the same work (`cargo bench --bench reconcile_loop -- [N] [ROUNDS]`).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss
)]

use std::sync::Arc;
use std::time::Instant;

use delivery_otp::{Backend, InMemoryAttemptStore, KeySet, Receipt, Ticket};

#[path = "shared.rs"]
mod shared;
use shared::{fresh_receipt, sha_backend, NOW};

fn main() {
    // `cargo bench` passes `--bench`; numbers are ours.
    let numbers: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let n = numbers.first().copied().unwrap_or(200_000);
    let rounds = numbers.get(1).copied().unwrap_or(3);
    println!("SHA-256 backend: {}; {n} receipts per round", sha_backend());
    for round in 1..=rounds {
        let backend = Backend::new(
            KeySet::generate("bench").unwrap(),
            Arc::new(InMemoryAttemptStore::new()),
        );
        let key = backend
            .provision_device("courier-17", "pixel-8-0042")
            .unwrap();
        let work: Vec<(String, Ticket)> = (0..n)
            .map(|i| fresh_receipt(&backend, &key, "loop", i))
            .collect();
        // Reading alone first (the part of reconciling that parses and
        // checks the written form), on the same texts.
        let start = Instant::now();
        let read = work
            .iter()
            .filter(|(json, _)| Receipt::from_json(json).is_ok())
            .count();
        let read_per = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        assert_eq!(read as u64, n, "every receipt reads");
        let start = Instant::now();
        let confirmed = work
            .iter()
            .filter(|(json, ticket)| {
                backend
                    .reconcile(json, ticket, NOW + 100)
                    .unwrap()
                    .decision
                    .kind()
                    == "confirmed"
            })
            .count();
        let per = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        assert_eq!(confirmed as u64, n, "every receipt confirmed");
        println!(
            "round {round}: reconcile (in memory) {per:.3} us, {:.0} per second; \
             of which reading the receipt {read_per:.3} us",
            1e6 / per
        );
    }
}
