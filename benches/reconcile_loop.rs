//! Reconciling in memory, and issuing, timed over a fixed workload instead
//! of criterion's samples: `N` receipts of fresh deliveries are made first (issued, signed,
//! written as JSON), then reconciled one after the other, each against its
//! ticket as issued, into one in-memory store that grows to `N` decisions.
//! Prints microseconds per reconciliation (and per reading of the receipt
//! alone, timed on the same texts just before), so two builds run in turn
//! compare on the same work; then `N` codes with their tickets for `N` other
//! deliveries (the ticket made, signed and handed back, as `Backend::issue`
//! does) (`cargo bench --bench reconcile_loop -- [N] [ROUNDS]`).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use delivery_otp::{
    Backend, CodeFormat, DeliverySettings, InMemoryAttemptStore, KeySet, Receipt, Ticket,
};

#[path = "shared.rs"]
mod shared;
use shared::{cpu, fresh_receipt, sha_backend, NOW};

fn main() {
    // `cargo bench` passes `--bench`; numbers are ours.
    let numbers: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let n = numbers.first().copied().unwrap_or(200_000);
    let rounds = numbers.get(1).copied().unwrap_or(3);
    println!("CPU: {}", cpu());
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
        // What reconciling MACs: the receipt without its MAC, with the
        // device key, and the code, to compare.
        let receipt_input = work[0].0.len() - r#","mac":""#.len() - 52 - 1;
        let delivery_parts = 4 + work[0].1.delivery_id().len() + 4 + 8 + 4;
        let reconcile_floor = floor(n, &[27 + 4 + receipt_input, 20 + delivery_parts + 9], &[]);
        println!(
            "round {round}: reconcile (in memory) {per:.3} us, {:.0} per second; \
             of which reading the receipt {read_per:.3} us; its HMACs alone \
             {reconcile_floor:.3} us ({:.2}x)",
            1e6 / per,
            per / reconcile_floor
        );
        // Issuing: a code and its ticket for each of `n` fresh deliveries.
        let settings = DeliverySettings {
            format: CodeFormat::Numeric { digits: 6 },
            ..DeliverySettings::default()
        };
        let ids: Vec<String> = (0..n).map(|i| format!("I-{round}-{i}")).collect();
        let start = Instant::now();
        let issued = ids
            .iter()
            .filter(|id| {
                backend
                    .issue(id, 0, "courier-17", NOW, &settings)
                    .is_ok_and(|i| i.ticket.sequence() == 0)
            })
            .count();
        let issue_per = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        assert_eq!(issued as u64, n, "every code issued");
        // What issuing MACs (see the ticket and code modules): the code and
        // the hash key (domain, delivery, sequence, format), the hash (domain,
        // delivery, sequence, code) with the hash key, the ticket without
        // its MAC.
        let (delivery, ticket) = (
            &ids[0],
            backend
                .issue(&ids[0], 0, "courier-17", NOW, &settings)
                .unwrap()
                .ticket,
        );
        let parts = 4 + delivery.len() + 4 + 8 + 4;
        let ticket_input = ticket.to_json().len() - r#","mac":""#.len() - 52 - 1;
        let issue_floor = floor(
            n,
            &[20 + parts + 9, 31 + parts + 9, 26 + 4 + ticket_input],
            &[27 + parts + 6],
        );
        println!(
            "round {round}: issue (code + ticket) {issue_per:.3} us, {:.0} per second; \
             its HMACs alone {issue_floor:.3} us ({:.2}x)",
            1e6 / issue_per,
            issue_per / issue_floor
        );
    }
}

/// The hash floor of `n` operations: for each, the HMAC-SHA256s the
/// operation cannot do without, over messages of the lengths it MACs, on
/// the hmac crate directly. `keyed` are MACs with a key set up once (the
/// master or device key), `fresh_key` with a 16-byte key set up per call
/// (the ticket's hash key).
fn floor(n: u64, keyed: &[usize], fresh_key: &[usize]) -> f64 {
    let set_up = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).unwrap();
    let message = [0x5au8; 1024];
    let start = Instant::now();
    for i in 0..n {
        for &len in keyed {
            let mut mac = set_up.clone();
            mac.update(&message[..len]);
            black_box(mac.finalize());
        }
        for &len in fresh_key {
            let key = (i as u128).to_be_bytes();
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(&message[..len]);
            black_box(mac.finalize());
        }
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}
