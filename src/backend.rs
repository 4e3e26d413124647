//! The backend side: issuing codes and tickets, recognising its own tickets,
//! and verifying codes online with attempts counted in a shared store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rand::rngs::SysRng;
use rand::TryRng;
use subtle::ConstantTimeEq;

use crate::code::{derive_code, normalize, Code};
use crate::error::{Error, Result};
use crate::keys::KeySet;
use crate::settings::DeliverySettings;
use crate::ticket::{ticket_hash, Ticket, HASH_KEY_BYTES};

/// Where the backend counts attempts and marks codes used. Every backend
/// instance must see the same store; both operations must be atomic.
pub trait AttemptStore: Send + Sync {
    /// Counts one attempt for `scope` and returns the number of attempts
    /// so far, this one included.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails.
    fn record_attempt(&self, scope: &str) -> Result<u32>;

    /// Marks `scope` used. Returns true for the first call only.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails.
    fn consume(&self, scope: &str) -> Result<bool>;
}

/// A thread-safe [`AttemptStore`] in memory, for one backend process and for tests.
#[derive(Debug, Default)]
pub struct InMemoryAttemptStore {
    entries: Mutex<HashMap<String, (u32, bool)>>,
}

impl InMemoryAttemptStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl AttemptStore for InMemoryAttemptStore {
    fn record_attempt(&self, scope: &str) -> Result<u32> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(scope.to_string()).or_default();
        entry.0 = entry.0.saturating_add(1);
        Ok(entry.0)
    }

    fn consume(&self, scope: &str) -> Result<bool> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(scope.to_string()).or_default();
        let first = !entry.1;
        entry.1 = true;
        Ok(first)
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
#[derive(Clone)]
pub struct Backend {
    keys: KeySet,
    store: Arc<dyn AttemptStore>,
}

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
        Backend { keys, store }
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
        let attempts = self.store.record_attempt(&scope)?;
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
            return Ok(if self.store.consume(&scope)? {
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
