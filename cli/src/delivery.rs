//! `delivery-otp issue`, `verify` and `keys`: delivery codes for operations staff.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use clap::{Args, Subcommand};
use delivery_otp::{
    Backend, CodeFormat, DeliverySettings, Error, InMemoryAttemptStore, InMemoryStateStore, KeySet,
    OfflineOutcome, OfflineVerifier, OnlineOutcome, Order, Receipt, Requirement, Rules, Ticket,
    VerificationMode,
};
use serde_json::{json, Value};

#[derive(Args)]
pub struct IssueArgs {
    /// Key set file (JSON, as `keys new` writes it).
    #[arg(long)]
    keys: String,
    /// Delivery id.
    #[arg(long)]
    delivery: String,
    /// Sequence number: 0 for the first code, one more for each resend.
    #[arg(long, default_value_t = 0)]
    sequence: u64,
    /// Issue time, unix seconds (default: now).
    #[arg(long)]
    time: Option<u64>,
    /// Code format: numeric-N (4 to 10) or crockford-N (4 to 12).
    #[arg(long, default_value = "numeric-6")]
    format: String,
    /// Allow numeric codes of 4 or 5 digits.
    #[arg(long)]
    allow_short_codes: bool,
    /// Width of the offline hash in bits (8 to 32).
    #[arg(long, default_value_t = 12)]
    hash_bits: u32,
    /// Attempts before the code locks.
    #[arg(long, default_value_t = 5)]
    attempts: u32,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86400)]
    lifetime: u64,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The ticket: its JSON, or @FILE.
    #[arg(long)]
    ticket: String,
    /// The code as typed.
    #[arg(long)]
    code: String,
    /// Verification time, unix seconds (default: now).
    #[arg(long)]
    time: Option<u64>,
    /// Key set file, for online verification.
    #[arg(long, required_unless_present = "offline")]
    keys: Option<String>,
    /// The delivery's current sequence (online; default: the ticket's).
    #[arg(long)]
    current_sequence: Option<u64>,
    /// Verify as the courier's device does, without keys (one attempt, fresh state).
    #[arg(long, conflicts_with_all = ["keys", "current_sequence"])]
    offline: bool,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a new key set with one 256-bit key from the OS generator.
    New {
        /// The key id.
        #[arg(long)]
        id: String,
    },
    /// Print the device key (JSON) a courier's app gets at login.
    Device {
        /// Key set file.
        #[arg(long)]
        keys: String,
        /// The courier id.
        #[arg(long)]
        courier: String,
        /// The device id.
        #[arg(long)]
        device: String,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Decide for an order (JSON) with a rules file, or the default rules,
    /// and print the decision with every reason (JSON).
    Check {
        /// Rules file (JSON, version 1; default: the built-in rules).
        #[arg(long)]
        rules: Option<String>,
        /// The order: its JSON, or @FILE.
        #[arg(long)]
        order: String,
    },
    /// Print the built-in rules (JSON), to start a rules file from.
    Defaults,
}

#[derive(Args)]
pub struct ReconcileArgs {
    /// Key set file.
    #[arg(long)]
    keys: String,
    /// Receipts file, one receipt per line (default: stdin).
    #[arg(long)]
    input: Option<String>,
    /// A delivery's current sequence, as DELIVERY=SEQUENCE; repeat for each
    /// delivery that had a resend. Deliveries not named are taken to be at
    /// the receipt's own sequence.
    #[arg(long = "current", value_name = "DELIVERY=SEQUENCE", value_parser = parse_current)]
    current: Vec<(String, u64)>,
    /// Reconciliation time, unix seconds (default: now).
    #[arg(long)]
    time: Option<u64>,
}

fn read_file(path: &str, what: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::InvalidKeySet {
        reason: format!("cannot read the {what} file {path}: {}", e.kind()),
    })
}

