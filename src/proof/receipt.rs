//! Proof of delivery: the receipt the courier's device makes at the door, and
//! the per-device key it is signed with.
//!
//! The backend derives each device's key from its master key, the courier id
//! and the device id ([`crate::Backend::provision_device`]) and hands it to
//! the app at login as a small JSON text ([`DeviceKey::to_json`]). A receipt
//! made with one courier's key does not verify as another courier's or
//! another device's.
//!
//! # Device key, version 1
//!
//! `HMAC-SHA256(key[kid], "delivery-otp/v1/device-key", courier, device)`
//! (parts length-prefixed as everywhere in this crate), provisioned as
//!
//! ```json
//! {"v":1,"kid":"2026-11","courier":"courier-17","device":"phone-9","key":"<base32 of 32 bytes>"}
//! ```
//!
//! # Receipt wire format, version 1
//!
//! One line of JSON, fields in this order, no spaces; fields marked
//! "optional" are left out when absent:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `v` | integer | format version, `1` |
//! | `delivery` | string | delivery id |
//! | `kid` | string | the ticket's key id |
//! | `seq` | integer | the ticket's sequence |
//! | `format` | string | the ticket's code format |
//! | `courier` | string | courier id (1 to 64 bytes) |
//! | `device` | string | device id (1 to 64 bytes) |
//! | `dkid` | string | key id of the master key the device key derives from |
//! | `outcome` | string | `delivered` or `not_delivered` |
//! | `code` | string | delivered only: the code entered, normalized |
//! | `via` | string | delivered only: `offline` or `online` |
//! | `reason` | string | not delivered only: `customer_absent`, `code_not_received`, `refused`, `damaged` or `other` |
//! | `note` | string | with reason `other` only: free text, 1 to 500 bytes, no control or bidirectional formatting characters |
//! | `attempts` | integer | attempts used (0 to 100) |
//! | `first` | integer | optional: device time of the first attempt |
//! | `decided` | integer | device time of the decision |
//! | `loc` | object | optional: `{"lat":..,"lon":..,"acc":..}`, degrees times 10^6 and metres |
//! | `photo` | string | optional: SHA-256 of the proof photo, 64 lowercase hex digits |
//! | `app` | string | app name and version, 1 to 64 printable ASCII characters |
//! | `mac` | string | `HMAC-SHA256(device key, "delivery-otp/v1/receipt-mac", <the JSON before ,"mac"> + "}")`, base32 without padding |
//!
//! Making a receipt reads no clock and no random numbers, so the same inputs
//! give the same bytes on Android, on iOS and in Rust. A receipt carries the
//! code the courier entered, because that is what the backend must check; its
//! `Debug` leaves the code out.

use core::fmt;
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::delivery::code::{check_delivery_id, is_unsafe_char, normalize};
use crate::delivery::keys::{check_key_id, json_problem, MasterKey};
use crate::delivery::settings::{CodeFormat, MAX_ATTEMPTS};
use crate::delivery::ticket::Ticket;
use crate::error::{Error, Result};
use crate::mac::MacKey;

/// The receipt format version this library writes and reads.
pub const RECEIPT_VERSION: u64 = 1;
/// The device key format version.
pub const DEVICE_KEY_VERSION: u64 = 1;
/// Size of a device key.
pub const DEVICE_KEY_BYTES: usize = 32;
const DEVICE_KEY_DOMAIN: &[u8] = b"delivery-otp/v1/device-key";
const MAC_DOMAIN: &[u8] = b"delivery-otp/v1/receipt-mac";
const MAX_PARTY_ID_BYTES: usize = 64;
const MAX_NOTE_BYTES: usize = 500;
const MAX_APP_BYTES: usize = 64;

pub(crate) fn decode_32(text: &str) -> Option<[u8; 32]> {
    // Base32 decoders accept other texts for the same bytes; only the one
    // written form reads (52 characters of the upper-case alphabet, the last
    // one carrying a bit and four zero bits, so 'A' or 'Q').
    crate::b32::decode_exact::<32>(text).map(|bytes| *bytes)
}

