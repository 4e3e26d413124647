//! `delivery-otp issue`, `verify` and `keys`: delivery codes for operations staff.

use std::sync::Arc;

use clap::{Args, Subcommand};
use delivery_otp::{
    Backend, CodeFormat, DeliverySettings, Error, InMemoryAttemptStore, InMemoryStateStore, KeySet,
    OfflineOutcome, OfflineVerifier, OnlineOutcome, Ticket,
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
    }
}
