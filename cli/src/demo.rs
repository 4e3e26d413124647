//! `delivery-otp demo`: a delivery handover, or a courier's two-factor
//! enrolment, end to end.

use std::fmt::Write;
use std::sync::Arc;

use delivery_otp::Handover;
use delivery_otp::{
    mask_phone, Backend, DeliveryMethod, Error, InMemoryAttemptStore, InMemoryStateStore, KeySet,
    KeyUri, Location, MasterKey, MessageValues, OfflineOutcome, OfflineVerifier, OnlineOutcome,
    Order, PolicyDecision, ReceiptDetails, Requirement, Rules, Secret, StateStore, Templates,
    Ticket, Window,
};
use zeroize::Zeroizing;

/// The demo's built-in backend key (never use fixed keys in production).
const DEMO_KEY: [u8; 32] = *b"delivery-otp demo key, not real!";

/// A delivery handover at unix time `now`: issue, a wrong code, the right
/// code typed with a full-width digit, the receipt and its reconciliation,
/// a resend, and a courier who brute-forces a ticket and is caught.
pub fn handover(now: u64) -> Result<String, Error> {
    let mut out = String::new();
    let mut say = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    let backend = Backend::new(
        KeySet::new(MasterKey::from_bytes("demo-2026", &DEMO_KEY)?),
        Arc::new(InMemoryAttemptStore::new()),
    );
    say("A delivery handover, on built-in demo keys".into());
    say(String::new());
    let rules = Rules::defaults();
    say("0. the risk policy (default rules) looks at the orders".into());
    let small = Order {
        value_minor: 1250,
        currency: "GBP".into(),
        method: DeliveryMethod::Doorstep,
        categories: vec!["books".into()],
        region_risk: 10,
        customer_preference: None,
        first_delivery_to_address: false,
        not_received_claims: 0,
    };
    let decision = rules.decide(&small)?;
    say(format!(
        "   PKG-2026-000122, 12.50 GBP of books to the doorstep: {} ({})",
        decision.requirement.kind(),
        reasons(&decision)
    ));
    let order = Order {
        value_minor: 14999,
        method: DeliveryMethod::HandToCustomer,
        ..small
    };
    let decision = rules.decide(&order)?;
    say(format!(
        "   PKG-2026-000123, 149.99 GBP of books into the customer's hands: {} ({})",
        decision.requirement.kind(),
        reasons(&decision)
    ));
    let Requirement::Code { settings, .. } = decision.requirement else {
        return Err(Error::InvalidPolicy {
            field: "standard".into(),
            reason: "the default rules should ask for a code here".into(),
        });
    };
    say(format!(
        "   settings: {} codes, {}-bit offline hash (a wrong code passes 1 time in {:.0}; about {:.0} candidates for a brute-forcer), {} attempts, valid {} h",
        settings.format,
        settings.hash_bits,
        1.0 / settings.false_accept_probability(),
        settings.expected_candidates(),
        settings.max_attempts,
        settings.lifetime_secs() / 3600
    ));
    say(String::new());

    let issued = backend.issue("PKG-2026-000123", 0, "courier-17", now, &settings)?;
    let device_key = backend.provision_device("courier-17", "pixel-8-0042")?;
    say(
        "0. at login, the backend gives courier-17's phone its device key for signing receipts"
            .into(),
    );
    say("1. backend issues the code, and the ticket for courier-17's phone".into());
    let templates = Templates::defaults();
    let sms = templates.render_sms(
        "en-GB",
        &MessageValues {
            sender: "AcmeParcels".into(),
            delivery_id: "PKG-2026-000123".into(),
            code: issued.code.as_str().into(),
            expires_at: delivery_otp::UnixTime::from_secs(issued.ticket.expires_at()),
            utc_offset_minutes: 0,
        },
    )?;
    say(format!(
        "   SMS to the customer ({} characters, {} segment): \"{}\"",
        sms.units, sms.segments, sms.text
    ));
    say(format!(
        "   the courier's app shows: code sent to {}; {}",
        mask_phone("+44 7700 900123")?,
        templates.format_hint("en", settings.format)?
    ));
    say(format!(
        "   ticket to the courier's phone (no code in it): {}",
        issued.ticket.to_json()
    ));

    let phone_ticket = Ticket::from_json(&issued.ticket.to_json())?;
    let storage: Arc<dyn StateStore> = Arc::new(InMemoryStateStore::new());
    let phone = OfflineVerifier::new(phone_ticket.clone(), storage.clone());
    let wrong = wrong_code(issued.code.as_str());
    say(String::new());
    say("2. at the door, offline, the courier types what the customer reads out".into());
    say(format!(
        "   typed {wrong:?}: {}",
        describe(&phone.verify(&wrong, now.saturating_add(60))?)
    ));
    let typed = full_width_last(issued.code.as_str());
    let outcome = phone.verify(&typed, now.saturating_add(90))?;
    say(format!(
        "   typed {typed:?} (last digit full-width): {}",
        describe(&outcome)
    ));

    say(String::new());
    say("3. the phone records the handover in a receipt signed with its device key".into());
    let receipt = phone.receipt(
        &device_key,
        Handover::DeliveredOffline {
            code: Zeroizing::new(typed.clone()),
        },
        now.saturating_add(95),
        ReceiptDetails {
            location: Some(Location::from_degrees(51.5074, -0.1278, 12)?),
            photo_sha256: None,
            app_version: "android/3.4.1".into(),
        },
    )?;
    say(format!("   receipt: {}", receipt.to_json().as_str()));
    say("   back online, the backend reconciles it:".into());
    let first = backend.reconcile(&receipt.to_json(), &issued.ticket, now.saturating_add(120))?;
    say(format!(
        "   {}: {}",
        first.decision.kind(),
        first.explanation
    ));
    let again = backend.reconcile(&receipt.to_json(), &issued.ticket, now.saturating_add(130))?;
    say(format!(
        "   the same receipt sent again (a retry): {}{}",
        again.decision.kind(),
        if again.repeated {
            ", as before; nothing changes"
        } else {
            ""
        }
    ));

    say(String::new());
    say("4. another parcel: the customer asks for a new code (resend)".into());
    let second = backend.issue("PKG-2026-000124", 0, "courier-17", now, &settings)?;
    let resent = backend.resend(&second.ticket, now.saturating_add(300), &settings)?;
    say(format!(
        "   sequence {} replaces sequence {}",
        resent.ticket.sequence(),
        second.ticket.sequence()
    ));
    let old = backend.verify_online(
        &resent.ticket,
        second.code.as_str(),
        "courier-17",
        "pixel-8-0042",
        now.saturating_add(310),
    )?;
    say(format!(
        "   the first code, online: {}",
        describe_online(&old)
    ));
    let new_phone = OfflineVerifier::new(resent.ticket.clone(), storage.clone());
    say(format!(
        "   the new code on the phone: {}",
        describe(&new_phone.verify(resent.code.as_str(), now.saturating_add(320))?)
    ));
    let old_phone = OfflineVerifier::new(second.ticket.clone(), storage);
    say(format!(
        "   the first code on the phone: {}",
        describe(&old_phone.verify(second.code.as_str(), now.saturating_add(330))?)
    ));

    say(String::new());
    say("5. a dishonest courier brute-forces a ticket instead of meeting the customer".into());
    let third = backend.issue("PKG-2026-000125", 0, "courier-17", now, &settings)?;
    let (candidate, tried) = first_passing_code(&third.ticket, now.saturating_add(60))?;
    say(format!(
        "   trying codes against a copy of the ticket, {tried} tries find one that passes: {candidate} \
         (one of about {:.0} that do; the odds it is the customer's are 1 in that)",
        settings.expected_candidates()
    ));
    let fraud_phone =
        OfflineVerifier::new(third.ticket.clone(), Arc::new(InMemoryStateStore::new()));
    say(format!(
        "   typed on the phone: {}",
        describe(&fraud_phone.verify(&candidate, now.saturating_add(70))?)
    ));
    let fraud_receipt = fraud_phone.receipt(
        &device_key,
        Handover::DeliveredOffline {
            code: Zeroizing::new(candidate),
        },
        now.saturating_add(75),
        ReceiptDetails {
            app_version: "android/3.4.1".into(),
            ..ReceiptDetails::default()
        },
    )?;
    let flagged = backend.reconcile(
        &fraud_receipt.to_json(),
        &third.ticket,
        now.saturating_add(200),
    )?;
    say(format!(
        "   the backend reconciles the receipt: {}: {}",
        flagged.decision.kind(),
        flagged.explanation
    ));
    let fourth = backend.issue("PKG-2026-000126", 0, "courier-17", now, &settings)?;
    let (pick, _) = first_passing_code(&fourth.ticket, now.saturating_add(60))?;
    let probe = backend.verify_online(
        &fourth.ticket,
        &pick,
        "courier-17",
        "pixel-8-0042",
        now.saturating_add(80),
    )?;
    say(format!(
        "   on the next parcel the courier sends a candidate online instead: {}",
        describe_online(&probe)
    ));
    Ok(out.trim_end().to_string())
}

