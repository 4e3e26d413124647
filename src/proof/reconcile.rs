//! Reconciliation: the backend's judgement of a receipt against the ticket
//! it issued and what it recorded online, kept once per ticket so a receipt
//! sent again gets the same decision.

use std::sync::{Arc, PoisonError};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::decimal::Decimal;
#[cfg(doc)]
use crate::delivery::backend::OnlineOutcome;
use crate::delivery::backend::{
    quoted, read_record, store_key, Backend, OnlineRecord, ReceiptRecord, DEVICE_KEY_CACHE_MAX,
    RECEIPT_CLOCK_SKEW_SECS,
};
use crate::delivery::code::derive_code;
use crate::delivery::ticket::Ticket;
use crate::error::{Error, Result};
use crate::proof::receipt::{DeviceKey, NotDeliveredReason, Receipt, ReceiptOutcome, Verification};
use crate::store::attempts::Unless;

/// How long the backend remembers a reconciled receipt, to recognise it when
/// it comes again: 90 days.
pub const DEFAULT_RECEIPT_RETENTION_SECS: u64 = 90 * 24 * 3600;

/// The backend's judgement of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
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
        current_sequence: i64,
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
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
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
    pub sequence: i64,
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
    pub(crate) fn device_key_for(
        &self,
        key_id: &str,
        courier_id: &str,
        device_id: &str,
    ) -> Result<Arc<DeviceKey>> {
        // Ids hold no control characters (see `check_key_id` and the party
        // id rules), so a newline keeps the three apart. Put together on the
        // stack to look up (a key id has at most 32 bytes, a courier or
        // device id 64), and made a string only to keep a new key.
        let mut buffer = [0u8; 192];
        let mut len = 0usize;
        for part in [key_id, "\n", courier_id, "\n", device_id] {
            let end = len.saturating_add(part.len());
            if let Some(slot) = buffer.get_mut(len..end) {
                slot.copy_from_slice(part.as_bytes());
            }
            len = end;
        }
        let joined = buffer.get(..len).and_then(|b| core::str::from_utf8(b).ok());
        let lock = || {
            self.device_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if let Some(key) = joined.and_then(|id| lock().get(id).map(Arc::clone)) {
            return Ok(key);
        }
        let id = format!("{key_id}\n{courier_id}\n{device_id}");
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

    /// Reconciles `receipt`, whose MAC covers `mac_input`: the checks that
    /// need nothing from the store, the online record, the judgement, the
    /// decision kept.
    fn reconcile_read(
        &self,
        receipt: &Receipt,
        mac_input: &[u8],
        ticket: &Ticket,
        now: u64,
    ) -> Result<Reconciliation> {
        if let Some(done) = self.precheck(receipt, mac_input, ticket)? {
            return Ok(done);
        }
        let online_key = store_key("online", receipt.sequence(), receipt.delivery_id());
        let checked_online = matches!(
            receipt.outcome(),
            ReceiptOutcome::Delivered {
                verified: Verification::Online,
                ..
            }
        );
        if !checked_online {
            // Most receipts had no online check: judged as such, and kept in
            // the same step unless an online record turns up (one round trip
            // on Redis). If one does, judged again with it.
            let pending = self.pending(receipt, ticket, now, None)?;
            match self.store.remember_first_unless(
                &online_key,
                &pending.slot,
                &pending.text,
                pending.until,
            )? {
                Unless::Remembered(first) => return conclude(receipt, pending, first),
                Unless::Found(online) => return self.keep(receipt, ticket, now, Some(&online)),
            }
        }
        let online = self.store.recall(&online_key)?;
        self.keep(receipt, ticket, now, online.as_deref())
    }

    /// Judges a receipt with what the online checks recorded, and keeps the
    /// decision unless one was kept first.
    fn keep(
        &self,
        receipt: &Receipt,
        ticket: &Ticket,
        now: u64,
        online: Option<&str>,
    ) -> Result<Reconciliation> {
        let pending = self.pending(receipt, ticket, now, online)?;
        let first = self
            .store
            .remember_first(&pending.slot, &pending.text, pending.until)?;
        conclude(receipt, pending, first)
    }

    /// Reconciles many receipts, each against its delivery's current ticket,
    /// as [`Backend::reconcile`] does one by one, with the same decisions and
    /// errors (in the same order), but asking the store twice in all: once
    /// for the online records, once to keep the decisions. On Redis that is
    /// two round trips for the whole batch instead of two per receipt. A
    /// store failure fails every receipt that reached the store (sending the
    /// batch again is safe).
    pub fn reconcile_many(
        &self,
        batch: &[(&str, &Ticket)],
        now: u64,
    ) -> Vec<Result<Reconciliation>> {
        if let [(json, ticket)] = batch {
            // One receipt: its own path is one round trip, not two.
            return vec![self.reconcile(json, ticket, now)];
        }
        let mut results: Vec<Option<Result<Reconciliation>>> = Vec::new();
        let mut waiting: Vec<(usize, Receipt, &Ticket)> = Vec::new();
        for (i, (json, ticket)) in batch.iter().enumerate() {
            let checked = Receipt::read(json).and_then(|(receipt, mac_input)| {
                Ok((self.precheck(&receipt, &mac_input, ticket)?, receipt))
            });
            results.push(match checked {
                Err(e) => Some(Err(e)),
                Ok((Some(done), _)) => Some(Ok(done)),
                Ok((None, receipt)) => {
                    waiting.push((i, receipt, ticket));
                    None
                }
            });
        }
        let fail = |results: &mut Vec<Option<Result<Reconciliation>>>, i: usize, e: Error| {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(Err(e));
            }
        };
        let online_keys: Vec<String> = waiting
            .iter()
            .map(|(_, r, _)| store_key("online", r.sequence(), r.delivery_id()))
            .collect();
        let keys: Vec<&str> = online_keys.iter().map(String::as_str).collect();
        let online = match self.store.recall_many(&keys) {
            Ok(online) => online,
            Err(e) => {
                for (i, _, _) in &waiting {
                    fail(&mut results, *i, e.clone());
                }
                Vec::new()
            }
        };
        let mut pendings: Vec<(usize, &Receipt, Pending)> = Vec::new();
        for ((i, receipt, ticket), online) in waiting.iter().zip(online) {
            match self.pending(receipt, ticket, now, online.as_deref()) {
                Ok(p) => pendings.push((*i, receipt, p)),
                Err(e) => fail(&mut results, *i, e),
            }
        }
        let items: Vec<(&str, &str, u64)> = pendings
            .iter()
            .map(|(_, _, p)| (p.slot.as_str(), p.text.as_str(), p.until))
            .collect();
        match self.store.remember_first_many(&items) {
            Ok(firsts) => {
                for ((i, receipt, pending), first) in pendings.into_iter().zip(firsts) {
                    if let Some(slot) = results.get_mut(i) {
                        *slot = Some(conclude(receipt, pending, first));
                    }
                }
            }
            Err(e) => {
                for (i, _, _) in &pendings {
                    fail(&mut results, *i, e.clone());
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::StateStorage {
                        reason: "the store gave fewer answers than receipts".into(),
                    })
                })
            })
            .collect()
    }

    /// The checks that need nothing from the store: the ticket is ours and
    /// the receipt's, the keys are known, the MAC holds, the courier is the
    /// assigned one, the sequence is current. A decision here ends it.
    fn precheck(
        &self,
        receipt: &Receipt,
        mac_input: &[u8],
        ticket: &Ticket,
    ) -> Result<Option<Reconciliation>> {
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
        let done = |decision: Decision, explanation: String| made(receipt, decision, explanation);
        for key_id in [receipt.key_id(), receipt.device_key_id()] {
            if self.keys.get(key_id).is_err() {
                return Ok(Some(done(
                    Decision::UnknownKey {
                        key_id: key_id.to_string(),
                    },
                    format!(
                        "the receipt names key id '{key_id}', which this backend does not have \
                         (retired, or never one of ours)"
                    ),
                )));
            }
        }
        let device_key = self.device_key_for(
            receipt.device_key_id(),
            receipt.courier_id(),
            receipt.device_id(),
        )?;
        if receipt.verify_mac_over(&device_key, mac_input).is_err() {
            return Ok(Some(done(
                Decision::Tampered,
                format!(
                    "the receipt's MAC does not match the key of courier {} on device {}: \
                     it was changed after it was made, or made by another device or courier",
                    quoted(receipt.courier_id()),
                    quoted(receipt.device_id())
                ),
            )));
        }
        if receipt.courier_id() != ticket.courier_id() {
            return Ok(Some(done(
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
            )));
        }
        let current = ticket.sequence();
        if seq != current {
            let why = if seq < current {
                "a resend or reassignment replaced it"
            } else {
                "that sequence was never issued"
            };
            return Ok(Some(done(
                Decision::Stale {
                    current_sequence: crate::error::int(current),
                },
                format!(
                    "the receipt is for sequence {seq} of delivery {}, but the current sequence \
                     is {current} ({why}); it changes nothing",
                    quoted(delivery)
                ),
            )));
        }
        Ok(None)
    }

    /// The decision on a receipt that passed [`Self::precheck`], given the
    /// online record of its ticket, ready to be kept.
    fn pending(
        &self,
        receipt: &Receipt,
        ticket: &Ticket,
        now: u64,
        online: Option<&str>,
    ) -> Result<Pending> {
        let online: Option<OnlineRecord> = online.map(read_record).transpose()?;
        let (decision, explanation) = self.judge(receipt, ticket, now, online.as_ref())?;
        let until = now
            .checked_add(self.receipt_retention)
            .ok_or_else(|| Error::Overflow {
                what: "the receipt retention time".into(),
            })?;
        let record = ReceiptRecord {
            mac: receipt.mac_text(),
            decision,
            explanation,
        };
        Ok(Pending {
            slot: store_key("receipt", receipt.sequence(), receipt.delivery_id()),
            text: record.to_text()?,
            record,
            until,
        })
    }

    /// The decision on a receipt that is authentic and from the assigned
    /// courier for the current ticket.
    fn judge(
        &self,
        receipt: &Receipt,
        ticket: &Ticket,
        now: u64,
        online: Option<&OnlineRecord>,
    ) -> Result<(Decision, String)> {
        let delivery = receipt.delivery_id();
        let seq = receipt.sequence();
        if let Some(record) = online.filter(|r| r.o == "guess") {
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
        if let Some((field, why)) = self.false_claim(receipt, ticket, online, now) {
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
                        confirmed_words(delivery, seq, how, receipt.attempts()),
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

/// The explanation of a confirmation: "delivered: the code on the receipt
/// is the one issued for delivery "D-1" (sequence 0), accepted offline on
/// the device after 1 attempts". Nearly every receipt gets it, so it is put
/// together piece by piece rather than through `format!`.
fn confirmed_words(delivery: &str, seq: u64, how: &str, attempts: u32) -> String {
    let mut text = String::with_capacity(delivery.len().saturating_add(144));
    text.push_str("delivered: the code on the receipt is the one issued for delivery ");
    quoted(delivery).push_onto(&mut text);
    text.push_str(" (sequence ");
    text.push_str(Decimal::new(seq).as_str());
    text.push_str("), ");
    text.push_str(how);
    text.push_str(" after ");
    text.push_str(Decimal::new(u64::from(attempts)).as_str());
    text.push_str(" attempts");
    text
}

/// A judged receipt on its way to the store.
struct Pending {
    /// Where its ticket's first decision is kept.
    slot: String,
    /// The record as stored.
    text: String,
    record: ReceiptRecord,
    /// When the store may forget it.
    until: u64,
}

/// A fresh (not repeated) reconciliation of `receipt`.
fn made(receipt: &Receipt, decision: Decision, explanation: String) -> Reconciliation {
    Reconciliation {
        decision,
        explanation,
        repeated: false,
        delivery_id: receipt.delivery_id().to_string(),
        sequence: crate::error::int(receipt.sequence()),
        courier_id: receipt.courier_id().to_string(),
        device_id: receipt.device_id().to_string(),
    }
}

/// The reconciliation, given what the slot held first (`None`: this one).
fn conclude(receipt: &Receipt, pending: Pending, first: Option<String>) -> Result<Reconciliation> {
    let Some(first) = first else {
        return Ok(made(
            receipt,
            pending.record.decision,
            pending.record.explanation,
        ));
    };
    let first: ReceiptRecord = read_record(&first)?;
    if bool::from(first.mac.as_bytes().ct_eq(pending.record.mac.as_bytes())) {
        let mut again = made(receipt, first.decision, first.explanation);
        again.repeated = true;
        return Ok(again);
    }
    Ok(made(
        receipt,
        Decision::Conflicting,
        format!(
            "a different receipt for delivery {} (sequence {}) was reconciled before \
             ({}); the first one stands, and two receipts for one ticket need a look",
            quoted(receipt.delivery_id()),
            receipt.sequence(),
            first.decision.kind()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_is_explained_in_the_same_words_for_every_delivery() {
        for (delivery, seq, attempts) in [
            ("D-1", 0, 1),
            ("配送/\"7\"", u64::MAX, u32::MAX),
            (&*"x".repeat(128), 907, 5),
        ] {
            for how in ["accepted offline on the device", "confirmed online"] {
                assert_eq!(
                    confirmed_words(delivery, seq, how, attempts),
                    format!(
                        "delivered: the code on the receipt is the one issued for delivery \
                         {} (sequence {seq}), {how} after {attempts} attempts",
                        quoted(delivery)
                    )
                );
            }
        }
    }
}
