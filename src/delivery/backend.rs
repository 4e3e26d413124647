//! The backend side: issuing codes and tickets, recognising its own tickets,
//! and verifying codes online with attempts counted in a shared store.

use core::fmt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::delivery::code::{derive_code, normalize, Code};
use crate::delivery::keys::{json_problem, KeySet};
use crate::delivery::settings::DeliverySettings;
use crate::delivery::ticket::{hash_key, ticket_hash, Checked, Ticket};
use crate::error::{Error, Result};
use crate::proof::receipt::{check_party_id, DeviceKey};
use crate::proof::reconcile::{Decision, DEFAULT_RECEIPT_RETENTION_SECS};
use crate::store::attempts::{AttemptStore, OnlineEntry, OnlineStep};
use crate::time::UnixTime;

/// What the backend hands out for one delivery: the code for the customer's
/// message, and the ticket for the courier's device.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The code; send it to the customer only.
    pub code: Code,
    /// The ticket; give it to the courier's device.
    pub ticket: Ticket,
}

/// The result of an online verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
pub enum OnlineOutcome {
    /// The code is right; it is now used and will not be accepted again
    /// (the same request again gets this answer again).
    Confirmed {
        /// Attempts used, this one included.
        attempts_used: i32,
    },
    /// The code is wrong.
    Rejected {
        /// Attempts still allowed.
        attempts_left: i32,
    },
    /// No attempts are left.
    LockedOut {
        /// The code's expiry; a resend issues a new code.
        until: UnixTime,
    },
    /// The right code, but it was already used by another request.
    AlreadyUsed,
    /// A wrong code that matches the ticket's hash: what someone who lists
    /// the codes matching a ticket sends (an honest typo does so once in
    /// 2^t). The code is ended at once, only a resend issues a new one, and
    /// the courier and device that sent it are recorded for reconciliation.
    GuessedFromTicket,
    /// An earlier entry guessed from the ticket ended this code; a resend
    /// issues a new one.
    Ended,
    /// The code has expired.
    Expired {
        /// When it expired.
        at: UnixTime,
    },
    /// The code is not valid yet.
    NotYetValid {
        /// When it becomes valid.
        from: UnixTime,
    },
    /// The courier asking is not the one the ticket was issued to. Nothing
    /// was counted.
    NotAssigned,
}

/// The backend: its keys and its attempt store.
///
/// Clones share the store and the cache of device keys.
#[derive(Clone)]
pub struct Backend {
    /// Shared, never changed in place: clones and `with_store` copy a pointer,
    /// not the key material.
    pub(crate) keys: Arc<KeySet>,
    pub(crate) store: Arc<dyn AttemptStore>,
    pub(crate) receipt_retention: u64,
    pub(crate) device_keys: Arc<Mutex<HashMap<String, Arc<DeviceKey>>>>,
}

/// The most device keys a [`Backend`] keeps between receipts. Each courier's
/// device key is derived once, and its later receipts reuse it, which saves
/// four of the thirteen SHA-256 compressions of a reconciliation. Past this
/// many the cache starts again from empty. The keys are wiped when dropped.
pub const DEVICE_KEY_CACHE_MAX: usize = 4096;

/// How far a device's clock may be from the ticket's validity and from the
/// backend's clock before a receipt's times are judged false: 15 minutes.
pub const RECEIPT_CLOCK_SKEW_SECS: u64 = 15 * 60;

const ATTEMPT_ID_DOMAIN: &[u8] = b"delivery-otp/v2/attempt-id";
/// Longest courier text quoted in an explanation, in characters.
const MAX_QUOTED_CHARS: usize = 120;

impl core::fmt::Debug for Backend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Backend")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// What the store keeps about the entry that ended a code online.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct OnlineRecord {
    /// `confirmed` or `guess`.
    pub(crate) o: String,
    /// The attempt id of the entry (never the entry itself).
    pub(crate) a: String,
    /// Its position among the attempts.
    pub(crate) n: u32,
    /// The courier who sent it.
    pub(crate) c: String,
    /// The device that sent it.
    pub(crate) d: String,
}