/// What a brute-forcing courier does: tries codes on scratch storage until
/// one passes the ticket's hash. Returns it and the number of tries.
fn first_passing_code(ticket: &Ticket, at: u64) -> Result<(String, u32), Error> {
    let mut tries = 0u32;
    for x in 0..1_000_000u32 {
        let candidate = format!("{x:06}");
        let scratch = OfflineVerifier::new(ticket.clone(), Arc::new(InMemoryStateStore::new()));
        tries = tries.saturating_add(1);
        if let OfflineOutcome::AcceptedProvisionally { .. } = scratch.verify(&candidate, at)? {
            return Ok((candidate, tries));
        }
    }
    Err(Error::InvalidTicket {
        reason: "no code passes this ticket".into(),
    })
}

fn reasons(decision: &PolicyDecision) -> String {
    decision
        .reasons
        .iter()
        .map(|r| r.detail.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn wrong_code(code: &str) -> String {
    // Change the first digit: a wrong code (it may still pass the 12-bit
    // hash 1 time in 4096, which the backend then catches).
    let mut chars: Vec<char> = code.chars().collect();
    if let Some(first) = chars.first_mut() {
        *first = if *first == '9' {
            '1'
        } else {
            char::from_u32(u32::from(*first).saturating_add(1)).unwrap_or('1')
        };
    }
    chars.into_iter().collect()
}

fn full_width_last(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    if let Some(last) = chars.last_mut() {
        if let Some(fw) = last
            .to_digit(10)
            .and_then(|d| char::from_u32(0xFF10_u32.saturating_add(d)))
        {
            *last = fw;
        }
    }
    chars.into_iter().collect()
}

pub(crate) fn describe(o: &OfflineOutcome) -> String {
    match o {
        OfflineOutcome::AcceptedProvisionally { attempts_used } => format!(
            "accepted provisionally after {attempts_used} attempt(s); the backend confirms it later"
        ),
        OfflineOutcome::Rejected { attempts_left } => {
            format!("rejected, {attempts_left} attempt(s) left")
        }
        OfflineOutcome::LockedOut { until } => format!("locked out until {until}"),
        OfflineOutcome::Expired { at } => format!("expired at {at}"),
        OfflineOutcome::NotYetValid { from } => format!("not valid before {from}"),
        OfflineOutcome::ClockMovedBackwards { latest_seen } => {
            format!("refused: the clock went back (latest time seen {latest_seen})")
        }
        OfflineOutcome::Superseded { by_sequence } => {
            format!("refused: replaced by the resend with sequence {by_sequence}")
        }
    }
}

pub(crate) fn describe_online(o: &OnlineOutcome) -> String {
    match o {
        OnlineOutcome::Confirmed { attempts_used } => {
            format!("confirmed after {attempts_used} attempt(s): delivered")
        }
        OnlineOutcome::Rejected { attempts_left } => {
            format!("rejected, {attempts_left} attempt(s) left")
        }
        OnlineOutcome::LockedOut { until } => format!("locked out until {until}"),
        OnlineOutcome::AlreadyUsed => "refused: the code was already used".into(),
        OnlineOutcome::Expired { at } => format!("expired at {at}"),
        OnlineOutcome::NotYetValid { from } => format!("not valid before {from}"),
        OnlineOutcome::GuessedFromTicket => {
            "refused: a wrong code that matches the ticket's hash, \
            as trying codes from the ticket gives; the code is ended and the courier recorded"
                .into()
        }
        OnlineOutcome::Ended => "refused: a guess from the ticket ended this code; resend".into(),
        OnlineOutcome::NotAssigned => "refused: the delivery was given to another courier".into(),
    }
}

/// A courier's two-factor enrolment at unix time `now`.
pub fn login(now: u64) -> Result<String, Error> {
    let mut out = String::new();
    let mut line = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    line("Courier two-factor enrolment (RFC 6238 TOTP), on built-in defaults".into());
    line(String::new());

    let secret = Secret::generate()?;
    line(format!(
        "1. backend: new secret of {} bits from the OS random generator",
        secret.len().saturating_mul(8)
    ));
    let key = KeyUri::new_totp(
        secret,
        Some("Acme Deliveries".into()),
        "courier-17@acme.example".into(),
    );
    let uri = key.to_uri()?;
    line(format!(
        "2. backend: key URI for the QR code:\n   {}",
        uri.as_str()
    ));

    let phone = KeyUri::parse(&uri)?.totp()?;
    let code = phone.generate(now)?;
    line(format!(
        "3. courier's authenticator app at unix time {now}: {}",
        group(code.as_str())
    ));

    let server = key.totp()?;
    let first = server.verify(code.as_str(), now, Window::RECOMMENDED, None)?;
    let Some(first) = first else {
        line("4. backend: code refused (this should not happen)".into());
        return Ok(out);
    };
    line(format!(
        "4. backend: code accepted at time step {} (clock drift {} steps); step stored",
        first.step, first.drift
    ));
    let replay = server.verify(code.as_str(), now, Window::RECOMMENDED, Some(first.step))?;
    line(format!(
        "5. backend: the same code again: {}",
        if replay.is_none() {
            "refused, its step was already used"
        } else {
            "ACCEPTED (replay not caught!)"
        }
    ));
    let wrong = if code.as_str() == "000000" {
        "111111"
    } else {
        "000000"
    };
    let refused = server
        .verify(wrong, now, Window::RECOMMENDED, Some(first.step))?
        .is_none();
    line(format!(
        "6. backend: a wrong code: {}",
        if refused { "refused" } else { "ACCEPTED" }
    ));
    Ok(out.trim_end().to_string())
}

/// "482913" -> "482 913", for reading aloud.
fn group(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    chars
        .chunks(3)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}
