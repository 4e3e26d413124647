//! The backend side: issuing codes and tickets, recognising its own tickets,
//! and verifying codes online with attempts counted in a shared store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use rand::rngs::SysRng;
use rand::TryRng;
use subtle::ConstantTimeEq;

use crate::code::{derive_code, normalize, Code};
use crate::error::{Error, Result};
use crate::keys::KeySet;
use crate::receipt::{DeviceKey, NotDeliveredReason, Receipt, ReceiptOutcome, Verification};
use crate::settings::DeliverySettings;
use crate::ticket::{ticket_hash, Ticket, HASH_KEY_BYTES};

/// Where the backend counts attempts, marks codes used and remembers
/// reconciled receipts. Every backend instance must see the same store (see
/// `RedisStore` behind the `redis` feature); each operation must be atomic.
/// Entries may be forgotten after their `expires_at` (unix seconds).
pub trait AttemptStore: Send + Sync {
    /// Counts one attempt for `scope` and returns the number of attempts
    /// so far, this one included.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails; then nothing was counted,
    /// or the count is unknown and the caller must not retry blindly.
    fn record_attempt(&self, scope: &str, expires_at: u64) -> Result<u32>;

    /// Marks `scope` used. Returns true for the first call only.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails.
    fn consume(&self, scope: &str, expires_at: u64) -> Result<bool>;

    /// Stores `value` under `key` unless a value is already there. Returns
    /// `None` when this call stored it, or the value stored first.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails.
    fn remember_first(&self, key: &str, value: &str, expires_at: u64) -> Result<Option<String>>;
}

#[derive(Debug, Default)]
struct MemoryEntries {
    attempts: HashMap<String, u32>,
    consumed: HashSet<String>,
    remembered: HashMap<String, String>,
}

/// A thread-safe [`AttemptStore`] in memory, for one backend process and for
/// tests. It never forgets an entry.
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
    fn record_attempt(&self, scope: &str, _expires_at: u64) -> Result<u32> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let count = entries.attempts.entry(scope.to_string()).or_default();
        *count = count.saturating_add(1);
        Ok(*count)
    }

    fn consume(&self, scope: &str, _expires_at: u64) -> Result<bool> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(entries.consumed.insert(scope.to_string()))
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
    /// The code is right; it is now used and will not be accepted again.
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
    /// The right code, but it was already used.
    AlreadyUsed,
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
    /// A resend replaced this code.
    Superseded {
        /// The current sequence.
        current_sequence: u64,
    },
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

