//! The courier's device: checking a typed code against a ticket, offline.
//!
//! The device never learns the code. It holds a ticket whose `t`-bit keyed
//! hash a wrong code matches with probability 2^-t, so an acceptance here is
//! *provisional* until the backend confirms it.
//!
//! Attempts, lockout and the latest time seen survive app restarts through a
//! [`StateStore`] the app implements (in Kotlin or Swift, a few lines over
//! `SharedPreferences`, `UserDefaults` or a database). The core saves the
//! state before it reports an outcome, so a crash cannot hide an attempt,
//! and saves it with a compare-and-set, so any number of verifier objects,
//! threads or processes on one store share one count per ticket.
//! A courier who controls the phone can still wipe that storage; the
//! backend's reconciliation is what catches abuse.

use core::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::delivery::code::normalize;
use crate::delivery::keys::json_problem;
use crate::delivery::ticket::Ticket;
use crate::error::{Error, Result};
use crate::proof::receipt::{
    CodeText, DeviceKey, Location, NotDeliveredReason, Receipt, ReceiptDraft, ReceiptOutcome,
    Sha256Digest, Verification,
};
use crate::store::device_state::StateStore;
use crate::time::UnixTime;

/// How far back the clock may seem to jump before the device reports it:
/// five minutes, for network time corrections.
pub const DEFAULT_CLOCK_TOLERANCE_SECS: u64 = 300;
const STATE_VERSION: u32 = 1;
/// How often a verification reads the state again when another verifier
/// changed it in between, before it gives up with [`Error::StateStorage`].
pub const MAX_STATE_RETRIES: u32 = 64;

/// The outcome of an offline verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
pub enum OfflineOutcome {
    /// The code matches the ticket. Provisional: the backend confirms it
    /// from the receipt.
    AcceptedProvisionally {
        /// Attempts used, this one included.
        attempts_used: i32,
    },
    /// The code does not match.
    Rejected {
        /// Attempts still allowed.
        attempts_left: i32,
    },
    /// No attempts are left for this ticket.
    LockedOut {
        /// The ticket's expiry; a resend brings a new ticket.
        until: UnixTime,
    },
    /// The ticket has expired.
    Expired {
        /// When it expired.
        at: UnixTime,
    },
    /// The ticket is not valid yet.
    NotYetValid {
        /// When it becomes valid.
        from: UnixTime,
    },
    /// The device clock is earlier than a time already seen within the
    /// ticket's validity, beyond the tolerance. Nothing was checked or
    /// counted. (Readings after the ticket's expiry are not remembered, so
    /// one far-future reading cannot lock a delivery.)
    ClockMovedBackwards {
        /// The latest time seen.
        latest_seen: UnixTime,
    },
    /// A newer ticket (a resend) for this delivery was already used here.
    Superseded {
        /// The newer sequence.
        by_sequence: i64,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceState {
    v: u32,
    seq: u64,
    attempts: u32,
    latest: u64,
    accepted: bool,
    /// Device time of the first counted attempt (absent in states written
    /// before receipts existed, and before any attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first: Option<u64>,
}

/// The stored state as it applies to a ticket, or the newer sequence that
/// superseded it on this device.
type Applied = core::result::Result<DeviceState, u64>;

/// What happened at the door, as the courier's app tells
/// [`OfflineVerifier::receipt`]: the receipt's outcome and, for a code the
/// backend confirmed online, the attempts it counted (for the others the
/// device's own count goes into the receipt). Printing it leaves the code
/// out.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
pub enum Handover {
    /// Handed over against a code this device accepted offline.
    DeliveredOffline {
        /// The code entered (normalized in the receipt).
        code: CodeText,
    },
    /// Handed over against a code the backend confirmed online.
    DeliveredOnline {
        /// The code entered.
        code: CodeText,
        /// Attempts the backend counted (its `Confirmed` outcome's
        /// `attempts_used`), at least 1.
        attempts_used: i32,
    },
    /// Not handed over.
    NotDelivered {
        /// Why.
        reason: NotDeliveredReason,
    },
}

impl fmt::Debug for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handover::DeliveredOffline { .. } => f
                .debug_struct("DeliveredOffline")
                .field("code", &"[redacted]")
                .finish(),
            Handover::DeliveredOnline { attempts_used, .. } => f
                .debug_struct("DeliveredOnline")
                .field("code", &"[redacted]")
                .field("attempts_used", attempts_used)
                .finish(),
            Handover::NotDelivered { reason } => f
                .debug_struct("NotDelivered")
                .field("reason", reason)
                .finish(),
        }
    }
}