/// An online record's JSON split where its position `n` goes: the store
/// fills it in (a record is built with `n` 0; its fields before `n` hold no quote).
fn position_template(text: &str) -> Result<(String, String)> {
    const AT: &str = "\"n\":0";
    match text.find(AT) {
        Some(i) => {
            let (before, rest) = text.split_at(i);
            let after = rest.get(AT.len()..).unwrap_or_default();
            Ok((format!("{before}\"n\":"), after.to_string()))
        }
        None => Err(Error::StateStorage {
            reason: "an online record has no position field".into(),
        }),
    }
}

/// What the store keeps about the first receipt of a ticket.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ReceiptRecord {
    pub(crate) mac: String,
    pub(crate) decision: Decision,
    pub(crate) explanation: String,
}

pub(crate) fn store_text<T: Serialize>(value: &T) -> Result<String> {
    let mut out = Vec::with_capacity(128);
    write_json(&mut out, value)?;
    record_text(out)
}

/// `value` as serde_json writes it, after what `out` holds.
fn write_json<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<()> {
    serde_json::to_writer(out, value).map_err(|e| Error::StateStorage {
        reason: format!("a record could not be written ({})", json_problem(&e)),
    })
}

/// A record written as JSON, as text.
fn record_text(out: Vec<u8>) -> Result<String> {
    // Written by serde_json or from UTF-8 texts and ASCII: UTF-8 only.
    String::from_utf8(out).map_err(|_| Error::StateStorage {
        reason: "a record could not be written (not UTF-8)".into(),
    })
}

impl ReceiptRecord {
    /// The record as stored: what serde_json writes for it (the tests hold
    /// the two to the same bytes), put down field by field into room sized
    /// for it: the MAC's base32 needs no escaping, the decision is small,
    /// and the explanation is escaped as serde_json escapes strings.
    pub(crate) fn to_text(&self) -> Result<String> {
        let mut out = Vec::with_capacity(self.explanation.len().saturating_add(160));
        out.extend_from_slice(br#"{"mac":"#);
        json_string(&mut out, &self.mac);
        out.extend_from_slice(br#","decision":"#);
        write_json(&mut out, &self.decision)?;
        out.extend_from_slice(br#","explanation":"#);
        json_string(&mut out, &self.explanation);
        out.push(b'}');
        record_text(out)
    }
}

/// `text` as a JSON string, quotes included, escaped as serde_json escapes
/// strings.
pub(crate) fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing into a vector does not fail.
    let _ = serde_json::to_writer(out, text);
}

pub(crate) fn read_record<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::StateStorage {
        reason: format!(
            "the store holds an unreadable record ({})",
            json_problem(&e)
        ),
    })
}

/// The store keys of one delivery's sequence. The sequence is digits and
/// comes first, so no two deliveries share a key.
pub(crate) fn store_key(kind: &str, sequence: u64, delivery_id: &str) -> String {
    // `kind:sequence:delivery`, put together without the formatting
    // machinery.
    let digits = crate::decimal::Decimal::new(sequence);
    let digits = digits.as_str();
    let mut key = String::with_capacity(
        kind.len()
            .saturating_add(digits.len())
            .saturating_add(delivery_id.len())
            .saturating_add(2),
    );
    key.push_str(kind);
    key.push(':');
    key.push_str(digits);
    key.push(':');
    key.push_str(delivery_id);
    key
}

/// `text` as a JSON string, cut to [`MAX_QUOTED_CHARS`]: courier text in an
/// explanation, unmistakably quoted (its own quotes escaped). Written
/// straight into the explanation when the text needs no escape and no cut,
/// as ids do.
pub(crate) fn quoted(text: &str) -> Quoted<'_> {
    Quoted(text)
}

/// See [`quoted`].
pub(crate) struct Quoted<'a>(&'a str);

