//! Request bodies for `scripts/bench-service`: issues `--deliveries`
//! deliveries on a running service, provisions one device, and writes one
//! request per line for wrk to replay: `verify.txt` (path, a tab, the body of
//! a right-code check, for the odd deliveries), `verify-signed.txt` (the
//! same for the even ones, with a third field: the `Authorization` header
//! the phone signs the request with, valid for five minutes from now),
//! `upload.txt` (a receipt upload each, signed by the core as the phone
//! would, for the even deliveries) and `upload-batch.txt` (uploads of 100
//! receipts, for the odd ones).
//!
//! `cargo run --profile server -p delivery-otp-service --example bench_fixtures -- URL TOKEN N OUT`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use std::io::Write;

use delivery_otp::{DeviceKey, ReceiptDraft, ReceiptOutcome, Ticket, Verification};
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// Delivery i: its number, its right-code check (path, body) and its receipt.
type Fixture = (usize, (String, String), String);

/// Threads issuing at once: the service answers many in parallel.
const THREADS: usize = 16;

fn post(agent: &ureq::Agent, base: &str, token: &str, path: &str, body: &Value) -> Value {
    let mut r = agent
        .post(&format!("{base}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, token, count, out) = (
        args[1].as_str(),
        args[2].as_str(),
        args[3].parse::<usize>().unwrap(),
        &args[4],
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let device = post(
        &agent,
        base,
        token,
        "/v1/devices",
        &json!({"courier_id": "bench-courier", "device_id": "bench-phone"}),
    );
    let key = DeviceKey::from_json(device["device_key"].as_str().unwrap()).unwrap();
    let order = json!({"value_minor": 15000, "currency": "EUR", "method": "hand_to_customer", "categories": [],
        "region_risk": 10, "customer_preference": "none", "first_delivery_to_address": false, "not_received_claims": 0});
    let run = std::process::id();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Delivery i's verify line and receipt, made by thread i % THREADS.
    let made: Vec<Vec<Fixture>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (agent, key, order) = (agent.clone(), &key, &order);
                scope.spawn(move || {
                    (t..count)
                        .step_by(THREADS)
                        .map(|i| {
                            let (line, receipt) =
                                fixture(&agent, base, token, key, order, run, i, now);
                            (i, line, receipt)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut all: Vec<Fixture> = made.into_iter().flatten().collect();
    all.sort_by_key(|(i, _, _)| *i);
    let mut verify = std::fs::File::create(format!("{out}/verify.txt")).unwrap();
    let mut verify_signed = std::fs::File::create(format!("{out}/verify-signed.txt")).unwrap();
    let mut upload = std::fs::File::create(format!("{out}/upload.txt")).unwrap();
    let mut upload_batch = std::fs::File::create(format!("{out}/upload-batch.txt")).unwrap();
    let mut batch: Vec<String> = Vec::new();
    for (i, (path, body), receipt) in all {
        if i % 2 == 0 {
            let header = key.sign_request("POST", &path, now, body.as_bytes());
            writeln!(verify_signed, "{path}\t{body}\t{header}").unwrap();
        } else {
            writeln!(verify, "{path}\t{body}").unwrap();
        }
        if i % 2 == 0 {
            writeln!(upload, "/v1/receipts\t{}", json!({"receipts": [receipt]})).unwrap();
        } else {
            batch.push(receipt);
            if batch.len() == 100 {
                writeln!(upload_batch, "/v1/receipts\t{}", json!({"receipts": batch})).unwrap();
                batch.clear();
            }
        }
    }
}

/// Issues delivery `i`: its right-code check (path and body) and the
/// receipt the phone would sign.
#[allow(clippy::too_many_arguments)]
fn fixture(
    agent: &ureq::Agent,
    base: &str,
    token: &str,
    key: &DeviceKey,
    order: &Value,
    run: u32,
    i: usize,
    now: u64,
) -> ((String, String), String) {
    let id = format!("FIX-{run}-{i}");
    let issued = post(
        agent,
        base,
        token,
        "/v1/deliveries",
        &json!({"delivery_id": id, "courier_id": "bench-courier", "order": order,
        "contact": {"phone": "+441234567890"}}),
    );
    let text = issued["message"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("issuing {id} was answered {issued}"));
    let code: String = text
        .split("code ")
        .nth(1)
        .unwrap()
        .chars()
        .take(7)
        .filter(char::is_ascii_digit)
        .collect();
    let body = json!({"courier_id": "bench-courier", "device_id": "bench-phone", "code": code});
    let check = (format!("/v1/deliveries/{id}/verify"), body.to_string());
    let ticket = Ticket::from_json(issued["ticket"].as_str().unwrap()).unwrap();
    let draft = ReceiptDraft::for_ticket(
        &ticket,
        ReceiptOutcome::Delivered {
            code: Zeroizing::new(code),
            verified: Verification::Offline,
        },
        1,
        now,
        "bench/1",
    );
    (check, key.sign(draft).unwrap().to_json().to_string())
}
