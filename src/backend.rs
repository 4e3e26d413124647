//! The backend side: issuing codes and tickets, recognising its own tickets,
//! and verifying codes online with attempts counted in a shared store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::code::{derive_code, normalize, Code};
use crate::error::{Error, Result};
use crate::keys::{json_problem, KeySet};
use crate::receipt::{
    check_party_id, DeviceKey, NotDeliveredReason, Receipt, ReceiptOutcome, Verification,
};
use crate::settings::DeliverySettings;
use crate::ticket::{b32, hash_key, ticket_hash, Ticket};

/// Where the backend counts online attempts and keeps what it decided:
/// which entry ended each code, and the first receipt for each ticket. Every
/// backend instance must see the same store (see `RedisStore` behind the
/// `redis` feature); each operation must be atomic. Entries may be forgotten
/// after their `expires_at` (unix seconds).
///
/// Every operation is idempotent, so a call whose answer was lost (a
/// timeout) can be made again and gets the same answer: an attempt is named
/// by an id derived from the entry, and counts once however often it comes.
pub trait AttemptStore: Send + Sync {
    /// Counts the attempt named `attempt` for `scope` unless it is already
    /// counted. Returns its position among the distinct attempts of `scope`
    /// (1 for the first), the same on every call with that id; or `None`
    /// when `limit` distinct attempts are counted and `attempt` is not one
    /// of them (nothing is stored then).
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails; then the attempt may or
    /// may not be counted, and calling again is safe.
    fn record_attempt(
        &self,
        scope: &str,
        attempt: &str,
        limit: u32,
        expires_at: u64,
    ) -> Result<Option<u32>>;

    /// Stores `value` under `key` unless a value is already there. Returns
    /// `None` when this call stored it, or the value stored first.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails; calling again is safe.
    fn remember_first(&self, key: &str, value: &str, expires_at: u64) -> Result<Option<String>>;

    /// The value stored under `key` by [`AttemptStore::remember_first`], if any.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails.
    fn recall(&self, key: &str) -> Result<Option<String>>;
}

#[derive(Debug, Default)]
struct MemoryEntries {
    attempts: HashMap<String, Vec<String>>,
    remembered: HashMap<String, String>,
}

/// A thread-safe [`AttemptStore`] in memory, for one backend process and for
/// tests. It never forgets an entry, and forgets everything when dropped.
#[derive(Debug, Default)]
pub struct InMemoryAttemptStore {
    entries: Mutex<MemoryEntries>,
}

impl InMemoryAttemptStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl AttemptStore for InMemoryAttemptStore {
    fn record_attempt(
        &self,
        scope: &str,
        attempt: &str,
        limit: u32,
        _expires_at: u64,
    ) -> Result<Option<u32>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = entries.attempts.entry(scope.to_string()).or_default();
        let position = |index: usize| u32::try_from(index).ok().and_then(|i| i.checked_add(1));
        if let Some(index) = seen.iter().position(|a| a == attempt) {
            return Ok(position(index));
        }
        if u32::try_from(seen.len()).unwrap_or(u32::MAX) >= limit {
            return Ok(None);
        }
        seen.push(attempt.to_string());
        Ok(position(seen.len().saturating_sub(1)))
    }

    fn remember_first(&self, key: &str, value: &str, _expires_at: u64) -> Result<Option<String>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(first) = entries.remembered.get(key) {
            return Ok(Some(first.clone()));
        }
        entries
            .remembered
            .insert(key.to_string(), value.to_string());
        Ok(None)
    }

    fn recall(&self, key: &str) -> Result<Option<String>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(entries.remembered.get(key).cloned())
    }
}

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
pub enum OnlineOutcome {
    /// The code is right; it is now used and will not be accepted again
    /// (the same request again gets this answer again).
    Confirmed {
        /// Attempts used, this one included.
        attempts_used: u32,
    },
    /// The code is wrong.
    Rejected {
        /// Attempts still allowed.
        attempts_left: u32,
    },
    /// No attempts are left.
    LockedOut {
        /// The code's expiry; a resend issues a new code.
        until: u64,
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
        at: u64,
    },
    /// The code is not valid yet.
    NotYetValid {
        /// When it becomes valid.
        from: u64,
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
    keys: KeySet,
    store: Arc<dyn AttemptStore>,
    receipt_retention: u64,
    device_keys: Arc<Mutex<HashMap<String, Arc<DeviceKey>>>>,
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
struct OnlineRecord {
    /// `confirmed` or `guess`.
    o: String,
    /// The attempt id of the entry (never the entry itself).
    a: String,
    /// Its position among the attempts.
    n: u32,
    /// The courier who sent it.
    c: String,
    /// The device that sent it.
    d: String,
}

/// What the store keeps about the first receipt of a ticket.
#[derive(Debug, Serialize, Deserialize)]
struct ReceiptRecord {
    mac: String,
    decision: Decision,
    explanation: String,
}

fn store_text<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::StateStorage {
        reason: format!("a record could not be written ({})", json_problem(&e)),
    })
}