impl Quoted<'_> {
    /// Puts the quoted text after what `out` holds, as `Display` writes it
    /// (without the formatting machinery when nothing needs escaping).
    pub(crate) fn push_onto(&self, out: &mut String) {
        let text = self.0;
        if text.len() <= MAX_QUOTED_CHARS
            && !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
        {
            out.push('"');
            out.push_str(text);
            out.push('"');
        } else {
            use fmt::Write as _;
            // Writing into a string does not fail.
            let _ = write!(out, "{self}");
        }
    }
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let plain = text.len() <= MAX_QUOTED_CHARS
            && !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        if plain {
            // At most MAX_QUOTED_CHARS bytes, so no more characters: no cut.
            return write!(f, "\"{text}\"");
        }
        let cut: String = text.chars().take(MAX_QUOTED_CHARS).collect();
        let json = serde_json::to_string(&cut).unwrap_or_else(|_| "\"\"".into());
        f.write_str(&json)?;
        if cut.len() < text.len() {
            f.write_str(" (cut)")?;
        }
        Ok(())
    }
}

impl Backend {
    /// A backend with these keys and this attempt store.
    pub fn new(keys: KeySet, store: Arc<dyn AttemptStore>) -> Self {
        Backend {
            keys: Arc::new(keys),
            store,
            receipt_retention: DEFAULT_RECEIPT_RETENTION_SECS,
            device_keys: Arc::default(),
        }
    }

    /// Changes how long reconciled receipts are remembered (default 90
    /// days). A receipt that comes again after that is judged afresh.
    pub fn with_receipt_retention(mut self, seconds: u64) -> Self {
        self.receipt_retention = seconds;
        self
    }

    /// This backend (its keys, retention and cache of device keys) over
    /// another attempt store: a service that runs each request in one
    /// database transaction gives the core a store bound to it, so what the
    /// core records and what the service records commit together.
    pub fn with_store(&self, store: Arc<dyn AttemptStore>) -> Self {
        Backend {
            keys: Arc::clone(&self.keys),
            store,
            receipt_retention: self.receipt_retention,
            device_keys: Arc::clone(&self.device_keys),
        }
    }

    /// This backend (its store, retention and cache of device keys) with
    /// another key set: after a rotation, a key set changed elsewhere.
    pub fn with_keys(&self, keys: KeySet) -> Self {
        Backend {
            keys: Arc::new(keys),
            store: Arc::clone(&self.store),
            receipt_retention: self.receipt_retention,
            device_keys: Arc::clone(&self.device_keys),
        }
    }

    /// The keys.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Issues the code and the ticket for a delivery's `sequence` (0 for the
    /// first code, one more for each resend), given to `courier_id`, valid
    /// from `now` for `settings.lifetime_secs`, with the current key.
    ///
    /// Issuing again for the same delivery, sequence and format gives the
    /// same code and the same ticket hash: a ticket handed out again, or to
    /// another courier, teaches nothing more than the first. To take a
    /// delivery from a courier, use [`Backend::reassign`], which raises the
    /// sequence so the old ticket and code stop counting.
    ///
    /// # Errors
    /// The settings errors of [`DeliverySettings::check`];
    /// [`Error::InvalidDeliveryId`]; [`Error::InvalidDeviceKey`] for a bad
    /// courier id; [`Error::Overflow`] when the expiry passes `u64::MAX`.
    pub fn issue(
        &self,
        delivery_id: &str,
        sequence: u64,
        courier_id: &str,
        now: u64,
        settings: &DeliverySettings,
    ) -> Result<Issued> {
        settings.check()?;
        check_party_id(courier_id, "courier")
            .map_err(|reason| Error::InvalidDeviceKey { reason })?;
        let key = self.keys.current();
        let code = derive_code(key, delivery_id, sequence, settings.format)?;
        let expires_at =
            now.checked_add(settings.lifetime_secs())
                .ok_or_else(|| Error::Overflow {
                    what: "the expiry time".into(),
                })?;
        let hash_key = hash_key(key, delivery_id, sequence, settings.format);
        let mut ticket = Ticket {
            delivery_id: delivery_id.to_string(),
            key_id: key.id().to_string(),
            sequence,
            courier_id: courier_id.to_string(),
            format: settings.format,
            not_before: now,
            expires_at,
            max_attempts: settings.attempts(),
            hash_bits: settings.hash_width(),
            hash_key,
            hash: ticket_hash(
                &hash_key,
                delivery_id,
                sequence,
                code.as_str(),
                settings.hash_width(),
            ),
            mac: [0u8; 32],
            checked: Checked(None),
        };
        ticket.mac = ticket.mac_with(key);
        ticket.checked = Checked(Some(key.serial()));
        Ok(Issued { code, ticket })
    }