/// Checks typed codes against one ticket. Thread-safe; any number of
/// verifiers for one ticket may share a store (see [`StateStore`]).
pub struct OfflineVerifier {
    ticket: Ticket,
    store: Arc<dyn StateStore>,
    clock_tolerance: u64,
}

impl core::fmt::Debug for OfflineVerifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OfflineVerifier")
            .field("ticket", &self.ticket)
            .field("clock_tolerance", &self.clock_tolerance)
            .finish_non_exhaustive()
    }
}

impl OfflineVerifier {
    /// A verifier for `ticket` keeping its state in `store`.
    pub fn new(ticket: Ticket, store: Arc<dyn StateStore>) -> Self {
        OfflineVerifier {
            ticket,
            store,
            clock_tolerance: DEFAULT_CLOCK_TOLERANCE_SECS,
        }
    }

    /// Changes how far back the clock may seem to jump unreported.
    pub fn with_clock_tolerance(mut self, seconds: u64) -> Self {
        self.clock_tolerance = seconds;
        self
    }

    /// The ticket.
    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    /// The key the state is stored under.
    pub fn state_key(&self) -> String {
        format!("delivery-otp/v1/{}", self.ticket.delivery_id())
    }

    /// The stored state's text, and the state as it applies to this
    /// ticket: `Err(newer sequence)` when a resend's ticket was already used
    /// here, and a fresh count (keeping the latest time seen) when this
    /// ticket is the newer one.
    fn load(&self) -> Result<(Option<String>, Applied)> {
        let sequence = self.ticket.sequence();
        let fresh = |latest| DeviceState {
            v: STATE_VERSION,
            seq: sequence,
            latest,
            ..DeviceState::default()
        };
        let Some(text) = self.store.load(&self.state_key())? else {
            return Ok((None, Ok(fresh(0))));
        };
        let state: DeviceState = serde_json::from_str(&text).map_err(|e| Error::CorruptState {
            reason: format!("{} at column {}", json_problem(&e), e.column()),
        })?;
        if state.v != STATE_VERSION {
            return Err(Error::CorruptState {
                reason: format!("unknown version {}", state.v),
            });
        }
        let applied = match state.seq.cmp(&sequence) {
            core::cmp::Ordering::Greater => Err(state.seq),
            core::cmp::Ordering::Equal => Ok(state),
            core::cmp::Ordering::Less => Ok(fresh(state.latest)),
        };
        Ok((Some(text), applied))
    }

    /// Runs `step` on the current state and saves what it returns with a
    /// compare-and-set, reading again when another verifier got there
    /// first. `step` returns the new state (`None`: nothing to save) and
    /// the result to give once it is saved.
    fn transact<T>(&self, mut step: impl FnMut(Applied) -> (Option<DeviceState>, T)) -> Result<T> {
        for _ in 0..MAX_STATE_RETRIES {
            let (old, state) = self.load()?;
            let (new, result) = step(state);
            let Some(new) = new else {
                return Ok(result);
            };
            let text = serde_json::to_string(&new).map_err(|e| Error::CorruptState {
                reason: json_problem(&e).into(),
            })?;
            if old.as_deref() == Some(text.as_str())
                || self
                    .store
                    .compare_and_set(&self.state_key(), old.as_deref(), &text)?
            {
                return Ok(result);
            }
        }
        Err(Error::StateStorage {
            reason: format!(
                "the state kept changing under this verifier ({MAX_STATE_RETRIES} tries)"
            ),
        })
    }

    /// Attempts still allowed for this ticket.
    ///
    /// # Errors
    /// [`Error::StateStorage`], [`Error::CorruptState`].
    pub fn attempts_left(&self) -> Result<u32> {
        Ok(match self.load()?.1 {
            Ok(state) => self.ticket.max_attempts().saturating_sub(state.attempts),
            Err(_superseded) => 0,
        })
    }

