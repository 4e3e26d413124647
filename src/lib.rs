#![doc = include_str!("../README.md")]
//!
//! # Modules
//!
//! - [`otp`]: the RFC primitives: secrets, HOTP, TOTP, key URIs, algorithms;
//! - [`delivery`]: delivery codes and tickets: master keys, settings, codes,
//!   the ticket, the phone's offline check, the backend's issuing and online check;
//! - [`proof`]: proof of delivery: device keys, signed receipts, reconciliation;
//! - [`policy`]: the risk policy, and the customer's messages;
//! - [`store`]: the backend's attempt store and the app's device state store
//!   (in memory; Redis behind the `redis` feature);
//! - [`time`]: [`UnixTime`], the whole seconds tickets and receipts keep;
//! - [`error`]: the one error type.
//!
//! Everything a caller needs is also at the crate root. The `ffi` feature
//! adds the uniffi layer (`src/ffi/`) the Kotlin and Swift bindings are
//! generated from; nothing else in the crate knows about it.

mod b32;
mod decimal;
pub mod delivery;
pub mod error;
mod mac;
pub mod otp;
pub mod policy;
pub mod proof;
pub mod store;
pub mod time;

#[cfg(feature = "ffi")]
mod ffi;
#[cfg(feature = "ffi")]
uniffi::setup_scaffolding!("delivery_otp");

pub use delivery::backend::{Backend, Issued, OnlineOutcome, DEVICE_KEY_CACHE_MAX};
pub use delivery::code::{normalize, Code};
pub use delivery::device::{Handover, OfflineOutcome, OfflineVerifier, ReceiptDetails};
pub use delivery::keys::{KeySet, MasterKey};
pub use delivery::settings::{CodeFormat, DeliverySettings};
pub use delivery::ticket::Ticket;
pub use error::{Error, OtpError, Result};
pub use otp::algorithm::Algorithm;
pub use otp::hotp::{Counter, Hotp};
pub use otp::secret::Secret;
pub use otp::totp::{Totp, TotpConfig, TotpMatch, Window};
pub use otp::uri::{KeyUri, OtpKind};
pub use policy::message::{
    mask_email, mask_phone, Email, MessageValues, Sms, SmsEncoding, Templates,
};
pub use policy::rules::{
    CustomerPreference, DeliveryMethod, Order, PolicyDecision, Reason, Requirement, Rules,
    VerificationMode,
};
pub use proof::receipt::{
    CodeText, DeviceKey, Location, NotDeliveredReason, Receipt, ReceiptDraft, ReceiptOutcome,
    Verification,
};
pub use proof::reconcile::{Decision, Reconciliation};
pub use proof::request::SignedRequest;
pub use store::attempts::{AttemptStore, InMemoryAttemptStore, OnlineEntry, OnlineStep, Unless};
pub use store::device_state::{InMemoryStateStore, StateStore};
#[cfg(feature = "redis")]
pub use store::redis::RedisStore;
pub use time::UnixTime;