    /// A resend: the next sequence after `previous`'s, for the same
    /// courier, so the previous code stops verifying everywhere.
    ///
    /// # Errors
    /// As [`Backend::issue`]; [`Error::Overflow`] at the last sequence.
    pub fn resend(
        &self,
        previous: &Ticket,
        now: u64,
        settings: &DeliverySettings,
    ) -> Result<Issued> {
        self.reassign(previous, previous.courier_id(), now, settings)
    }

    /// Gives the delivery to `courier_id`: the next sequence after
    /// `previous`'s, so the earlier courier's ticket and code stop counting.
    ///
    /// # Errors
    /// As [`Backend::issue`]; [`Error::Overflow`] at the last sequence.
    pub fn reassign(
        &self,
        previous: &Ticket,
        courier_id: &str,
        now: u64,
        settings: &DeliverySettings,
    ) -> Result<Issued> {
        let sequence = previous
            .sequence()
            .checked_add(1)
            .filter(|next| *next <= crate::delivery::code::MAX_SEQUENCE)
            .ok_or_else(|| Error::Overflow {
                what: "the sequence number".into(),
            })?;
        self.issue(previous.delivery_id(), sequence, courier_id, now, settings)
    }

    /// The code for a delivery's sequence with the named key, derived again
    /// (the backend stores only the sequence): for the customer's message.
    ///
    /// # Errors
    /// [`Error::UnknownKeyId`], [`Error::InvalidDeliveryId`],
    /// [`Error::InvalidCodeFormat`].
    pub fn derive_code(
        &self,
        key_id: &str,
        delivery_id: &str,
        sequence: u64,
        format: crate::CodeFormat,
    ) -> Result<Code> {
        derive_code(self.keys.get(key_id)?, delivery_id, sequence, format)
    }

    /// The code a ticket stands for, derived again from the key it names.
    ///
    /// # Errors
    /// [`Error::UnknownKeyId`]; the errors of [`Ticket::verify_mac`].
    pub fn code_for(&self, ticket: &Ticket) -> Result<Code> {
        ticket.verify_mac(&self.keys)?;
        derive_code(
            self.keys.get(ticket.key_id())?,
            ticket.delivery_id(),
            ticket.sequence(),
            ticket.format(),
        )
    }

    /// Reads a ticket and checks it is one of this backend's, unchanged.
    ///
    /// # Errors
    /// The errors of [`Ticket::from_json`] and [`Ticket::verify_mac`].
    pub fn read_ticket(&self, json: &str) -> Result<Ticket> {
        let mut ticket = Ticket::from_json(json)?;
        ticket.checked = Checked(Some(ticket.mac_key_serial(&self.keys)?));
        Ok(ticket)
    }

    /// The id under which an entry is counted: a keyed hash of the
    /// normalized entry, so the store never holds an entered code and the
    /// same entry counts once.
    fn attempt_id(&self, ticket: &Ticket, normalized: &str) -> Result<String> {
        let mac = self.keys.get(ticket.key_id())?.mac().sign(
            ATTEMPT_ID_DOMAIN,
            &[
                ticket.delivery_id().as_bytes(),
                &ticket.sequence().to_be_bytes(),
                normalized.as_bytes(),
            ],
        );
        Ok(crate::b32::encode(mac.get(..16).unwrap_or_default()))
    }

    /// What an earlier request that ended the code means for this one: the
    /// same answer for the same entry from the same device (a retry),
    /// otherwise used or ended.
    fn after_end(record: &OnlineRecord, attempt: &str, device_id: &str) -> OnlineOutcome {
        let same =
            bool::from(record.a.as_bytes().ct_eq(attempt.as_bytes())) && record.d == device_id;
        match (record.o.as_str(), same) {
            ("confirmed", true) => OnlineOutcome::Confirmed {
                attempts_used: crate::error::count(record.n),
            },
            ("confirmed", false) => OnlineOutcome::AlreadyUsed,
            (_, true) => OnlineOutcome::GuessedFromTicket,
            (_, false) => OnlineOutcome::Ended,
        }
    }