fn read_record<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::StateStorage {
        reason: format!(
            "the store holds an unreadable record ({})",
            json_problem(&e)
        ),
    })
}

/// The store keys of one delivery's sequence. The sequence is digits and
/// comes first, so no two deliveries share a key.
fn store_key(kind: &str, sequence: u64, delivery_id: &str) -> String {
    format!("{kind}:{sequence}:{delivery_id}")
}

/// `text` as a JSON string, cut to [`MAX_QUOTED_CHARS`]: courier text in an
/// explanation, unmistakably quoted (its own quotes escaped).
pub(crate) fn quoted(text: &str) -> String {
    let cut: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    let mut out = serde_json::to_string(&cut).unwrap_or_else(|_| "\"\"".into());
    if cut.len() < text.len() {
        out.push_str(" (cut)");
    }
    out
}

impl Backend {
    /// A backend with these keys and this attempt store.
    pub fn new(keys: KeySet, store: Arc<dyn AttemptStore>) -> Self {
        Backend {
            keys,
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
            now.checked_add(settings.lifetime_secs)
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
            max_attempts: settings.max_attempts,
            hash_bits: settings.hash_bits,
            hash_key,
            hash: ticket_hash(
                &hash_key,
                delivery_id,
                sequence,
                code.as_str(),
                settings.hash_bits,
            ),
            mac: [0u8; 32],
        };
        ticket.mac = ticket.compute_mac(&self.keys)?;
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
        let ticket = Ticket::from_json(json)?;
        ticket.verify_mac(&self.keys)?;
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
        Ok(b32(mac.get(..16).unwrap_or_default()))
    }

    /// What an earlier request that ended the code means for this one: the
    /// same answer for the same entry from the same device (a retry),
    /// otherwise used or ended.
    fn after_end(record: &OnlineRecord, attempt: &str, device_id: &str) -> OnlineOutcome {
        let same =
            bool::from(record.a.as_bytes().ct_eq(attempt.as_bytes())) && record.d == device_id;
        match (record.o.as_str(), same) {
            ("confirmed", true) => OnlineOutcome::Confirmed {
                attempts_used: record.n,
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
    /// courier or device id; the errors of [`crate::code::normalize`] (an
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
                from: ticket.not_before(),
            });
        }
        if now >= ticket.expires_at() {
            return Ok(OnlineOutcome::Expired {
                at: ticket.expires_at(),
            });
        }
        let normalized = normalize(entered, ticket.format())?;
        let attempt = self.attempt_id(ticket, &normalized)?;
        let (delivery, seq) = (ticket.delivery_id(), ticket.sequence());
        let end_key = store_key("online", seq, delivery);
        if let Some(text) = self.store.recall(&end_key)? {
            return Ok(Self::after_end(&read_record(&text)?, &attempt, device_id));
        }
        let Some(position) = self.store.record_attempt(
            &store_key("attempts", seq, delivery),
            &attempt,
            ticket.max_attempts(),
            ticket.expires_at(),
        )?
        else {
            return Ok(OnlineOutcome::LockedOut {
                until: ticket.expires_at(),
            });
        };
        // The MAC is checked above; derive the code only when it is compared.
        let expected = derive_code(
            self.keys.get(ticket.key_id())?,
            delivery,
            seq,
            ticket.format(),
        )?;
        let right = bool::from(expected.as_str().as_bytes().ct_eq(normalized.as_bytes()));
        if right || ticket.hash_matches(&normalized) {
            let record = OnlineRecord {
                o: if right { "confirmed" } else { "guess" }.into(),
                a: attempt.clone(),
                n: position,
                c: courier_id.into(),
                d: device_id.into(),
            };
            let first =
                self.store
                    .remember_first(&end_key, &store_text(&record)?, ticket.expires_at())?;
            let record = match first {
                Some(text) => read_record(&text)?,
                None => record,
            };
            return Ok(Self::after_end(&record, &attempt, device_id));
        }
        Ok(match ticket.max_attempts().checked_sub(position) {
            Some(left) if left > 0 => OnlineOutcome::Rejected {
                attempts_left: left,
            },
            _ => OnlineOutcome::LockedOut {
                until: ticket.expires_at(),
            },
        })
    }
}

