#![doc = include_str!("../README.md")]
//!
//! # Modules
//!
//! - [`secret`]: shared secrets, base32 in and out, new ones from the OS;
//! - [`hotp`]: RFC 4226 counter-based codes;
//! - [`totp`]: RFC 6238 time-based codes;
//! - [`uri`]: `otpauth://` key URIs;
//! - [`algorithm`]: SHA-1, SHA-256, SHA-512;
//! - [`error`]: the one error type.
//!
//! The `ffi` feature adds the uniffi layer the Kotlin and Swift bindings are
//! generated from; nothing else in the crate knows about it.

pub mod algorithm;
pub mod error;
pub mod hotp;
pub mod secret;
pub mod totp;
pub mod uri;

#[cfg(feature = "ffi")]
mod ffi;
#[cfg(feature = "ffi")]
uniffi::setup_scaffolding!("delivery_otp");

pub use algorithm::Algorithm;
pub use error::{Error, Result};
pub use hotp::{Code, Hotp};
pub use secret::Secret;
pub use totp::{Totp, TotpConfig, TotpMatch, Window};
pub use uri::{KeyUri, OtpKind};
