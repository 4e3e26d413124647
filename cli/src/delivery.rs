//! `delivery-otp issue`, `verify` and `keys`: delivery codes for operations staff.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
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
    /// The courier the delivery is given to (only their receipts count).
    #[arg(long)]
    courier: String,
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
    /// The code as typed (it may start with `-`).
    #[arg(long, allow_hyphen_values = true)]
    code: String,
    /// Verification time, unix seconds (default: now).
    #[arg(long)]
    time: Option<u64>,
    /// Key set file, for online verification.
    #[arg(long, required_unless_present = "offline")]
    keys: Option<String>,
    /// The device asking (online; default: `cli`). The courier is the
    /// ticket's: only they may check it.
    #[arg(long, default_value = "cli")]
    device: String,
    /// Verify as the courier's device does, without keys (one attempt, fresh state).
    #[arg(long, conflicts_with_all = ["keys"])]
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
    /// Receipts file, one receipt per line (default: stdin). Read a line
    /// at a time; a line over 64 KiB is reported as invalid.
    #[arg(long)]
    input: Option<String>,
    /// The tickets as issued, one JSON per line (at most 64 KiB each, 16
    /// MiB in all); the last line for a delivery is its current ticket.
    #[arg(long)]
    tickets: String,
    /// Reconciliation time, unix seconds (default: now).
    #[arg(long)]
    time: Option<u64>,
}

/// Most bytes read from a key set or rules file.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Most bytes read from a ticket or order given as `@FILE`.
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024;

/// A path as an error message shows it: quoted, with newlines and other
/// control characters escaped (so the message stays one line), and cut.
pub fn shown_path(path: &str) -> String {
    const MAX_CHARS: usize = 120;
    let quoted = format!("{path:?}");
    if quoted.chars().count() <= MAX_CHARS {
        return quoted;
    }
    let mut cut: String = quoted.chars().take(MAX_CHARS).collect();
    cut.push_str("…\"");
    cut
}