// ---------------------------------------------------------------------------
// Devices and reconciliation

/// How long the backend remembers a reconciled receipt, to recognise it when
/// it comes again: 90 days.
pub const DEFAULT_RECEIPT_RETENTION_SECS: u64 = 90 * 24 * 3600;

/// The backend's judgement of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decision {
    /// Delivered, with the code issued for this ticket.
    Confirmed {
        /// How the device checked it.
        verified: Verification,
    },
    /// The device recorded a delivery with a code that is not the one issued:
    /// a courier who brute-forced the ticket, or a phone that was tampered
    /// with. Treat as not delivered and look into it.
    CodeMismatch,
    /// An online check of this ticket sent a wrong code that matches the
    /// ticket's hash (see [`OnlineOutcome::GuessedFromTicket`]); whatever
    /// the receipt says, look into the courier and device that sent it.
    GuessedFromTicket {
        /// The courier who sent the guess.
        courier_id: String,
        /// The device it came from.
        device_id: String,
    },
    /// The receipt claims something that does not hold against the ticket
    /// as issued or the backend's own records: `kid` or `format` other than
    /// the ticket's, more `attempts` than it allows, a time (`first`,
    /// `decided`) outside its validity or in the backend's future, or `via`
    /// online without the backend's online confirmation for this courier
    /// and device. Treat as not delivered and look into it.
    FalseClaim {
        /// The receipt field that does not hold.
        field: String,
    },
    /// The MAC does not match: the receipt was changed, or another device
    /// or courier made it.
    Tampered,
    /// The receipt names a key id this backend does not have.
    UnknownKey {
        /// The unknown key id.
        key_id: String,
    },
    /// The receipt's courier is not the one the ticket was issued to. It
    /// takes nothing from the assigned courier.
    NotAssigned {
        /// The courier the ticket was issued to.
        assigned_courier_id: String,
    },
    /// A different receipt for the same ticket was reconciled before; the
    /// first one stands.
    Conflicting,
    /// The receipt is for a sequence that is not the delivery's current one
    /// (a resend replaced it, or it was never issued).
    Stale {
        /// The delivery's current sequence.
        current_sequence: u64,
    },
    /// The courier reports the parcel was not handed over.
    NotDelivered {
        /// Why.
        reason: NotDeliveredReason,
    },
}

impl Decision {
    /// The decision's stable snake-case name (`code_mismatch`), for logs,
    /// metrics and the shared test vectors.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Confirmed { .. } => "confirmed",
            Decision::CodeMismatch => "code_mismatch",
            Decision::GuessedFromTicket { .. } => "guessed_from_ticket",
            Decision::FalseClaim { .. } => "false_claim",
            Decision::Tampered => "tampered",
            Decision::UnknownKey { .. } => "unknown_key",
            Decision::NotAssigned { .. } => "not_assigned",
            Decision::Conflicting => "conflicting",
            Decision::Stale { .. } => "stale",
            Decision::NotDelivered { .. } => "not_delivered",
        }
    }
}

/// A reconciled receipt: the decision, and a sentence a support agent can
/// read. The explanation never contains a code; courier text in it is
/// quoted as a JSON string and cut to 120 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// The decision.
    pub decision: Decision,
    /// Why, in plain words.
    pub explanation: String,
    /// True when this very receipt was reconciled before: the decision is
    /// the one given then, and nothing changes.
    pub repeated: bool,
    /// The receipt's delivery id.
    pub delivery_id: String,
    /// The receipt's ticket sequence.
    pub sequence: u64,
    /// The courier the receipt names.
    pub courier_id: String,
    /// The device the receipt names.
    pub device_id: String,
}