/// A receipt of a version this library does not read.
fn unsupported(version: u64) -> Error {
    Error::UnsupportedReceiptVersion {
        version: crate::error::int(version),
        supported: crate::error::int(RECEIPT_VERSION),
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidReceipt {
        reason: reason.into(),
    }
}

/// Checks a courier or device id: 1 to 64 bytes, no control or bidi characters, no
/// space at either end. `what` names it in the message.
pub(crate) fn check_party_id(id: &str, what: &str) -> core::result::Result<(), String> {
    let problem = if id.is_empty() {
        "is empty"
    } else if id.len() > MAX_PARTY_ID_BYTES {
        "is longer than 64 bytes"
    } else if id.chars().any(is_unsafe_char) {
        "contains a control or bidirectional formatting character"
    } else if id.trim() != id {
        "starts or ends with a space"
    } else {
        return Ok(());
    };
    Err(format!("the {what} id {problem}"))
}

// ---------------------------------------------------------------------------
// Device key

/// The key one courier's device signs its receipts with. Derived by the
/// backend, given to the app at login; the app keeps it in the Android
/// Keystore or the iOS Keychain.
///
/// Wiped on drop; `Debug` shows the ids only.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DeviceKey {
    key_id: String,
    courier_id: String,
    device_id: String,
    secret: [u8; DEVICE_KEY_BYTES],
    /// The HMAC state set up from `secret` once; it wipes itself on drop.
    #[zeroize(skip)]
    mac: MacKey,
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("key_id", &self.key_id)
            .field("courier_id", &self.courier_id)
            .field("device_id", &self.device_id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceKeyWire {
    v: u64,
    kid: String,
    courier: String,
    device: String,
    key: Zeroizing<String>,
}

impl DeviceKey {
    /// The key for `courier_id` on `device_id`, derived from `master`.
    ///
    /// # Errors
    /// [`Error::InvalidDeviceKey`] for an empty, overlong or unprintable id.
    pub(crate) fn derive(master: &MasterKey, courier_id: &str, device_id: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidDeviceKey { reason };
        check_party_id(courier_id, "courier").map_err(bad)?;
        check_party_id(device_id, "device").map_err(bad)?;
        let secret = master.mac().sign(
            DEVICE_KEY_DOMAIN,
            &[courier_id.as_bytes(), device_id.as_bytes()],
        );
        Self::new(master.id(), courier_id, device_id, *secret)
    }

    fn new(
        key_id: &str,
        courier_id: &str,
        device_id: &str,
        secret: [u8; DEVICE_KEY_BYTES],
    ) -> Result<Self> {
        let mac = MacKey::new(&secret).ok_or_else(|| Error::InvalidDeviceKey {
            reason: "HMAC refused the key".into(),
        })?;
        Ok(DeviceKey {
            key_id: key_id.to_string(),
            courier_id: courier_id.to_string(),
            device_id: device_id.to_string(),
            secret,
            mac,
        })
    }

    /// Reads the JSON the backend provisioned (see the module documentation).
    ///
    /// # Errors
    /// [`Error::InvalidDeviceKey`] for malformed JSON, an unknown version or
    /// field, a bad id, or a key that is not 32 bytes of base32.
    pub fn from_json(text: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidDeviceKey { reason };
        let wire: DeviceKeyWire = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "not a device key in JSON ({} at line {}, column {})",
                json_problem(&e),
                e.line(),
                e.column()
            ))
        })?;
        if wire.v != DEVICE_KEY_VERSION {
            return Err(bad(format!(
                "unknown version {}; this library reads version {DEVICE_KEY_VERSION}",
                wire.v
            )));
        }
        check_key_id(&wire.kid).map_err(|e| bad(e.to_string()))?;
        check_party_id(&wire.courier, "courier").map_err(bad)?;
        check_party_id(&wire.device, "device").map_err(bad)?;
        let secret = decode_32(&wire.key)
            .ok_or_else(|| bad("the key is not 32 bytes in base32 without padding".into()))?;
        Self::new(&wire.kid, &wire.courier, &wire.device, secret)
    }

    /// The JSON to hand to the app; wiped when dropped.
    pub fn to_json(&self) -> Zeroizing<String> {
        let wire = DeviceKeyWire {
            v: DEVICE_KEY_VERSION,
            kid: self.key_id.clone(),
            courier: self.courier_id.clone(),
            device: self.device_id.clone(),
            key: Zeroizing::new(crate::b32::encode(&self.secret)),
        };
        Zeroizing::new(serde_json::to_string(&wire).unwrap_or_default())
    }

    /// The id of the master key this key derives from.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The courier this key belongs to.
    pub fn courier_id(&self) -> &str {
        &self.courier_id
    }

    /// The device this key belongs to.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The MAC of one request's signing parts (see `crate::proof::request`).
    pub(crate) fn request_mac(&self, domain: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        self.mac.sign(domain, parts)
    }

    /// Makes the receipt for `draft`, signed with this key.
    ///
    /// # Errors
    /// [`Error::InvalidReceipt`] naming the field that is wrong.
    pub fn sign(&self, draft: ReceiptDraft) -> Result<Receipt> {
        let mut receipt = Receipt {
            delivery_id: draft.delivery_id,
            key_id: draft.key_id,
            sequence: draft.sequence,
            format: draft.format,
            courier_id: self.courier_id.clone(),
            device_id: self.device_id.clone(),
            device_key_id: self.key_id.clone(),
            outcome: draft.outcome,
            attempts: draft.attempts,
            first_attempt_at: draft.first_attempt_at,
            decided_at: draft.decided_at,
            location: draft.location,
            photo_sha256: draft.photo_sha256,
            app_version: draft.app_version,
            mac: [0u8; 32],
        };
        receipt.validate()?;
        receipt.mac = receipt.compute_mac(&self.mac);
        Ok(receipt)
    }

    #[cfg(test)]
    pub(crate) fn secret_bytes(&self) -> &[u8; DEVICE_KEY_BYTES] {
        &self.secret
    }
}

// ---------------------------------------------------------------------------
// Receipt values

/// How a delivered code was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// On the device, against the ticket: provisional until reconciled.
    Offline,
    /// By the backend, which confirmed it.
    Online,
}

/// Why a parcel was not handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
#[serde(tag = "reason", rename_all = "snake_case", deny_unknown_fields)]
pub enum NotDeliveredReason {
    /// No one was there to take it.
    CustomerAbsent,
    /// The customer says the code never arrived.
    CodeNotReceived,
    /// The customer refused the parcel.
    Refused,
    /// The parcel is damaged.
    Damaged,
    /// Anything else, in the courier's words.
    Other {
        /// Free text, 1 to 500 bytes, no control or bidirectional formatting characters.
        note: String,
    },
}

impl NotDeliveredReason {
    /// The wire name (`customer_absent`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            NotDeliveredReason::CustomerAbsent => "customer_absent",
            NotDeliveredReason::CodeNotReceived => "code_not_received",
            NotDeliveredReason::Refused => "refused",
            NotDeliveredReason::Damaged => "damaged",
            NotDeliveredReason::Other { .. } => "other",
        }
    }
}

/// Text that holds a code: wiped from memory when dropped. With the `ffi`
/// feature Kotlin and Swift see it as a plain string.
pub type CodeText = Zeroizing<String>;

#[cfg(feature = "ffi")]
uniffi::custom_type!(CodeText, String, {
    remote,
    lower: |text| text.as_str().to_string(),
    try_lift: |text| Ok(Zeroizing::new(text)),
});

