#![doc = include_str!("../README.md")]
//!
//! # Modules
//!
//! - [`secret`]: shared secrets, base32 in and out, new ones from the OS;
//! - [`hotp`]: RFC 4226 counter-based codes;
//! - [`totp`]: RFC 6238 time-based codes;
//! - [`uri`]: `otpauth://` key URIs;
//! - [`algorithm`]: SHA-1, SHA-256, SHA-512;
//! - [`keys`]: the backend's master keys, with ids for rotation;
//! - [`settings`]: code formats and the rules that keep a ticket from revealing its code;
//! - [`code`]: deriving delivery codes, normalizing what people type;
//! - [`ticket`]: the ticket the backend gives the courier's device, and its wire format;
//! - [`device`]: offline verification on the courier's device, with persisted attempts;
//! - [`message`]: the customer's SMS and e-mail, masked contacts, code hints;
//! - [`policy`]: the risk policy deciding whether a delivery needs a code;
//! - [`receipt`]: device keys and the signed proof-of-delivery receipt;
//! - [`backend`]: issuing, recognising tickets, online verification and the attempt store;
//! - `redis_store` (feature `redis`): the attempt store several backend instances share;
//! - [`error`]: the one error type.
//!
//! The `ffi` feature adds the uniffi layer the Kotlin and Swift bindings are
//! generated from; nothing else in the crate knows about it.

pub mod algorithm;
pub mod backend;
pub mod code;
pub mod device;
pub mod error;
pub mod hotp;
pub mod keys;
mod mac;
pub mod message;
pub mod policy;
pub mod receipt;
#[cfg(feature = "redis")]
pub mod redis_store;
pub mod secret;
pub mod settings;
pub mod ticket;
pub mod totp;
pub mod uri;

#[cfg(feature = "ffi")]
mod ffi;
#[cfg(feature = "ffi")]
uniffi::setup_scaffolding!("delivery_otp");

pub use algorithm::Algorithm;
pub use backend::{
    AttemptStore, Backend, Decision, InMemoryAttemptStore, Issued, OnlineOutcome, Reconciliation,
    DEVICE_KEY_CACHE_MAX,
};
pub use code::{normalize, Code};
pub use device::{InMemoryStateStore, OfflineOutcome, OfflineVerifier, ReceiptExtras, StateStore};
pub use error::{Error, Result};
pub use hotp::Hotp;
pub use keys::{KeySet, MasterKey};
pub use message::{mask_email, mask_phone, Email, MessageValues, Sms, SmsEncoding, Templates};
pub use policy::{
    CustomerPreference, DeliveryMethod, Order, PolicyDecision, Reason, Requirement, Rules,
    VerificationMode,
};
pub use receipt::{
    DeviceKey, Location, NotDeliveredReason, Receipt, ReceiptDraft, ReceiptOutcome, Verification,
};
#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
pub use secret::Secret;
pub use settings::{CodeFormat, DeliverySettings};
pub use ticket::Ticket;
pub use totp::{Totp, TotpConfig, TotpMatch, Window};
pub use uri::{KeyUri, OtpKind};