/// Reads the UTF-8 file at `path`, at most `max` bytes of it; `error`
/// makes the error of the file's kind from a reason. `/dev/zero`, a FIFO
/// that never ends or a huge file stops at the limit.
fn read_limited(
    path: &str,
    what: &str,
    max: u64,
    error: fn(String) -> Error,
) -> Result<String, Error> {
    let file = std::fs::File::open(path).map_err(|e| {
        error(format!(
            "cannot read the {what} file {}: {}",
            shown_path(path),
            e.kind()
        ))
    })?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| {
            error(format!(
                "cannot read the {what} file {}: {}",
                shown_path(path),
                e.kind()
            ))
        })?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > max) {
        return Err(error(format!(
            "the {what} file {} is over {} KiB",
            shown_path(path),
            max / 1024
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| error(format!("the {what} file {} is not UTF-8", shown_path(path))))
}

fn key_set_error(reason: String) -> Error {
    Error::InvalidKeySet { reason }
}

fn ticket_error(reason: String) -> Error {
    Error::InvalidTicket { reason }
}

fn order_error(reason: String) -> Error {
    Error::InvalidOrder {
        field: "(file)".into(),
        reason,
    }
}

fn policy_error(reason: String) -> Error {
    Error::InvalidPolicy {
        field: "(file)".into(),
        reason,
    }
}

fn load_backend(path: &str) -> Result<Backend, Error> {
    let keys = KeySet::from_json(&read_limited(
        path,
        "key set",
        MAX_CONFIG_BYTES,
        key_set_error,
    )?)?;
    Ok(Backend::new(keys, Arc::new(InMemoryAttemptStore::new())))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

pub fn issue(args: IssueArgs, now: u64) -> Result<String, Error> {
    let backend = load_backend(&args.keys)?;
    let small = |n: u32, what: &str| {
        i32::try_from(n).map_err(|_| Error::InvalidNumber {
            what: what.into(),
            reason: format!("{n} is too large"),
        })
    };
    let settings = DeliverySettings {
        format: args.format.parse::<CodeFormat>()?,
        allow_short_codes: args.allow_short_codes,
        hash_bits: small(args.hash_bits, "hash bits")?,
        max_attempts: small(args.attempts, "attempts")?,
        lifetime: std::time::Duration::from_secs(args.lifetime),
    };
    let issued = backend.issue(
        &args.delivery,
        args.sequence,
        &args.courier,
        args.time.unwrap_or(now),
        &settings,
    )?;
    let ticket: Value = serde_json::from_str(&issued.ticket.to_json()).unwrap_or(Value::Null);
    Ok(pretty(&json!({
        "delivery_id": issued.ticket.delivery_id(),
        "sequence": issued.ticket.sequence(),
        "key_id": issued.ticket.key_id(),
        "courier_id": issued.ticket.courier_id(),
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
        OnlineOutcome::GuessedFromTicket => ("guessed_from_ticket", json!({})),
        OnlineOutcome::Ended => ("ended", json!({})),
        OnlineOutcome::NotAssigned => ("not_assigned", json!({})),
        OnlineOutcome::Expired { at } => ("expired", json!({ "at": at })),
        OnlineOutcome::NotYetValid { from } => ("not_yet_valid", json!({ "from": from })),
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
        Some(path) => read_limited(path, "ticket", MAX_DOCUMENT_BYTES, ticket_error)?,
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
    let courier = ticket.courier_id().to_string();
    let outcome = backend.verify_online(&ticket, &args.code, &courier, &args.device, time)?;
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

/// Longest line `reconcile` reads from the tickets or receipts.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most bytes `reconcile` reads from the tickets file.
pub const MAX_TICKETS_BYTES: u64 = 16 * 1024 * 1024;

/// Reads one line of at most [`MAX_LINE_BYTES`] into `line` (without its
/// end), holding no more than that in memory. Returns `None` at the end,
/// `Some(false)` for a line that was too long (the rest of it is skipped),
/// or not UTF-8.
fn read_bounded_line(input: &mut impl BufRead, line: &mut String) -> std::io::Result<Option<bool>> {
    line.clear();
    let mut bytes = Vec::new();
    let mut too_long = false;
    loop {
        let (done, used) = {
            let buffer = input.fill_buf()?;
            if buffer.is_empty() {
                if bytes.is_empty() && !too_long {
                    return Ok(None);
                }
                (true, 0)
            } else {
                let end = buffer.iter().position(|&b| b == b'\n');
                let chunk = buffer
                    .get(..end.unwrap_or(buffer.len()))
                    .unwrap_or_default();
                if !too_long && bytes.len().saturating_add(chunk.len()) <= MAX_LINE_BYTES {
                    bytes.extend_from_slice(chunk);
                } else {
                    too_long = true;
                    bytes.clear();
                }
                (
                    end.is_some(),
                    end.map_or(buffer.len(), |e| e.saturating_add(1)),
                )
            }
        };
        input.consume(used);
        if done {
            break;
        }
    }
    if too_long {
        return Ok(Some(false));
    }
    match String::from_utf8(bytes) {
        Ok(text) => {
            *line = text;
            Ok(Some(true))
        }
        Err(_) => Ok(Some(false)),
    }
}

fn read_error(what: &str, e: &std::io::Error) -> Error {
    Error::InvalidReceipt {
        reason: format!("cannot read the {what}: {}", e.kind()),
    }
}

fn ticket_read_error(e: &std::io::Error) -> Error {
    Error::InvalidTicket {
        reason: format!("cannot read the tickets file: {}", e.kind()),
    }
}

/// The current ticket of each delivery, from a file of ticket lines.
fn read_tickets(backend: &Backend, path: &str) -> Result<HashMap<String, Ticket>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::InvalidTicket {
        reason: format!(
            "cannot read the tickets file {}: {}",
            shown_path(path),
            e.kind()
        ),
    })?;
    let mut input = BufReader::new(file.take(MAX_TICKETS_BYTES));
    let mut tickets = HashMap::new();
    let mut line = String::new();
    let mut number = 0usize;
    while let Some(ok) =
        read_bounded_line(&mut input, &mut line).map_err(|e| ticket_read_error(&e))?
    {
        number = number.saturating_add(1);
        if !ok {
            return Err(Error::InvalidTicket {
                reason: format!("line {number} of the tickets file is over 64 KiB or not UTF-8"),
            });
        }
        if line.trim().is_empty() {
            continue;
        }
        let ticket = backend
            .read_ticket(line.trim())
            .map_err(|e| Error::InvalidTicket {
                reason: format!("line {number} of the tickets file: {e}"),
            })?;
        tickets.insert(ticket.delivery_id().to_string(), ticket);
    }
    Ok(tickets)
}

/// Writes one JSON line per receipt line to `out` as it goes (flushed line
/// by line), in constant
/// memory; blank lines are skipped. A line that is not a receipt, is over
/// 64 KiB, or names a delivery with no ticket gets the decision `invalid`
/// with the error kind.
///
/// # Errors
/// Unreadable keys or tickets; [`Error::StateStorage`]; a write error.
pub fn reconcile(args: ReconcileArgs, now: u64, out: &mut impl Write) -> Result<(), Error> {
    let backend = load_backend(&args.keys)?;
    let tickets = read_tickets(&backend, &args.tickets)?;
    let input: Box<dyn Read> = match &args.input {
        Some(path) => Box::new(
            std::fs::File::open(path).map_err(|e| Error::InvalidReceipt {
                reason: format!(
                    "cannot read the receipts file {}: {}",
                    shown_path(path),
                    e.kind()
                ),
            })?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let mut input = BufReader::new(input);
    let time = args.time.unwrap_or(now);
    let mut line = String::new();
    let mut number = 0usize;
    while let Some(ok) =
        read_bounded_line(&mut input, &mut line).map_err(|e| read_error("receipts", &e))?
    {
        number = number.saturating_add(1);
        if ok && line.trim().is_empty() {
            continue;
        }
        let result = if ok {
            Receipt::from_json(line.trim()).and_then(|receipt| {
                let ticket =
                    tickets
                        .get(receipt.delivery_id())
                        .ok_or_else(|| Error::InvalidReceipt {
                            reason: "no ticket was issued for its delivery".into(),
                        })?;
                backend.reconcile_receipt(&receipt, ticket, time)
            })
        } else {
            Err(Error::InvalidReceipt {
                reason: "the line is over 64 KiB or not UTF-8".into(),
            })
        };
        let value = match result {
            Ok(r) => json!({
                "line": number,
                "decision": r.decision.kind(),
                "repeated": r.repeated,
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
        // Each decision goes out as soon as it is made.
        writeln!(out, "{value}")
            .and_then(|()| out.flush())
            .map_err(|e| read_error("output", &e))?;
    }
    Ok(())
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
        map.insert("settings".into(), json!(settings));
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
                Some(path) => Rules::from_json(&read_limited(
                    &path,
                    "rules",
                    MAX_CONFIG_BYTES,
                    policy_error,
                )?)?,
                None => Rules::defaults(),
            };
            let text = match order.strip_prefix('@') {
                Some(path) => read_limited(path, "order", MAX_DOCUMENT_BYTES, order_error)?,
                None => order,
            };
            let decision = rules.decide(&Order::from_json(&text)?)?;
            Ok(pretty(&decision_json(&decision)))
        }
    }
}