/// What happened at the door, as a receipt records it.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
pub enum ReceiptOutcome {
    /// The parcel was handed over against a code.
    Delivered {
        /// The code entered; normalized when the receipt is made.
        code: CodeText,
        /// How it was checked.
        verified: Verification,
    },
    /// The parcel was not handed over.
    NotDelivered {
        /// Why.
        reason: NotDeliveredReason,
    },
}

impl fmt::Debug for ReceiptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiptOutcome::Delivered { verified, .. } => f
                .debug_struct("Delivered")
                .field("code", &"[redacted]")
                .field("verified", verified)
                .finish(),
            ReceiptOutcome::NotDelivered { reason } => f
                .debug_struct("NotDelivered")
                .field("reason", reason)
                .finish(),
        }
    }
}

/// A SHA-256 digest: 32 bytes (Kotlin `ByteArray`, Swift `Data`).
pub type Sha256Digest = [u8; 32];

#[cfg(feature = "ffi")]
uniffi::custom_type!(Sha256Digest, Vec<u8>, {
    remote,
    lower: |digest| digest.to_vec(),
    try_lift: |bytes| {
        Sha256Digest::try_from(bytes.as_slice()).map_err(|_| {
            Error::InvalidReceipt {
                reason: format!("a photo digest has 32 bytes, not {}", bytes.len()),
            }
            .into()
        })
    },
});

/// Where the decision was made, as the phone measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct Location {
    /// Latitude in millionths of a degree, -90 000 000 to 90 000 000.
    pub lat_microdegrees: i32,
    /// Longitude in millionths of a degree, -180 000 000 to 180 000 000.
    pub lon_microdegrees: i32,
    /// Accuracy radius in metres, 0 or more.
    pub accuracy_m: i32,
}

impl Location {
    /// A location from degrees as phones report them, rounded to a
    /// millionth of a degree (about 11 cm).
    ///
    /// # Errors
    /// [`Error::InvalidReceipt`] for a latitude outside ±90, a longitude
    /// outside ±180, a value that is not a number, or a negative accuracy.
    pub fn from_degrees(latitude: f64, longitude: f64, accuracy_m: i32) -> Result<Self> {
        if accuracy_m < 0 {
            return Err(invalid("the location's accuracy is not negative"));
        }
        let micro = |value: f64, limit: f64, what: &str| {
            if value.is_finite() && value.abs() <= limit {
                // In range, so the cast cannot saturate.
                #[allow(clippy::cast_possible_truncation)]
                Ok((value * 1e6).round() as i32)
            } else {
                Err(invalid(format!(
                    "the {what} must be a number from -{limit} to {limit} degrees"
                )))
            }
        };
        Ok(Location {
            lat_microdegrees: micro(latitude, 90.0, "latitude")?,
            lon_microdegrees: micro(longitude, 180.0, "longitude")?,
            accuracy_m,
        })
    }
}

/// What a receipt records before it is signed. Build one with
/// [`ReceiptDraft::for_ticket`], or let
/// [`crate::OfflineVerifier::receipt`] fill it in from the device's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptDraft {
    /// The delivery id.
    pub delivery_id: String,
    /// The ticket's key id.
    pub key_id: String,
    /// The ticket's sequence.
    pub sequence: u64,
    /// The ticket's code format.
    pub format: CodeFormat,
    /// What happened.
    pub outcome: ReceiptOutcome,
    /// Attempts used, 0 to 100.
    pub attempts: u32,
    /// Device time of the first attempt, if any was made.
    pub first_attempt_at: Option<u64>,
    /// Device time of the decision.
    pub decided_at: u64,
    /// Where, if the app has a fix.
    pub location: Option<Location>,
    /// SHA-256 of the proof photo, if one was taken.
    pub photo_sha256: Option<[u8; 32]>,
    /// App name and version, such as `android/3.4.1`.
    pub app_version: String,
}

impl ReceiptDraft {
    /// A draft for `ticket`, with no first-attempt time, location or photo.
    pub fn for_ticket(
        ticket: &Ticket,
        outcome: ReceiptOutcome,
        attempts: u32,
        decided_at: u64,
        app_version: &str,
    ) -> Self {
        ReceiptDraft {
            delivery_id: ticket.delivery_id().to_string(),
            key_id: ticket.key_id().to_string(),
            sequence: ticket.sequence(),
            format: ticket.format(),
            outcome,
            attempts,
            first_attempt_at: None,
            decided_at,
            location: None,
            photo_sha256: None,
            app_version: app_version.to_string(),
        }
    }
}

/// A signed proof-of-delivery receipt. Made with [`DeviceKey::sign`] or
/// [`crate::OfflineVerifier::receipt`], read with [`Receipt::from_json`],
/// judged by [`crate::Backend::reconcile`].
///
/// `Debug` leaves out the code and the MAC.
#[derive(Clone, PartialEq, Eq)]
pub struct Receipt {
    delivery_id: String,
    key_id: String,
    sequence: u64,
    format: CodeFormat,
    courier_id: String,
    device_id: String,
    device_key_id: String,
    outcome: ReceiptOutcome,
    attempts: u32,
    first_attempt_at: Option<u64>,
    decided_at: u64,
    location: Option<Location>,
    photo_sha256: Option<[u8; 32]>,
    app_version: String,
    mac: [u8; 32],
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("delivery_id", &self.delivery_id)
            .field("key_id", &self.key_id)
            .field("sequence", &self.sequence)
            .field("courier_id", &self.courier_id)
            .field("device_id", &self.device_id)
            .field("outcome", &self.outcome)
            .field("attempts", &self.attempts)
            .field("decided_at", &self.decided_at)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(super) struct LocationWire {
    pub(super) lat: i32,
    pub(super) lon: i32,
    pub(super) acc: u32,
}

/// A receipt as read (see [`WireOut`] for writing), by serde or by
/// [`super::written`]. The texts that name one of a few words borrow from
/// the receipt's text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Wire<'a> {
    pub(super) v: u64,
    pub(super) delivery: String,
    pub(super) kid: String,
    pub(super) seq: u64,
    #[serde(borrow)]
    pub(super) format: Cow<'a, str>,
    pub(super) courier: String,
    pub(super) device: String,
    pub(super) dkid: String,
    #[serde(borrow)]
    pub(super) outcome: Cow<'a, str>,
    #[serde(default)]
    pub(super) code: Option<Zeroizing<String>>,
    #[serde(default, borrow)]
    pub(super) via: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) note: Option<String>,
    pub(super) attempts: u32,
    #[serde(default)]
    pub(super) first: Option<u64>,
    pub(super) decided: u64,
    #[serde(default)]
    pub(super) loc: Option<LocationWire>,
    #[serde(default, borrow)]
    pub(super) photo: Option<Cow<'a, str>>,
    pub(super) app: String,
    #[serde(default, borrow)]
    pub(super) mac: Option<Cow<'a, str>>,
}