fn load_backend(path: &str) -> Result<Backend, Error> {
    let keys = KeySet::from_json(&read_file(path, "key set")?)?;
    Ok(Backend::new(keys, Arc::new(InMemoryAttemptStore::new())))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

pub fn issue(args: IssueArgs, now: u64) -> Result<String, Error> {
    let backend = load_backend(&args.keys)?;
    let settings = DeliverySettings {
        format: args.format.parse::<CodeFormat>()?,
        allow_short_codes: args.allow_short_codes,
        hash_bits: args.hash_bits,
        max_attempts: args.attempts,
        lifetime_secs: args.lifetime,
    };
    let issued = backend.issue(
        &args.delivery,
        args.sequence,
        args.time.unwrap_or(now),
        &settings,
    )?;
    let ticket: Value = serde_json::from_str(&issued.ticket.to_json()).unwrap_or(Value::Null);
    Ok(pretty(&json!({
        "delivery_id": issued.ticket.delivery_id(),
        "sequence": issued.ticket.sequence(),
        "key_id": issued.ticket.key_id(),
        "code": issued.code.as_str(),
        "code_grouped": issued.code.grouped(),
        "not_before": issued.ticket.not_before(),
        "expires_at": issued.ticket.expires_at(),
        "false_accept_probability": settings.false_accept_probability(),
        "expected_candidates": settings.expected_candidates(),
        "ticket": ticket,
        "ticket_json": issued.ticket.to_json(),
    })))
}

fn offline_json(o: &OfflineOutcome) -> Value {
    let (name, extra) = match *o {
        OfflineOutcome::AcceptedProvisionally { attempts_used } => (
            "accepted_provisionally",
            json!({ "attempts_used": attempts_used }),
        ),
        OfflineOutcome::Rejected { attempts_left } => {
            ("rejected", json!({ "attempts_left": attempts_left }))
        }
        OfflineOutcome::LockedOut { until } => ("locked_out", json!({ "until": until })),
        OfflineOutcome::Expired { at } => ("expired", json!({ "at": at })),
        OfflineOutcome::NotYetValid { from } => ("not_yet_valid", json!({ "from": from })),
        OfflineOutcome::ClockMovedBackwards { latest_seen } => (
            "clock_moved_backwards",
            json!({ "latest_seen": latest_seen }),
        ),
        OfflineOutcome::Superseded { by_sequence } => {
            ("superseded", json!({ "by_sequence": by_sequence }))
        }
    };
    with_outcome(name, extra, &crate::demo::describe(o))
}

fn online_json(o: &OnlineOutcome) -> Value {
    let (name, extra) = match *o {
        OnlineOutcome::Confirmed { attempts_used } => {
            ("confirmed", json!({ "attempts_used": attempts_used }))
        }
        OnlineOutcome::Rejected { attempts_left } => {
            ("rejected", json!({ "attempts_left": attempts_left }))
        }
        OnlineOutcome::LockedOut { until } => ("locked_out", json!({ "until": until })),
        OnlineOutcome::AlreadyUsed => ("already_used", json!({})),
        OnlineOutcome::Expired { at } => ("expired", json!({ "at": at })),
        OnlineOutcome::NotYetValid { from } => ("not_yet_valid", json!({ "from": from })),
        OnlineOutcome::Superseded { current_sequence } => (
            "superseded",
            json!({ "current_sequence": current_sequence }),
        ),
    };
    with_outcome(name, extra, &crate::demo::describe_online(o))
}

fn with_outcome(name: &str, mut extra: Value, text: &str) -> Value {
    if let Value::Object(map) = &mut extra {
        map.insert("outcome".into(), json!(name));
        map.insert("explanation".into(), json!(text));
    }
    extra
}

pub fn verify(args: VerifyArgs, now: u64) -> Result<String, Error> {
    let text = match args.ticket.strip_prefix('@') {
        Some(path) => read_file(path, "ticket")?,
        None => args.ticket.clone(),
    };
    let time = args.time.unwrap_or(now);
    if args.offline {
        let ticket = Ticket::from_json(text.trim())?;
        let verifier = OfflineVerifier::new(ticket, Arc::new(InMemoryStateStore::new()));
        let outcome = verifier.verify(&args.code, time)?;
        let mut out = offline_json(&outcome);
        if let Value::Object(map) = &mut out {
            map.insert("mode".into(), json!("offline"));
        }
        return Ok(pretty(&out));
    }
    let backend = load_backend(args.keys.as_deref().unwrap_or_default())?;
    let ticket = backend.read_ticket(text.trim())?;
    let current = args.current_sequence.unwrap_or(ticket.sequence());
    let outcome = backend.verify_online(&ticket, &args.code, time, current)?;
    let mut out = online_json(&outcome);
    if let Value::Object(map) = &mut out {
        map.insert("mode".into(), json!("online"));
    }
    Ok(pretty(&out))
}

pub fn keys(command: KeysCommand) -> Result<String, Error> {
    match command {
        KeysCommand::New { id } => Ok(KeySet::generate(&id)?.to_json().to_string()),
        KeysCommand::Device {
            keys,
            courier,
            device,
        } => Ok(load_backend(&keys)?
            .provision_device(&courier, &device)?
            .to_json()
            .to_string()),
    }
}

fn parse_current(item: &str) -> Result<(String, u64), String> {
    let bad = || "write DELIVERY=SEQUENCE, the sequence a whole number".to_string();
    let (delivery, seq) = item.rsplit_once('=').ok_or_else(bad)?;
    Ok((delivery.to_string(), seq.parse().map_err(|_| bad())?))
}

/// One JSON line per receipt line; blank lines are skipped. A line that is
/// not a receipt gets the decision `invalid` with the error kind.
pub fn reconcile(args: ReconcileArgs, now: u64) -> Result<String, Error> {
    let backend = load_backend(&args.keys)?;
    let current: HashMap<String, u64> = args.current.into_iter().collect();
    let text = match &args.input {
        Some(path) => read_file(path, "receipts")?,
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Error::InvalidReceipt {
                    reason: format!("cannot read stdin: {}", e.kind()),
                })?;
            text
        }
    };
    let time = args.time.unwrap_or(now);
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let number = index.saturating_add(1);
        // The receipt's own sequence when no --current names its delivery.
        let result = Receipt::from_json(line).and_then(|receipt| {
            let sequence = current
                .get(receipt.delivery_id())
                .copied()
                .unwrap_or(receipt.sequence());
            backend.reconcile_receipt(&receipt, sequence, time)
        });
        let value = match result {
            Ok(r) => json!({
                "line": number,
                "decision": r.decision.kind(),
                "delivery_id": r.delivery_id,
                "sequence": r.sequence,
                "courier_id": r.courier_id,
                "device_id": r.device_id,
                "explanation": r.explanation,
            }),
            Err(e @ Error::StateStorage { .. }) => return Err(e),
            Err(e) => json!({
                "line": number,
                "decision": "invalid",
                "error": e.kind(),
                "explanation": e.to_string(),
            }),
        };
        out.push(value.to_string());
    }
    Ok(out.join("\n"))
}

