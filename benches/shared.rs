//! What the benches share: the time they run at, a fresh delivery's receipt,
//! and which SHA-256 they ran on.
#![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]

use delivery_otp::{
    Backend, CodeFormat, DeliverySettings, DeviceKey, ReceiptDraft, ReceiptOutcome, Ticket,
    Verification,
};
use zeroize::Zeroizing;

/// The backend's clock in every bench.
pub const NOW: u64 = 1_764_000_000;

/// A receipt (its JSON) for a fresh delivery `B-<tag>-<n>` issued by `b` to
/// `key`'s courier, delivered with the right code offline, and its ticket:
/// reconciling it takes the whole path.
pub fn fresh_receipt(b: &Backend, key: &DeviceKey, tag: &str, n: u64) -> (String, Ticket) {
    let format = CodeFormat::Numeric { digits: 6 };
    let delivery = format!("B-{tag}-{n}");
    let settings = DeliverySettings {
        format,
        ..DeliverySettings::default()
    };
    let issued = b
        .issue(&delivery, 0, key.courier_id(), NOW, &settings)
        .unwrap();
    let draft = ReceiptDraft {
        delivery_id: delivery,
        key_id: b.keys().current().id().into(),
        sequence: 0,
        format,
        outcome: ReceiptOutcome::Delivered {
            code: Zeroizing::new(issued.code.as_str().into()),
            verified: Verification::Offline,
        },
        attempts: 1,
        first_attempt_at: Some(NOW + 10),
        decided_at: NOW + 11,
        location: None,
        photo_sha256: None,
        app_version: "android/3.4.1".into(),
    };
    (
        key.sign(draft).unwrap().to_json().to_string(),
        issued.ticket,
    )
}

/// Which SHA-256 the figures ran on: sha2 picks the x86 SHA extensions at run
/// time when the CPU has them, unless built with `--cfg sha2_backend="soft"`.
pub fn sha_backend() -> &'static str {
    if cfg!(sha2_backend = "soft") {
        return "software (sha2_backend=\"soft\")";
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sha") {
        return "x86 SHA extensions";
    }
    "software (no SHA extensions on this CPU)"
}