/// [`Wire`] as written, without its MAC: the same fields in the same order,
/// borrowed from the receipt instead of copied (the code included, so no
/// copy of it is left to wipe).
#[derive(Serialize)]
struct WireOut<'a> {
    v: u64,
    delivery: &'a str,
    kid: &'a str,
    seq: u64,
    #[serde(serialize_with = "crate::delivery::settings::format_text::serialize")]
    format: CodeFormat,
    courier: &'a str,
    device: &'a str,
    dkid: &'a str,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    first: Option<u64>,
    decided: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    loc: Option<LocationWire>,
    #[serde(skip_serializing_if = "Option::is_none")]
    photo: Option<String>,
    app: &'a str,
}

/// Room for a receipt's JSON (about 400 bytes) without growing.
const RECEIPT_JSON_CAPACITY: usize = 640;

#[derive(Deserialize)]
struct VersionOnly {
    v: u64,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                *DIGITS.get(usize::from(nibble)).unwrap_or(&b'0'),
            ));
        }
    }
    out
}

fn from_hex_32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c.checked_sub(b'0'),
        b'a'..=b'f' => c.checked_sub(b'a').and_then(|n| n.checked_add(10)),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = match pair {
            [hi, lo] => (nibble(*hi)?, nibble(*lo)?),
            _ => return None,
        };
        *byte = hi.checked_shl(4)? | lo;
    }
    Some(out)
}

/// Whether `format` writes as exactly `text`, compared as it is written,
/// without making a string.
fn writes_as(format: &CodeFormat, text: &str) -> bool {
    struct Compare<'t> {
        rest: Option<&'t str>,
    }
    impl fmt::Write for Compare<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.rest = self.rest.and_then(|rest| rest.strip_prefix(s));
            Ok(())
        }
    }
    let mut compare = Compare { rest: Some(text) };
    fmt::write(&mut compare, format_args!("{format}")).is_ok() && compare.rest == Some("")
}

impl Receipt {
    /// The delivery id.
    pub fn delivery_id(&self) -> &str {
        &self.delivery_id
    }
    /// The ticket's key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    /// The ticket's sequence.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    /// The ticket's code format.
    pub fn format(&self) -> CodeFormat {
        self.format
    }
    /// The courier id.
    pub fn courier_id(&self) -> &str {
        &self.courier_id
    }
    /// The device id.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }
    /// The id of the master key the device key derives from.
    pub fn device_key_id(&self) -> &str {
        &self.device_key_id
    }
    /// What happened.
    pub fn outcome(&self) -> &ReceiptOutcome {
        &self.outcome
    }
    /// Attempts used.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// Device time of the first attempt.
    pub fn first_attempt_at(&self) -> Option<u64> {
        self.first_attempt_at
    }
    /// Device time of the decision.
    pub fn decided_at(&self) -> u64 {
        self.decided_at
    }
    /// Where the decision was made.
    pub fn location(&self) -> Option<Location> {
        self.location
    }
    /// SHA-256 of the proof photo.
    pub fn photo_sha256(&self) -> Option<[u8; 32]> {
        self.photo_sha256
    }
    /// App name and version.
    pub fn app_version(&self) -> &str {
        &self.app_version
    }