    /// Verifies a code typed for `ticket`, the delivery's current ticket as
    /// the backend issued it, sent by `courier_id` from `device_id` at unix
    /// time `now`: exactly, in constant time, with every attempt counted in
    /// the store before the comparison, so parallel requests cannot exceed
    /// the limit.
    ///
    /// - Only the courier the ticket names may check it ([`OnlineOutcome::NotAssigned`]).
    /// - The right code is consumed once. The first wrong code that matches
    ///   the ticket's hash ends the code ([`OnlineOutcome::GuessedFromTicket`]),
    ///   so whoever lists a ticket's candidates gets one pick, right once in
    ///   about `space / 2^t`; the store records who sent it.
    /// - Idempotent: the same request again (after a timeout, say) gets the
    ///   same outcome and counts no further attempt.
    ///
    /// # Errors
    /// [`Error::TicketMacMismatch`], [`Error::UnknownKeyId`] for a ticket
    /// that is not this backend's; [`Error::InvalidDeviceKey`] for a bad
    /// courier or device id; the errors of [`crate::delivery::code::normalize`] (an
    /// unreadable entry is not counted); [`Error::StateStorage`] (then
    /// sending the same request again is safe).
    pub fn verify_online(
        &self,
        ticket: &Ticket,
        entered: &str,
        courier_id: &str,
        device_id: &str,
        now: u64,
    ) -> Result<OnlineOutcome> {
        ticket.verify_mac(&self.keys)?;
        let bad_id = |reason| Error::InvalidDeviceKey { reason };
        check_party_id(courier_id, "courier").map_err(bad_id)?;
        check_party_id(device_id, "device").map_err(bad_id)?;
        if courier_id != ticket.courier_id() {
            return Ok(OnlineOutcome::NotAssigned);
        }
        if now < ticket.not_before() {
            return Ok(OnlineOutcome::NotYetValid {
                from: UnixTime::from_secs(ticket.not_before()),
            });
        }
        if now >= ticket.expires_at() {
            return Ok(OnlineOutcome::Expired {
                at: UnixTime::from_secs(ticket.expires_at()),
            });
        }
        let normalized = normalize(entered, ticket.format())?;
        let attempt = self.attempt_id(ticket, &normalized)?;
        let (delivery, seq) = (ticket.delivery_id(), ticket.sequence());
        // The MAC is checked above. The comparison comes before the store,
        // so that the store counts the attempt and, for an entry that ends
        // the code, keeps it in one atomic step (one round trip on Redis).
        let expected = derive_code(
            self.keys.get(ticket.key_id())?,
            delivery,
            seq,
            ticket.format(),
        )?;
        let right = bool::from(expected.as_str().as_bytes().ct_eq(normalized.as_bytes()));
        let ending = (right || ticket.hash_matches(&normalized)).then(|| OnlineRecord {
            o: if right { "confirmed" } else { "guess" }.into(),
            a: attempt.clone(),
            n: 0,
            c: courier_id.into(),
            d: device_id.into(),
        });
        let template = match &ending {
            Some(record) => Some(position_template(&store_text(record)?)?),
            None => None,
        };
        let end_key = store_key("online", seq, delivery);
        let scope = store_key("attempts", seq, delivery);
        let step = self.store.check_online(&OnlineEntry {
            end_key: &end_key,
            scope: &scope,
            attempt: &attempt,
            limit: ticket.max_attempts(),
            expires_at: ticket.expires_at(),
            ends: template.as_ref().map(|(b, a)| (b.as_str(), a.as_str())),
        })?;
        let position = match (step, ending) {
            (OnlineStep::AlreadyEnded(text), _) => {
                return Ok(Self::after_end(&read_record(&text)?, &attempt, device_id));
            }
            (OnlineStep::Locked, _) => {
                return Ok(OnlineOutcome::LockedOut {
                    until: UnixTime::from_secs(ticket.expires_at()),
                });
            }
            (OnlineStep::Ended(position), Some(mut record)) => {
                record.n = position;
                return Ok(Self::after_end(&record, &attempt, device_id));
            }
            (OnlineStep::Counted(position) | OnlineStep::Ended(position), _) => position,
        };
        Ok(match ticket.max_attempts().checked_sub(position) {
            Some(left) if left > 0 => OnlineOutcome::Rejected {
                attempts_left: crate::error::count(left),
            },
            _ => OnlineOutcome::LockedOut {
                until: UnixTime::from_secs(ticket.expires_at()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys_name_the_kind_the_sequence_and_the_delivery() {
        assert_eq!(store_key("receipt", 0, "D-1"), "receipt:0:D-1");
        assert_eq!(store_key("online", 907, "B:2"), "online:907:B:2");
        assert_eq!(
            store_key("receipt", u64::MAX, "x"),
            format!("receipt:{}:x", u64::MAX)
        );
        for n in [1, 9, 10, 99, 100, 12_345, 1 << 40] {
            assert_eq!(store_key("k", n, "d"), format!("k:{n}:d"));
        }
    }

    /// A receipt record is stored as serde_json writes it, and reads back:
    /// every decision, explanations with quotes, backslashes, control and
    /// wide characters.
    #[test]
    fn a_receipt_record_is_written_as_serde_writes_it() {
        use crate::proof::receipt::{NotDeliveredReason, Verification};
        use crate::proof::reconcile::Decision;
        let decisions = [
            Decision::Confirmed {
                verified: Verification::Offline,
            },
            Decision::Confirmed {
                verified: Verification::Online,
            },
            Decision::CodeMismatch,
            Decision::GuessedFromTicket {
                courier_id: "c\"1".into(),
                device_id: "d-ü".into(),
            },
            Decision::FalseClaim {
                field: "decided".into(),
            },
            Decision::Tampered,
            Decision::UnknownKey {
                key_id: "k\\9".into(),
            },
            Decision::NotAssigned {
                assigned_courier_id: "courier-2".into(),
            },
            Decision::Conflicting,
            Decision::Stale {
                current_sequence: i64::MAX,
            },
            Decision::NotDelivered {
                reason: NotDeliveredReason::CustomerAbsent,
            },
            Decision::NotDelivered {
                reason: NotDeliveredReason::Other {
                    note: "gate\nlocked \"B\"".into(),
                },
            },
        ];
        for decision in decisions {
            for explanation in [
                "",
                "plain words",
                "delivered: \"PKG-1\" \\ tab\t, bell\u{7}, 配送 🚚",
            ] {
                let record = ReceiptRecord {
                    mac: "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSA".into(),
                    decision: decision.clone(),
                    explanation: explanation.into(),
                };
                let text = record.to_text().unwrap();
                assert_eq!(text, serde_json::to_string(&record).unwrap());
                let back: ReceiptRecord = read_record(&text).unwrap();
                assert_eq!(
                    (back.decision, back.explanation.as_str()),
                    (decision.clone(), explanation)
                );
            }
        }
    }

    /// Courier text in an explanation reads as one JSON string, its own
    /// quotes escaped, and is cut at 120 characters, saying so.
    #[test]
    fn quoted_text_is_one_json_string_cut_at_120_characters() {
        let q = |text: &str| {
            let shown = quoted(text).to_string();
            let mut pushed = String::from("x");
            quoted(text).push_onto(&mut pushed);
            assert_eq!(pushed, format!("x{shown}"));
            shown
        };
        assert_eq!(q("courier-17"), r#""courier-17""#);
        assert_eq!(q(""), r#""""#);
        assert_eq!(q(r#"say "yes" \ no"#), r#""say \"yes\" \\ no""#);
        assert_eq!(q("a\nb\u{1}"), r#""a\nb\u0001""#);
        let exact = "x".repeat(120);
        assert_eq!(q(&exact), format!("\"{exact}\""));
        let long = "y".repeat(121);
        assert_eq!(q(&long), format!("\"{}\" (cut)", "y".repeat(120)));
        // Characters, not bytes: 100 two-byte characters are not cut, 121 are.
        let wide = "\u{e9}".repeat(100);
        assert_eq!(q(&wide), format!("\"{wide}\""));
        let wider = "\u{e9}".repeat(121);
        assert_eq!(q(&wider), format!("\"{}\" (cut)", "\u{e9}".repeat(120)));
    }
}