fn read_policy_file(path: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::InvalidPolicy {
        field: "(file)".into(),
        reason: format!("cannot read {path}: {}", e.kind()),
    })
}

/// A policy decision as JSON.
pub fn decision_json(decision: &delivery_otp::PolicyDecision) -> Value {
    let mut out = json!({
        "requirement": decision.requirement.kind(),
        "reasons": decision.reasons,
    });
    if let (
        Requirement::Code {
            settings,
            verification,
        },
        Value::Object(map),
    ) = (&decision.requirement, &mut out)
    {
        map.insert(
            "settings".into(),
            json!({
                "format": settings.format.to_string(),
                "allow_short_codes": settings.allow_short_codes,
                "hash_bits": settings.hash_bits,
                "max_attempts": settings.max_attempts,
                "lifetime_secs": settings.lifetime_secs,
            }),
        );
        map.insert(
            "verification".into(),
            json!(match verification {
                VerificationMode::Offline => "offline",
                VerificationMode::Online => "online",
            }),
        );
    }
    out
}

pub fn policy(command: PolicyCommand) -> Result<String, Error> {
    match command {
        PolicyCommand::Defaults => {
            let value: Value =
                serde_json::from_str(&Rules::defaults().to_json()).unwrap_or(Value::Null);
            Ok(pretty(&value))
        }
        PolicyCommand::Check { rules, order } => {
            let rules = match rules {
                Some(path) => Rules::from_json(&read_policy_file(&path)?)?,
                None => Rules::defaults(),
            };
            let text = match order.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path).map_err(|e| Error::InvalidOrder {
                    field: "(file)".into(),
                    reason: format!("cannot read {path}: {}", e.kind()),
                })?,
                None => order,
            };
            let decision = rules.decide(&Order::from_json(&text)?)?;
            Ok(pretty(&decision_json(&decision)))
        }
    }
}