    fn wire(&self) -> WireOut<'_> {
        let (outcome, code, via, reason, note) = match &self.outcome {
            ReceiptOutcome::Delivered { code, verified } => (
                "delivered",
                Some(code.as_str()),
                Some(match verified {
                    Verification::Offline => "offline",
                    Verification::Online => "online",
                }),
                None,
                None,
            ),
            ReceiptOutcome::NotDelivered { reason } => (
                "not_delivered",
                None,
                None,
                Some(reason.as_str()),
                match reason {
                    NotDeliveredReason::Other { note } => Some(note.as_str()),
                    _ => None,
                },
            ),
        };
        WireOut {
            v: RECEIPT_VERSION,
            delivery: &self.delivery_id,
            kid: &self.key_id,
            seq: self.sequence,
            format: self.format,
            courier: &self.courier_id,
            device: &self.device_id,
            dkid: &self.device_key_id,
            outcome,
            code,
            via,
            reason,
            note,
            attempts: self.attempts,
            first: self.first_attempt_at,
            decided: self.decided_at,
            loc: self.location.map(|l| LocationWire {
                lat: l.lat_microdegrees,
                lon: l.lon_microdegrees,
                // Negative accuracies are refused before anything is signed.
                acc: u32::try_from(l.accuracy_m).unwrap_or(0),
            }),
            photo: self.photo_sha256.map(|p| hex(&p)),
            app: &self.app_version,
        }
    }

    /// The bytes the MAC covers: the JSON without the `mac` field.
    pub(crate) fn mac_input(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(RECEIPT_JSON_CAPACITY));
        match serde_json::to_writer(&mut *out, &self.wire()) {
            Ok(()) => out,
            Err(_) => Zeroizing::new(Vec::new()),
        }
    }

    fn compute_mac(&self, device_key: &MacKey) -> [u8; 32] {
        *device_key.sign(MAC_DOMAIN, &[&self.mac_input()])
    }

    /// Checks the MAC with the device key it was made with, in constant time.
    ///
    /// # Errors
    /// [`Error::ReceiptMacMismatch`] when any field was changed or another
    /// key made it.
    pub fn verify_mac(&self, device_key: &DeviceKey) -> Result<()> {
        self.verify_mac_over(device_key, &self.mac_input())
    }

    /// [`Receipt::verify_mac`] over `input`, the MAC input that
    /// [`Receipt::read`] gave with this receipt.
    pub(crate) fn verify_mac_over(&self, device_key: &DeviceKey, input: &[u8]) -> Result<()> {
        let expected = device_key.mac.sign(MAC_DOMAIN, &[input]);
        if bool::from(expected.ct_eq(&self.mac)) {
            Ok(())
        } else {
            Err(Error::ReceiptMacMismatch)
        }
    }

    /// The MAC, as the backend remembers a reconciled receipt by it.
    pub(crate) fn mac_text(&self) -> String {
        crate::b32::encode(&self.mac)
    }

    /// The wire form (see the module documentation). Holds the code entered;
    /// wiped when dropped.
    pub fn to_json(&self) -> Zeroizing<String> {
        // The MAC input is the JSON without its closing brace and the mac.
        let input = self.mac_input();
        let body = input.strip_suffix(b"}").unwrap_or(&input);
        let mac = crate::b32::encode(&self.mac);
        let mut out = Zeroizing::new(String::with_capacity(
            body.len().saturating_add(mac.len()).saturating_add(10),
        ));
        out.push_str(core::str::from_utf8(body).unwrap_or_default());
        out.push_str(",\"mac\":\"");
        out.push_str(&mac);
        out.push_str("\"}");
        out
    }

    /// The names of the wire fields in which two receipts differ, the MAC
    /// aside.
    pub(crate) fn differing_fields(&self, other: &Receipt) -> Vec<&'static str> {
        let (a, b) = (self.wire(), other.wire());
        let mut out = Vec::new();
        let mut check = |name, same: bool| {
            if !same {
                out.push(name);
            }
        };
        check("delivery", a.delivery == b.delivery);
        check("kid", a.kid == b.kid);
        check("seq", a.seq == b.seq);
        check("format", a.format == b.format);
        check("courier", a.courier == b.courier);
        check("device", a.device == b.device);
        check("dkid", a.dkid == b.dkid);
        check("outcome", a.outcome == b.outcome);
        check("code", a.code == b.code);
        check("via", a.via == b.via);
        check("reason", a.reason == b.reason);
        check("note", a.note == b.note);
        check("attempts", a.attempts == b.attempts);
        check("first", a.first == b.first);
        check("decided", a.decided == b.decided);
        check("loc", a.loc == b.loc);
        check("photo", a.photo == b.photo);
        check("app", a.app == b.app);
        out
    }

    /// Reads a receipt and checks that its fields are consistent. The MAC is
    /// checked by [`Receipt::verify_mac`] or by the backend's reconciliation.
    ///
    /// # Errors
    /// [`Error::UnsupportedReceiptVersion`] for any version but 1;
    /// [`Error::InvalidReceipt`] for malformed JSON, unknown or missing
    /// fields, or a field that breaks the rules of the wire format.
    pub fn from_json(text: &str) -> Result<Self> {
        Self::read(text).map(|(receipt, _)| receipt)
    }

    /// [`Receipt::from_json`], also giving the bytes the MAC covers.
    ///
    /// A receipt in the one written form is read in one pass by
    /// [`super::written`], which checks the form as it goes; any other text
    /// (or one that pass cannot take) is read by serde and written again to
    /// compare, which gives the precise error.
    pub(crate) fn read(text: &str) -> Result<(Self, Zeroizing<Vec<u8>>)> {
        match Self::read_written(text) {
            Some(read) => Ok(read),
            None => Self::read_any(text),
        }
    }

    /// The one-pass reading: `None` unless `text` is a valid receipt in the
    /// written form, and then the same receipt [`Self::read_any`] gives.
    fn read_written(text: &str) -> Option<(Self, Zeroizing<Vec<u8>>)> {
        let written = super::written::parse(text)?;
        let receipt = Self::from_wire(written.wire).ok()?;
        // What reading takes in without writing it back the same: the code
        // is normalized, and the format read from its text.
        let code_as_written = match (&receipt.outcome, written.code) {
            (ReceiptOutcome::Delivered { code, .. }, Some(raw)) => code.as_str() == raw,
            (ReceiptOutcome::NotDelivered { .. }, None) => true,
            _ => false,
        };
        if !code_as_written || !writes_as(&receipt.format, written.format) {
            return None;
        }
        let mut input = Zeroizing::new(Vec::with_capacity(written.body.len().saturating_add(1)));
        input.extend_from_slice(written.body.as_bytes());
        input.push(b'}');
        Some((receipt, input))
    }

    /// Reads any JSON text with serde, then insists that it is the written
    /// form by writing the receipt again and comparing.
    fn read_any(text: &str) -> Result<(Self, Zeroizing<Vec<u8>>)> {
        let json_error = |e: serde_json::Error| {
            invalid(format!(
                "not a receipt in JSON ({} at line {}, column {})",
                json_problem(&e),
                e.line(),
                e.column()
            ))
        };
        // Only a text that does not read as version 1 is probed for its
        // version, to say which it is.
        let wire: Wire<'_> = match serde_json::from_str(text) {
            Ok(wire) => wire,
            Err(e) => {
                return Err(match serde_json::from_str::<VersionOnly>(text) {
                    Ok(probe) if probe.v != RECEIPT_VERSION => unsupported(probe.v),
                    _ => json_error(e),
                })
            }
        };
        let receipt = Self::from_wire(wire)?;
        let input = receipt.mac_input();
        if !receipt.is_written_as(text, &input) {
            return Err(invalid(
                "not in the one written form: fields in order, no spaces, the code normalized",
            ));
        }
        Ok((receipt, input))
    }

    /// A receipt from its wire fields, checked by every rule but the
    /// written form.
    fn from_wire(wire: Wire<'_>) -> Result<Self> {
        if wire.v != RECEIPT_VERSION {
            return Err(unsupported(wire.v));
        }
        crate::delivery::code::check_sequence(wire.seq).map_err(|e| invalid(e.to_string()))?;
        let format: CodeFormat = wire
            .format
            .parse()
            .map_err(|e: Error| invalid(e.to_string()))?;
        let outcome = match (&*wire.outcome, wire.code, wire.via.as_deref()) {
            ("delivered", Some(code), Some(via))
                if wire.reason.is_none() && wire.note.is_none() =>
            {
                let verified = match via {
                    "offline" => Verification::Offline,
                    "online" => Verification::Online,
                    _ => return Err(invalid("via is neither 'offline' nor 'online'")),
                };
                ReceiptOutcome::Delivered { code, verified }
            }
            ("delivered", ..) => {
                return Err(invalid(
                    "a delivered receipt has a code and via, and no reason or note",
                ))
            }
            ("not_delivered", None, None) => {
                let reason = match (wire.reason.as_deref(), wire.note) {
                    (Some("customer_absent"), None) => NotDeliveredReason::CustomerAbsent,
                    (Some("code_not_received"), None) => NotDeliveredReason::CodeNotReceived,
                    (Some("refused"), None) => NotDeliveredReason::Refused,
                    (Some("damaged"), None) => NotDeliveredReason::Damaged,
                    (Some("other"), Some(note)) => NotDeliveredReason::Other { note },
                    (Some("other"), None) => {
                        return Err(invalid("the reason 'other' needs a note"))
                    }
                    (Some(_), Some(_)) => {
                        return Err(invalid("only the reason 'other' has a note"))
                    }
                    (Some(_), None) => return Err(invalid("unknown reason")),
                    (None, _) => return Err(invalid("a not-delivered receipt needs a reason")),
                };
                ReceiptOutcome::NotDelivered { reason }
            }
            ("not_delivered", ..) => {
                return Err(invalid("a not-delivered receipt has no code and no via"))
            }
            _ => {
                return Err(invalid(
                    "the outcome is neither 'delivered' nor 'not_delivered'",
                ))
            }
        };
        let photo_sha256 = match wire.photo {
            None => None,
            Some(text) => Some(from_hex_32(&text).ok_or_else(|| {
                invalid("the photo digest is not 64 lowercase hexadecimal digits")
            })?),
        };
        let mac = decode_32(wire.mac.as_deref().unwrap_or(""))
            .ok_or_else(|| invalid("the mac is not 32 bytes in base32 without padding"))?;
        let mut receipt = Receipt {
            delivery_id: wire.delivery,
            key_id: wire.kid,
            sequence: wire.seq,
            format,
            courier_id: wire.courier,
            device_id: wire.device,
            device_key_id: wire.dkid,
            outcome,
            attempts: wire.attempts,
            first_attempt_at: wire.first,
            decided_at: wire.decided,
            location: match wire.loc {
                Some(l) => Some(Location {
                    lat_microdegrees: l.lat,
                    lon_microdegrees: l.lon,
                    accuracy_m: i32::try_from(l.acc)
                        .map_err(|_| invalid("the location's accuracy is out of range"))?,
                }),
                None => None,
            },
            photo_sha256,
            app_version: wire.app,
            mac,
        };
        receipt.validate()?;
        Ok(receipt)
    }

    /// The rules every receipt keeps, made or read.
    fn validate(&mut self) -> Result<()> {
        check_delivery_id(&self.delivery_id).map_err(|e| invalid(e.to_string()))?;
        check_key_id(&self.key_id).map_err(|e| invalid(format!("kid: {e}")))?;
        check_key_id(&self.device_key_id).map_err(|e| invalid(format!("dkid: {e}")))?;
        self.format
            .check(true)
            .map_err(|e| invalid(e.to_string()))?;
        check_party_id(&self.courier_id, "courier").map_err(invalid)?;
        check_party_id(&self.device_id, "device").map_err(invalid)?;
        if self.attempts > MAX_ATTEMPTS {
            return Err(invalid(format!(
                "attempts is {}; at most {MAX_ATTEMPTS} are possible",
                self.attempts
            )));
        }
        match &mut self.outcome {
            ReceiptOutcome::Delivered { code, .. } => {
                let normalized = normalize(code, self.format)
                    .map_err(|e| invalid(format!("the code entered: {e}")))?;
                // Making a receipt normalizes; a receipt read must already be.
                *code = normalized;
                if self.attempts == 0 {
                    return Err(invalid("a delivered receipt has at least 1 attempt"));
                }
            }
            ReceiptOutcome::NotDelivered {
                reason: NotDeliveredReason::Other { note },
            } => {
                if note.trim().is_empty() || note.len() > MAX_NOTE_BYTES {
                    return Err(invalid("the note has 1 to 500 bytes, not all spaces"));
                }
                if note.chars().any(is_unsafe_char) {
                    return Err(invalid(
                        "the note contains a control or bidirectional formatting character",
                    ));
                }
            }
            ReceiptOutcome::NotDelivered { .. } => {}
        }
        if let Some(first) = self.first_attempt_at {
            if first > self.decided_at {
                return Err(invalid("the first attempt is after the decision"));
            }
        }
        if let Some(loc) = self.location {
            if loc.lat_microdegrees.unsigned_abs() > 90_000_000
                || loc.lon_microdegrees.unsigned_abs() > 180_000_000
            {
                return Err(invalid(
                    "the location is outside ±90 degrees latitude or ±180 degrees longitude",
                ));
            }
            if loc.accuracy_m < 0 {
                return Err(invalid("the location's accuracy is not negative"));
            }
        }
        let app = &self.app_version;
        if app.is_empty()
            || app.len() > MAX_APP_BYTES
            || !app.bytes().all(|b| (0x20..0x7f).contains(&b))
            || app.trim() != app
        {
            return Err(invalid(
                "the app version has 1 to 64 printable ASCII characters, no space at either end",
            ));
        }
        Ok(())
    }

    /// Whether the wire text is exactly what this receipt writes (its MAC
    /// input `input` without the closing brace, then the MAC), so that no byte
    /// of a receipt can change without changing what the MAC covers.
    fn is_written_as(&self, text: &str, input: &[u8]) -> bool {
        let body = input.strip_suffix(b"}").unwrap_or(input);
        let mac = crate::b32::encode(&self.mac);
        text.as_bytes()
            .strip_prefix(body)
            .and_then(|rest| rest.strip_prefix(b",\"mac\":\""))
            .and_then(|rest| rest.strip_prefix(mac.as_bytes()))
            == Some(b"\"}".as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DeviceKey {
        let master = MasterKey::from_bytes("k1", &[7u8; 32]).unwrap();
        DeviceKey::derive(&master, "courier-1", "phone-1").unwrap()
    }

    fn draft() -> ReceiptDraft {
        ReceiptDraft {
            delivery_id: "D-1".into(),
            key_id: "k1".into(),
            sequence: 0,
            format: CodeFormat::Numeric { digits: 6 },
            outcome: ReceiptOutcome::Delivered {
                code: Zeroizing::new("123 456".into()),
                verified: Verification::Offline,
            },
            attempts: 1,
            first_attempt_at: Some(100),
            decided_at: 110,
            location: Some(Location::from_degrees(51.5074, -0.1278, 12).unwrap()),
            photo_sha256: Some([0xab; 32]),
            app_version: "android/3.4.1".into(),
        }
    }

    #[test]
    fn round_trips_and_normalizes_the_code() {
        let receipt = key().sign(draft()).unwrap();
        let json = receipt.to_json();
        assert!(json.contains(r#""code":"123456""#), "{}", json.as_str());
        let back = Receipt::from_json(&json).unwrap();
        assert_eq!(back, receipt);
        back.verify_mac(&key()).unwrap();
        assert!(back.is_written_as(&json, &back.mac_input()));
    }

    /// Only the one written form reads: any byte added, removed or changed
    /// around the MAC, at either end or inside is refused, and what reads
    /// gives the MAC input the receipt writes.
    #[test]
    fn only_the_written_form_reads() {
        let receipt = key().sign(draft()).unwrap();
        let json = receipt.to_json().to_string();
        let (read, input) = Receipt::read(&json).unwrap();
        assert_eq!(read, receipt);
        assert_eq!(*input, *receipt.mac_input());
        let mac = crate::b32::encode(&receipt.mac);
        let body = json.strip_suffix(&format!(",\"mac\":\"{mac}\"}}")).unwrap();
        let variants = [
            format!("{json} "),
            format!(" {json}"),
            format!("{json}}}"),
            json.replacen(',', ", ", 1),
            json.replacen("\"v\":1,", "\"v\":1 ,", 1),
            format!("{body},\"mac\":\"{}\"}}", mac.to_lowercase()),
            format!("{body},\"mac\": \"{mac}\"}}"),
            format!("{body} ,\"mac\":\"{mac}\"}}"),
            format!("{},\"mac\":\"{mac}\"}}", &body[..body.len() - 1]),
            format!("{body}\n,\"mac\":\"{mac}\"}}"),
            json.replace("\"app\":\"android/3.4.1\"", "\"app\":\"android\\/3.4.1\""),
        ];
        for text in variants {
            match Receipt::read(&text) {
                Err(Error::InvalidReceipt { .. }) => {}
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    /// Receipts of every shape: each outcome and reason, with and without
    /// the optional fields, texts that need escapes, negative coordinates.
    fn every_shape() -> Vec<Receipt> {
        let k = key();
        let mut drafts = vec![draft()];
        let mut bare = draft();
        bare.first_attempt_at = None;
        bare.location = None;
        bare.photo_sha256 = None;
        bare.format = CodeFormat::Crockford { length: 8 };
        bare.outcome = ReceiptOutcome::Delivered {
            code: Zeroizing::new("7k2m-9p4x".into()),
            verified: Verification::Online,
        };
        bare.sequence = 12_345;
        drafts.push(bare);
        for reason in [
            NotDeliveredReason::CustomerAbsent,
            NotDeliveredReason::CodeNotReceived,
            NotDeliveredReason::Refused,
            NotDeliveredReason::Damaged,
            NotDeliveredReason::Other {
                note: r#"left at "the back door" \ neighbour's, caf\u{e9} \u{1f4e6}"#.into(),
            },
        ] {
            let mut d = draft();
            d.outcome = ReceiptOutcome::NotDelivered { reason };
            d.attempts = 0;
            d.location = Some(Location::from_degrees(-33.8688, 151.2093, 0).unwrap());
            d.app_version = r#"ios/"17" \ 2"#.into();
            drafts.push(d);
        }
        drafts.into_iter().map(|d| k.sign(d).unwrap()).collect()
    }

    /// The one-pass reader takes every receipt this library writes, and
    /// gives what reading with serde and writing again gives.
    #[test]
    fn both_readings_agree_on_what_we_write() {
        for receipt in every_shape() {
            let json = receipt.to_json();
            let fast = Receipt::read_written(&json).expect("the written form reads in one pass");
            let slow = Receipt::read_any(&json).unwrap();
            assert_eq!(fast.0, receipt);
            assert_eq!(fast.0, slow.0);
            assert_eq!(*fast.1, *slow.1);
            assert_eq!(*fast.1, *receipt.mac_input());
        }
    }

    /// Any text one byte away from a receipt (a byte removed, changed to one
    /// of the bytes that matter in JSON, or added) either is not taken by
    /// the one-pass reader, or reads the same with serde.
    #[test]
    fn the_one_pass_reader_takes_nothing_serde_would_not() {
        let bytes: &[u8] = b"\\\"{}:,-0159aAz \n\t/u.eE+";
        let mut taken = 0usize;
        let mut checked = 0usize;
        for receipt in every_shape() {
            let json = receipt.to_json().to_string();
            let mut texts = Vec::new();
            for at in 0..json.len() {
                let mut removed = json.as_bytes().to_vec();
                removed.remove(at);
                texts.push(removed);
                for &b in bytes {
                    let mut changed = json.as_bytes().to_vec();
                    changed[at] = b;
                    texts.push(changed);
                    let mut added = json.as_bytes().to_vec();
                    added.insert(at, b);
                    texts.push(added);
                }
            }
            for text in texts {
                let Ok(text) = String::from_utf8(text) else {
                    continue;
                };
                checked += 1;
                if let Some((fast, input)) = Receipt::read_written(&text) {
                    taken += 1;
                    let (slow, slow_input) = Receipt::read_any(&text).unwrap_or_else(|e| {
                        panic!("{text}: taken in one pass, refused by serde: {e}")
                    });
                    assert_eq!(fast, slow, "{text}");
                    assert_eq!(*input, *slow_input, "{text}");
                }
            }
        }
        // Some one-byte changes are receipts too (another digit in a time,
        // another letter in an id), and those must have been taken.
        assert!(checked > 50_000, "{checked}");
        assert!(taken > 1_000, "{taken} of {checked}");
    }

    /// A 32-byte value reads from its base32 text and from no other: every
    /// last character, lower case, padding, a character more or less.
    #[test]
    fn thirty_two_bytes_read_only_in_the_written_form() {
        let mut value = [0u8; 32];
        for seed in 0u8..64 {
            for (i, b) in value.iter_mut().enumerate() {
                *b = seed
                    .wrapping_mul(37)
                    .wrapping_add(i as u8)
                    .rotate_left(u32::from(seed % 8));
            }
            let text = crate::b32::encode(&value);
            assert_eq!(decode_32(&text), Some(value));
            let head = &text[..51];
            for last in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abq=".chars() {
                let other = format!("{head}{last}");
                // The definition: what decodes to 32 bytes that write as it.
                let canonical = crate::b32::decode_any(&other)
                    .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                    .filter(|v| crate::b32::encode(v) == other);
                assert_eq!(decode_32(&other), canonical, "{other}");
            }
            for other in [
                text.to_lowercase(),
                format!("{text}===="),
                format!("{text}A"),
                head.to_string(),
                format!(" {text}"),
            ] {
                assert_eq!(decode_32(&other), None, "{other}");
            }
        }
    }

    #[test]
    fn debug_hides_the_code_and_keys() {
        let receipt = key().sign(draft()).unwrap();
        let text = format!("{receipt:?} {:?}", key());
        assert!(!text.contains("123456"), "{text}");
        assert!(
            !text.contains(&crate::b32::encode(key().secret_bytes())),
            "{text}"
        );
    }

    #[test]
    fn another_device_or_courier_key_does_not_verify() {
        let master = MasterKey::from_bytes("k1", &[7u8; 32]).unwrap();
        let receipt = key().sign(draft()).unwrap();
        for (courier, device) in [("courier-2", "phone-1"), ("courier-1", "phone-2")] {
            let other = DeviceKey::derive(&master, courier, device).unwrap();
            assert_eq!(receipt.verify_mac(&other), Err(Error::ReceiptMacMismatch));
        }
    }

    #[test]
    fn device_key_json_round_trips() {
        let k = key();
        let back = DeviceKey::from_json(&k.to_json()).unwrap();
        assert_eq!(back.secret_bytes(), k.secret_bytes());
        assert_eq!(back.courier_id(), "courier-1");
        assert!(matches!(
            DeviceKey::from_json(r#"{"v":2,"kid":"k","courier":"c","device":"d","key":"AA"}"#),
            Err(Error::InvalidDeviceKey { .. })
        ));
    }

    #[test]
    fn refuses_inconsistent_drafts() {
        let k = key();
        type Change = fn(&mut ReceiptDraft);
        let cases: Vec<(Change, &str)> = vec![
            (|d| d.attempts = 0, "at least 1 attempt"),
            (|d| d.attempts = 101, "at most 100"),
            (|d| d.first_attempt_at = Some(111), "after the decision"),
            (|d| d.app_version = " x".into(), "app version"),
            (|d| d.app_version = String::new(), "app version"),
            (
                |d| {
                    d.outcome = ReceiptOutcome::NotDelivered {
                        reason: NotDeliveredReason::Other { note: " ".into() },
                    }
                },
                "note",
            ),
            (
                |d| {
                    d.outcome = ReceiptOutcome::Delivered {
                        code: Zeroizing::new("12345".into()),
                        verified: Verification::Online,
                    }
                },
                "code entered",
            ),
        ];
        for (change, expected) in cases {
            let mut d = draft();
            change(&mut d);
            match k.sign(d) {
                Err(Error::InvalidReceipt { reason }) => {
                    assert!(reason.contains(expected), "{reason} / {expected}")
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
        assert!(Location::from_degrees(91.0, 0.0, 1).is_err());
        assert!(Location::from_degrees(f64::NAN, 0.0, 1).is_err());
    }
}
