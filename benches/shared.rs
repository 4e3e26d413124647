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
/// A build that turns the SHA extensions on at compile time (`-C
/// target-feature=+sha`, `-C target-cpu=native`) says so, and says when AVX2
/// is on too: one machine hashed 12 to 20 times slower built so with the
/// benches' fat LTO (BENCHMARKS.md, "Compiler flags").
pub fn sha_backend() -> &'static str {
    if cfg!(sha2_backend = "soft") {
        return "software (sha2_backend=\"soft\")";
    }
    if cfg!(all(target_feature = "sha", target_feature = "avx2")) {
        return "x86 SHA extensions, compiled in with AVX2 (one machine hashed 12-20x \
                slower built so: BENCHMARKS.md, \"Compiler flags\")";
    }
    if cfg!(target_feature = "sha") {
        return "x86 SHA extensions, compiled in (-C target-feature=+sha)";
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sha") {
        return "x86 SHA extensions";
    }
    "software (no SHA extensions on this CPU)"
}

/// The processor the figures ran on, from `/proc/cpuinfo` on Linux: its
/// name, family and model (cloud machines often name only the maker, and
/// two machines called "AMD EPYC" can differ by generations), and whether
/// it has AVX-512. "unknown CPU" elsewhere.
pub fn cpu() -> String {
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return "unknown CPU".to_owned();
    };
    let field = |name: &str| {
        info.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim().to_owned())
    };
    let avx512 = field("flags").is_some_and(|f| f.split(' ').any(|x| x == "avx512f"));
    match (field("model name"), field("cpu family"), field("model")) {
        (Some(name), Some(family), Some(model)) => format!(
            "{name}, family {family} model {model}, {} AVX-512",
            if avx512 { "with" } else { "without" }
        ),
        (Some(name), _, _) => name,
        _ => "unknown CPU".to_owned(),
    }
}