impl core::fmt::Debug for Backend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Backend")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
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
    /// first code, one more for each resend), valid from `now` for
    /// `settings.lifetime_secs`, with the current key.
    ///
    /// # Errors
    /// The settings errors of [`DeliverySettings::check`];
    /// [`Error::InvalidDeliveryId`]; [`Error::Overflow`] when the expiry
    /// passes `u64::MAX`; [`Error::RandomUnavailable`].
    pub fn issue(
        &self,
        delivery_id: &str,
        sequence: u64,
        now: u64,
        settings: &DeliverySettings,
    ) -> Result<Issued> {
        let mut hash_key = [0u8; HASH_KEY_BYTES];
        SysRng
            .try_fill_bytes(&mut hash_key)
            .map_err(|_| Error::RandomUnavailable)?;
        self.issue_with_hash_key(delivery_id, sequence, now, settings, hash_key)
    }

    /// [`Backend::issue`] with a chosen ticket hash key instead of a random
    /// one: for reproducible test vectors only. In production a predictable
    /// hash key costs nothing by itself, but use [`Backend::issue`].
    ///
    /// # Errors
    /// As [`Backend::issue`].
    pub fn issue_with_hash_key(
        &self,
        delivery_id: &str,
        sequence: u64,
        now: u64,
        settings: &DeliverySettings,
        hash_key: [u8; HASH_KEY_BYTES],
    ) -> Result<Issued> {
        settings.check()?;
        let key = self.keys.current();
        let code = derive_code(key, delivery_id, sequence, settings.format)?;
        let expires_at =
            now.checked_add(settings.lifetime_secs)
                .ok_or_else(|| Error::Overflow {
                    what: "the expiry time".into(),
                })?;
        let mut ticket = Ticket {
            delivery_id: delivery_id.to_string(),
            key_id: key.id().to_string(),
            sequence,
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

    /// A resend: the next sequence after `previous`'s, so the previous code
    /// stops verifying everywhere.
    ///
    /// # Errors
    /// As [`Backend::issue`]; [`Error::Overflow`] at the last sequence.
    pub fn resend(
        &self,
        previous: &Ticket,
        now: u64,
        settings: &DeliverySettings,
    ) -> Result<Issued> {
        let sequence = previous
            .sequence()
            .checked_add(1)
            .ok_or_else(|| Error::Overflow {
                what: "the sequence number".into(),
            })?;
        self.issue(previous.delivery_id(), sequence, now, settings)
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

    /// Verifies a typed code online, exactly and in constant time, for the
    /// delivery's ticket (MAC-checked) while `current_sequence` is the
    /// delivery's latest. Every attempt is counted in the store before the
    /// comparison, so parallel requests cannot exceed the limit, and a right
    /// code is consumed once.
    ///
    /// # Errors
    /// [`Error::TicketMacMismatch`], [`Error::UnknownKeyId`]; the errors of
    /// [`crate::code::normalize`] (an unreadable entry is not counted as an
    /// attempt); [`Error::StateStorage`].
    pub fn verify_online(
        &self,
        ticket: &Ticket,
        entered: &str,
        now: u64,
        current_sequence: u64,
    ) -> Result<OnlineOutcome> {
        ticket.verify_mac(&self.keys)?;
        if ticket.sequence() < current_sequence {
            return Ok(OnlineOutcome::Superseded { current_sequence });
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
        let scope = format!(
            "{}:{}:{}",
            ticket.key_id(),
            ticket.sequence(),
            ticket.delivery_id()
        );
        let attempts = self.store.record_attempt(&scope, ticket.expires_at())?;
        let max = ticket.max_attempts();
        if attempts > max {
            return Ok(OnlineOutcome::LockedOut {
                until: ticket.expires_at(),
            });
        }
        // The MAC is checked above; derive the code only when it is compared.
        let expected = derive_code(
            self.keys.get(ticket.key_id())?,
            ticket.delivery_id(),
            ticket.sequence(),
            ticket.format(),
        )?;
        let matched = bool::from(expected.as_str().as_bytes().ct_eq(normalized.as_bytes()));
        if matched {
            return Ok(if self.store.consume(&scope, ticket.expires_at())? {
                OnlineOutcome::Confirmed {
                    attempts_used: attempts,
                }
            } else {
                OnlineOutcome::AlreadyUsed
            });
        }
        Ok(match max.checked_sub(attempts) {
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The MAC does not match: the receipt was changed, or another device
    /// or courier made it.
    Tampered,
    /// The receipt names a key id this backend does not have.
    UnknownKey {
        /// The unknown key id.
        key_id: String,
    },
    /// This very receipt was reconciled before; nothing changes.
    Replayed,
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
            Decision::Tampered => "tampered",
            Decision::UnknownKey { .. } => "unknown_key",
            Decision::Replayed => "replayed",
            Decision::Conflicting => "conflicting",
            Decision::Stale { .. } => "stale",
            Decision::NotDelivered { .. } => "not_delivered",
        }
    }
}

/// A reconciled receipt: the decision, and a sentence a support agent can
/// read. The explanation never contains a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// The decision.
    pub decision: Decision,
    /// Why, in plain words.
    pub explanation: String,
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
        NotDeliveredReason::Other { note } => format!("other: \"{note}\""),
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

    /// Judges a receipt from a courier's device (its JSON text) while the
    /// delivery's current sequence is `current_sequence`, at backend time
    /// `now`. In order: unknown key ids, the device MAC, a receipt seen
    /// before (remembered in the attempt store for the retention time), a
    /// stale sequence, then the outcome: not delivered, or delivered with the
    /// issued code (compared in constant time) or with another one.
    ///
    /// # Errors
    /// [`Error::InvalidReceipt`], [`Error::UnsupportedReceiptVersion`] when
    /// the text is not a receipt; [`Error::StateStorage`] when the store
    /// fails (the receipt is then not recorded as reconciled, and can be
    /// sent again); [`Error::Overflow`].
    pub fn reconcile(
        &self,
        receipt_json: &str,
        current_sequence: u64,
        now: u64,
    ) -> Result<Reconciliation> {
        let (receipt, mac_input) = Receipt::read(receipt_json)?;
        self.reconcile_read(&receipt, &mac_input, current_sequence, now)
    }

    /// [`Backend::reconcile`] for a receipt already read with
    /// [`Receipt::from_json`] (to look up its delivery's current sequence
    /// first, say).
    ///
    /// # Errors
    /// [`Error::StateStorage`], [`Error::Overflow`].
    pub fn reconcile_receipt(
        &self,
        receipt: &Receipt,
        current_sequence: u64,
        now: u64,
    ) -> Result<Reconciliation> {
        self.reconcile_read(receipt, &receipt.mac_input(), current_sequence, now)
    }

    /// Reconciles `receipt`, whose MAC covers `mac_input`.
    fn reconcile_read(
        &self,
        receipt: &Receipt,
        mac_input: &[u8],
        current_sequence: u64,
        now: u64,
    ) -> Result<Reconciliation> {
        let delivery = receipt.delivery_id();
        let seq = receipt.sequence();
        let done = |decision: Decision, explanation: String| Reconciliation {
            decision,
            explanation,
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
                    "the receipt's MAC does not match the key of courier '{}' on device '{}': \
                     it was changed after it was made, or made by another device or courier",
                    receipt.courier_id(),
                    receipt.device_id()
                ),
            ));
        }
        let remember_until =
            now.checked_add(self.receipt_retention)
                .ok_or_else(|| Error::Overflow {
                    what: "the receipt retention time".into(),
                })?;
        let marker = format!("receipt:{}:{seq}:{delivery}", receipt.key_id());
        let mac = receipt.mac_text();
        if let Some(first) = self.store.remember_first(&marker, &mac, remember_until)? {
            return Ok(if first == mac {
                done(
                    Decision::Replayed,
                    format!(
                        "this receipt for delivery '{delivery}' (sequence {seq}) was already \
                         reconciled; nothing changes"
                    ),
                )
            } else {
                done(
                    Decision::Conflicting,
                    format!(
                        "a different receipt for delivery '{delivery}' (sequence {seq}) was \
                         reconciled before; the first one stands, and two receipts for one \
                         ticket need a look"
                    ),
                )
            });
        }
        if seq != current_sequence {
            let why = if seq < current_sequence {
                "a resend replaced it"
            } else {
                "that sequence was never issued"
            };
            return Ok(done(
                Decision::Stale { current_sequence },
                format!(
                    "the receipt is for sequence {seq} of delivery '{delivery}', but the current \
                     sequence is {current_sequence} ({why}); the code it carries does not count"
                ),
            ));
        }
        Ok(match receipt.outcome() {
            ReceiptOutcome::NotDelivered { reason } => done(
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
                    self.keys.get(receipt.key_id())?,
                    delivery,
                    seq,
                    receipt.format(),
                )?;
                let how = match verified {
                    Verification::Offline => "accepted offline on the device",
                    Verification::Online => "confirmed online",
                };
                if bool::from(expected.as_str().as_bytes().ct_eq(code.as_bytes())) {
                    done(
                        Decision::Confirmed {
                            verified: *verified,
                        },
                        format!(
                            "delivered: the code on the receipt is the one issued for delivery \
                             '{delivery}' (sequence {seq}), {how} after {} attempts",
                            receipt.attempts()
                        ),
                    )
                } else {
                    done(
                        Decision::CodeMismatch,
                        format!(
                            "suspected fraud: the device recorded delivery '{delivery}' \
                             (sequence {seq}) as {how}, but the code on the receipt is not the \
                             one issued; a code guessed from the ticket can pass on the phone. \
                             Treat as not delivered and look into courier '{}'",
                            receipt.courier_id()
                        ),
                    )
                }
            }
        })
    }
}