fn reason_words(reason: &NotDeliveredReason) -> String {
    match reason {
        NotDeliveredReason::CustomerAbsent => "the customer was not there".into(),
        NotDeliveredReason::CodeNotReceived => "the customer did not receive the code".into(),
        NotDeliveredReason::Refused => "the customer refused the parcel".into(),
        NotDeliveredReason::Damaged => "the parcel is damaged".into(),
        NotDeliveredReason::Other { note } => {
            format!("other, in the courier's words: {}", quoted(note))
        }
    }
}

impl Backend {
    /// The key the app of `courier_id` on `device_id` signs receipts with,
    /// derived from the current master key; hand
    /// [`DeviceKey::to_json`] to the app at login. A courier's new login
    /// on another phone gets another key.
    ///
    /// # Errors
    /// [`Error::InvalidDeviceKey`] for an empty, overlong or unprintable id.
    pub fn provision_device(&self, courier_id: &str, device_id: &str) -> Result<DeviceKey> {
        DeviceKey::derive(self.keys.current(), courier_id, device_id)
    }

    /// The device key of `courier_id` on `device_id` under master key
    /// `key_id`, from the cache or derived and kept (see
    /// [`DEVICE_KEY_CACHE_MAX`]).
    fn device_key_for(
        &self,
        key_id: &str,
        courier_id: &str,
        device_id: &str,
    ) -> Result<Arc<DeviceKey>> {
        // Ids hold no control characters (see `check_key_id` and the party
        // id rules), so a newline keeps the three apart.
        let id = format!("{key_id}\n{courier_id}\n{device_id}");
        let lock = || {
            self.device_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if let Some(key) = lock().get(&id) {
            return Ok(Arc::clone(key));
        }
        let key = Arc::new(DeviceKey::derive(
            self.keys.get(key_id)?,
            courier_id,
            device_id,
        )?);
        let mut cache = lock();
        if cache.len() >= DEVICE_KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(id, Arc::clone(&key));
        Ok(key)
    }

    /// Judges a receipt from a courier's device (its JSON text) against
    /// `ticket`, the delivery's current ticket as this backend issued it, at
    /// backend time `now`.
    ///
    /// In order: unknown key ids, the device MAC, the courier the ticket
    /// was issued to, a stale sequence (none of these takes anything from
    /// the assigned courier); then the judgement: an online guess from the
    /// ticket, claims that do not hold against the ticket and the online
    /// records, not delivered, delivered with the issued code (compared in
    /// constant time) or another one. The first receipt judged for a ticket
    /// stands; the same receipt again gets the same decision with
    /// [`Reconciliation::repeated`] set, and a different one is
    /// [`Decision::Conflicting`].
    ///
    /// # Errors
    /// [`Error::InvalidReceipt`], [`Error::UnsupportedReceiptVersion`] when
    /// the text is not a receipt, or is for another delivery than `ticket`;
    /// [`Error::TicketMacMismatch`], [`Error::UnknownKeyId`] when `ticket`
    /// is not this backend's; [`Error::StateStorage`] when the store fails
    /// (then sending the same receipt again is safe and gets the decision
    /// the store kept, if it kept one); [`Error::Overflow`].
    pub fn reconcile(
        &self,
        receipt_json: &str,
        ticket: &Ticket,
        now: u64,
    ) -> Result<Reconciliation> {
        let (receipt, mac_input) = Receipt::read(receipt_json)?;
        self.reconcile_read(&receipt, &mac_input, ticket, now)
    }

    /// [`Backend::reconcile`] for a receipt already read with
    /// [`Receipt::from_json`] (to look up its delivery's ticket first, say).
    ///
    /// # Errors
    /// As [`Backend::reconcile`].
    pub fn reconcile_receipt(
        &self,
        receipt: &Receipt,
        ticket: &Ticket,
        now: u64,
    ) -> Result<Reconciliation> {
        self.reconcile_read(receipt, &receipt.mac_input(), ticket, now)
    }

    /// Reconciles `receipt`, whose MAC covers `mac_input`.
    fn reconcile_read(
        &self,
        receipt: &Receipt,
        mac_input: &[u8],
        ticket: &Ticket,
        now: u64,
    ) -> Result<Reconciliation> {
        ticket.verify_mac(&self.keys)?;
        let delivery = receipt.delivery_id();
        if delivery != ticket.delivery_id() {
            return Err(Error::InvalidReceipt {
                reason: format!(
                    "the receipt is for delivery {}, and the ticket given for {}",
                    quoted(delivery),
                    quoted(ticket.delivery_id())
                ),
            });
        }
        let seq = receipt.sequence();
        let done = |decision: Decision, explanation: String| Reconciliation {
            decision,
            explanation,
            repeated: false,
            delivery_id: delivery.to_string(),
            sequence: seq,
            courier_id: receipt.courier_id().to_string(),
            device_id: receipt.device_id().to_string(),
        };
        for key_id in [receipt.key_id(), receipt.device_key_id()] {
            if self.keys.get(key_id).is_err() {
                return Ok(done(
                    Decision::UnknownKey {
                        key_id: key_id.to_string(),
                    },
                    format!(
                        "the receipt names key id '{key_id}', which this backend does not have \
                         (retired, or never one of ours)"
                    ),
                ));
            }
        }
        let device_key = self.device_key_for(
            receipt.device_key_id(),
            receipt.courier_id(),
            receipt.device_id(),
        )?;
        if receipt.verify_mac_over(&device_key, mac_input).is_err() {
            return Ok(done(
                Decision::Tampered,
                format!(
                    "the receipt's MAC does not match the key of courier {} on device {}: \
                     it was changed after it was made, or made by another device or courier",
                    quoted(receipt.courier_id()),
                    quoted(receipt.device_id())
                ),
            ));
        }
        if receipt.courier_id() != ticket.courier_id() {
            return Ok(done(
                Decision::NotAssigned {
                    assigned_courier_id: ticket.courier_id().to_string(),
                },
                format!(
                    "courier {} sent a receipt for delivery {} (sequence {seq}), which was given \
                     to courier {}; it changes nothing",
                    quoted(receipt.courier_id()),
                    quoted(delivery),
                    quoted(ticket.courier_id())
                ),
            ));
        }
        let current = ticket.sequence();
        if seq != current {
            let why = if seq < current {
                "a resend or reassignment replaced it"
            } else {
                "that sequence was never issued"
            };
            return Ok(done(
                Decision::Stale {
                    current_sequence: current,
                },
                format!(
                    "the receipt is for sequence {seq} of delivery {}, but the current sequence \
                     is {current} ({why}); it changes nothing",
                    quoted(delivery)
                ),
            ));
        }
        let (decision, explanation) = self.judge(receipt, ticket, now)?;
        let remember_until =
            now.checked_add(self.receipt_retention)
                .ok_or_else(|| Error::Overflow {
                    what: "the receipt retention time".into(),
                })?;
        let mac = receipt.mac_text();
        let record = ReceiptRecord {
            mac: mac.clone(),
            decision,
            explanation,
        };
        let slot = store_key("receipt", seq, delivery);
        let Some(first) =
            self.store
                .remember_first(&slot, &store_text(&record)?, remember_until)?
        else {
            return Ok(done(record.decision, record.explanation));
        };
        let first: ReceiptRecord = read_record(&first)?;
        if bool::from(first.mac.as_bytes().ct_eq(mac.as_bytes())) {
            let mut again = done(first.decision, first.explanation);
            again.repeated = true;
            return Ok(again);
        }
        Ok(done(
            Decision::Conflicting,
            format!(
                "a different receipt for delivery {} (sequence {seq}) was reconciled before \
                 ({}); the first one stands, and two receipts for one ticket need a look",
                quoted(delivery),
                first.decision.kind()
            ),
        ))
    }

    /// The decision on a receipt that is authentic and from the assigned
    /// courier for the current ticket.
    fn judge(&self, receipt: &Receipt, ticket: &Ticket, now: u64) -> Result<(Decision, String)> {
        let delivery = receipt.delivery_id();
        let seq = receipt.sequence();
        let online: Option<OnlineRecord> = self
            .store
            .recall(&store_key("online", seq, delivery))?
            .map(|text| read_record(&text))
            .transpose()?;
        if let Some(record) = online.as_ref().filter(|r| r.o == "guess") {
            return Ok((
                Decision::GuessedFromTicket {
                    courier_id: record.c.clone(),
                    device_id: record.d.clone(),
                },
                format!(
                    "suspected fraud: an online check of delivery {} (sequence {seq}) by courier \
                     {} on device {} sent a wrong code that matches the ticket's hash, which is \
                     what trying codes computed from the ticket sends; the code was ended there. \
                     Treat as not delivered and look into that courier",
                    quoted(delivery),
                    quoted(&record.c),
                    quoted(&record.d)
                ),
            ));
        }
        if let Some((field, why)) = self.false_claim(receipt, ticket, online.as_ref(), now) {
            return Ok((
                Decision::FalseClaim {
                    field: field.into(),
                },
                format!(
                    "suspected fraud: the receipt of courier {} for delivery {} (sequence {seq}) \
                     claims what does not hold: {why}. Treat as not delivered and look into it",
                    quoted(receipt.courier_id()),
                    quoted(delivery)
                ),
            ));
        }
        Ok(match receipt.outcome() {
            ReceiptOutcome::NotDelivered { reason } => (
                Decision::NotDelivered {
                    reason: reason.clone(),
                },
                format!(
                    "not delivered: {} ({} attempts on the device)",
                    reason_words(reason),
                    receipt.attempts()
                ),
            ),
            ReceiptOutcome::Delivered { code, verified } => {
                let expected = derive_code(
                    self.keys.get(ticket.key_id())?,
                    delivery,
                    seq,
                    ticket.format(),
                )?;
                let how = match verified {
                    Verification::Offline => "accepted offline on the device",
                    Verification::Online => "confirmed online",
                };
                if bool::from(expected.as_str().as_bytes().ct_eq(code.as_bytes())) {
                    (
                        Decision::Confirmed {
                            verified: *verified,
                        },
                        format!(
                            "delivered: the code on the receipt is the one issued for delivery \
                             {} (sequence {seq}), {how} after {} attempts",
                            quoted(delivery),
                            receipt.attempts()
                        ),
                    )
                } else {
                    (
                        Decision::CodeMismatch,
                        format!(
                            "suspected fraud: the device recorded delivery {} (sequence {seq}) \
                             as {how}, but the code on the receipt is not the one issued; a code \
                             guessed from the ticket can pass on the phone. Treat as not \
                             delivered and look into courier {}",
                            quoted(delivery),
                            quoted(receipt.courier_id())
                        ),
                    )
                }
            }
        })
    }

    /// The first claim of `receipt` that does not hold against `ticket` and
    /// the backend's online record: the wire field and why.
    fn false_claim(
        &self,
        receipt: &Receipt,
        ticket: &Ticket,
        online: Option<&OnlineRecord>,
        now: u64,
    ) -> Option<(&'static str, String)> {
        let skew = RECEIPT_CLOCK_SKEW_SECS;
        let earliest = ticket.not_before().saturating_sub(skew);
        let latest = now.saturating_add(skew);
        let delivered = matches!(receipt.outcome(), ReceiptOutcome::Delivered { .. });
        if receipt.key_id() != ticket.key_id() {
            return Some(("kid", "a key id other than the ticket's".into()));
        }
        if receipt.format() != ticket.format() {
            return Some((
                "format",
                format!(
                    "a {} code for a {} ticket",
                    receipt.format(),
                    ticket.format()
                ),
            ));
        }
        if receipt.attempts() > ticket.max_attempts() {
            return Some((
                "attempts",
                format!(
                    "{} attempts where the ticket allows {}",
                    receipt.attempts(),
                    ticket.max_attempts()
                ),
            ));
        }
        if let Some(first) = receipt.first_attempt_at() {
            if first < earliest || first > latest {
                return Some((
                    "first",
                    "a first attempt before the ticket was valid or after the backend's clock"
                        .into(),
                ));
            }
        }
        let decided = receipt.decided_at();
        if decided < earliest || decided > latest {
            return Some((
                "decided",
                "a decision before the ticket was valid or after the backend's clock".into(),
            ));
        }
        if delivered && decided >= ticket.expires_at().saturating_add(skew) {
            return Some(("decided", "a delivery after the ticket expired".into()));
        }
        if let ReceiptOutcome::Delivered {
            verified: Verification::Online,
            ..
        } = receipt.outcome()
        {
            let confirmed = online.filter(|r| {
                r.o == "confirmed" && r.c == receipt.courier_id() && r.d == receipt.device_id()
            });
            match confirmed {
                None => return Some((
                    "via",
                    "an online confirmation the backend did not give to this courier and device"
                        .into(),
                )),
                Some(r) if r.n != receipt.attempts() => {
                    return Some((
                        "attempts",
                        format!(
                            "{} attempts where the backend counted {} online",
                            receipt.attempts(),
                            r.n
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        None
    }
}