    /// Checks what the courier typed at unix time `now`.
    ///
    /// In order: a newer ticket already used here, a clock set back, not yet
    /// valid, expired, locked out; then the entry is normalized (see
    /// [`crate::delivery::code::normalize`]), counted as an attempt, and compared with
    /// the ticket's hash. The state is saved before the outcome is returned.
    ///
    /// # Errors
    /// The errors of [`crate::delivery::code::normalize`] (the entry is not counted);
    /// [`Error::StateStorage`] (no outcome is given then);
    /// [`Error::CorruptState`].
    pub fn verify(&self, entered: &str, now: u64) -> Result<OfflineOutcome> {
        // Normalizing needs no state; an unreadable entry costs no attempt
        // (the time is still remembered, below).
        let normalized = normalize(entered, self.ticket.format());
        let matches = normalized
            .as_ref()
            .map(|n| self.ticket.hash_matches(n))
            .unwrap_or(false);
        let outcome = self.transact(|state| self.step(state, normalized.is_ok(), matches, now))?;
        match (outcome, normalized) {
            (Some(outcome), _) => Ok(outcome),
            (None, Err(e)) => Err(e),
            // `step` gives an outcome for every readable entry.
            (None, Ok(_)) => Err(Error::CorruptState {
                reason: "no outcome".into(),
            }),
        }
    }

    /// One verification on `state`: the state to save and the outcome
    /// (`None` for an unreadable entry, which is not counted).
    fn step(
        &self,
        state: Applied,
        readable: bool,
        matches: bool,
        now: u64,
    ) -> (Option<DeviceState>, Option<OfflineOutcome>) {
        let ticket = &self.ticket;
        let mut state = match state {
            Ok(state) => state,
            Err(by_sequence) => {
                let by_sequence = crate::error::int(by_sequence);
                return (None, Some(OfflineOutcome::Superseded { by_sequence }));
            }
        };
        if now.saturating_add(self.clock_tolerance) < state.latest {
            return (
                None,
                Some(OfflineOutcome::ClockMovedBackwards {
                    latest_seen: UnixTime::from_secs(state.latest),
                }),
            );
        }
        // Remember readings within the ticket's validity only: one reading
        // far in the future must not lock the delivery (issue 11, B9).
        if now < ticket.expires_at() {
            state.latest = state.latest.max(now);
        }
        let early = if now < ticket.not_before() {
            Some(OfflineOutcome::NotYetValid {
                from: UnixTime::from_secs(ticket.not_before()),
            })
        } else if now >= ticket.expires_at() {
            Some(OfflineOutcome::Expired {
                at: UnixTime::from_secs(ticket.expires_at()),
            })
        } else if state.attempts >= ticket.max_attempts() {
            Some(OfflineOutcome::LockedOut {
                until: UnixTime::from_secs(ticket.expires_at()),
            })
        } else {
            None
        };
        if early.is_some() || !readable {
            return (Some(state), early);
        }
        state.attempts = state.attempts.saturating_add(1);
        state.first.get_or_insert(now);
        let outcome = if matches {
            state.accepted = true;
            OfflineOutcome::AcceptedProvisionally {
                attempts_used: crate::error::count(state.attempts),
            }
        } else {
            match ticket.max_attempts().checked_sub(state.attempts) {
                Some(left) if left > 0 => OfflineOutcome::Rejected {
                    attempts_left: crate::error::count(left),
                },
                _ => OfflineOutcome::LockedOut {
                    until: UnixTime::from_secs(ticket.expires_at()),
                },
            }
        };
        (Some(state), Some(outcome))
    }
}

/// What a receipt records beyond the outcome: the app, where, the photo.
/// Equal when every field is; Kotlin and Swift compare them by value too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ffi", uniffi::export(Eq, Hash))]
pub struct ReceiptDetails {
    /// App name and version, such as `android/3.4.1`.
    pub app_version: String,
    /// Where the decision was made, if the app has a fix.
    #[cfg_attr(feature = "ffi", uniffi(default = None))]
    pub location: Option<Location>,
    /// SHA-256 of the proof photo, if one was taken (32 bytes; other sizes
    /// from Kotlin or Swift are an `InvalidReceipt` error).
    #[cfg_attr(feature = "ffi", uniffi(default = None))]
    pub photo_sha256: Option<Sha256Digest>,
}

impl OfflineVerifier {
    /// The key the delivery's receipt is stored under. It cannot collide
    /// with a state key: those start `delivery-otp/v1/`.
    pub fn receipt_key(&self) -> String {
        format!(
            "delivery-otp/v1-receipt/{}/{}",
            self.ticket.sequence(),
            self.ticket.delivery_id()
        )
    }

    /// The receipt already made for this ticket on this device, if any: for
    /// an app that lost it before it reached the backend.
    ///
    /// # Errors
    /// [`Error::StateStorage`]; [`Error::CorruptState`] when the stored text
    /// is not a receipt.
    pub fn stored_receipt(&self) -> Result<Option<Receipt>> {
        let Some(text) = self.store.load(&self.receipt_key())? else {
            return Ok(None);
        };
        Receipt::from_json(&text)
            .map(Some)
            .map_err(|e| Error::CorruptState {
                reason: format!("the stored receipt: {e}"),
            })
    }

    /// Makes this ticket's receipt at device time `decided_at`, signed with
    /// `device_key`, and stores it before returning it. Attempts and the
    /// time of the first attempt come from the device's state.
    ///
    /// A ticket has one receipt. Asking again with the same outcome and
    /// details gives the same receipt, byte for byte; asking with anything
    /// different is refused, so a receipt can be made again but never
    /// changed.
    ///
    /// - [`Handover::DeliveredOffline`] needs the code to have been accepted
    ///   by [`OfflineVerifier::verify`] on this device, and records the
    ///   attempts made here;
    /// - [`Handover::DeliveredOnline`] records the attempts the backend
    ///   counted (1 or more);
    /// - [`Handover::NotDelivered`] records the attempts made here, if any.
    ///
    /// # Errors
    /// [`Error::InvalidReceipt`] for a field that breaks the rules, an
    /// offline delivery this device did not accept, or a ticket that a newer
    /// one replaced on this device; [`Error::ReceiptConflict`] naming the
    /// fields in which it differs from the stored receipt;
    /// [`Error::StateStorage`], [`Error::CorruptState`].
    pub fn receipt(
        &self,
        device_key: &DeviceKey,
        handover: Handover,
        decided_at: u64,
        extras: ReceiptDetails,
    ) -> Result<Receipt> {
        let state = self.load()?.1.map_err(|newer| Error::InvalidReceipt {
            reason: format!(
                "a newer ticket (sequence {newer}) for this delivery is in use on this device"
            ),
        })?;
        let (outcome, attempts) = match handover {
            Handover::DeliveredOffline { code } => {
                let normalized = normalize(&code, self.ticket.format())?;
                if !state.accepted || !self.ticket.hash_matches(&normalized) {
                    return Err(Error::InvalidReceipt {
                        reason: "this device did not accept that code for this ticket".into(),
                    });
                }
                let verified = Verification::Offline;
                (ReceiptOutcome::Delivered { code, verified }, state.attempts)
            }
            Handover::DeliveredOnline {
                code,
                attempts_used,
            } => {
                let attempts = u32::try_from(attempts_used).map_err(|_| Error::InvalidNumber {
                    what: "attempts_used".into(),
                    reason: format!("{attempts_used} is negative"),
                })?;
                let verified = Verification::Online;
                (ReceiptOutcome::Delivered { code, verified }, attempts)
            }
            Handover::NotDelivered { reason } => {
                (ReceiptOutcome::NotDelivered { reason }, state.attempts)
            }
        };
        let mut draft = ReceiptDraft::for_ticket(&self.ticket, outcome, attempts, decided_at, "");
        draft.first_attempt_at = state.first;
        draft.location = extras.location;
        draft.photo_sha256 = extras.photo_sha256;
        draft.app_version = extras.app_version;
        let receipt = device_key.sign(draft)?;
        // Stored once: the first receipt saved for the ticket stands, even
        // when two verifiers make one at the same moment.
        if !self
            .store
            .compare_and_set(&self.receipt_key(), None, &receipt.to_json())?
        {
            let stored = self.stored_receipt()?.ok_or_else(|| Error::StateStorage {
                reason: "the store refused to save the receipt but holds none".into(),
            })?;
            let fields = stored.differing_fields(&receipt);
            if fields.is_empty() && stored == receipt {
                return Ok(stored);
            }
            return Err(Error::ReceiptConflict {
                fields: if fields.is_empty() {
                    "the device key".into()
                } else {
                    fields.join(", ")
                },
            });
        }
        Ok(receipt)
    }
}
