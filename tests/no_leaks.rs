//! `Debug` of every type that holds a secret or a code, and the message of
//! every error that bad input involving one can cause, never shows either.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::sync::Arc;

use delivery_otp::Handover;
use delivery_otp::{
    Backend, DeliverySettings, DeviceKey, Hotp, InMemoryAttemptStore, InMemoryStateStore, KeySet,
    KeyUri, MasterKey, MessageValues, OfflineVerifier, Receipt, ReceiptDetails, ReceiptDraft,
    ReceiptOutcome, Secret, Templates, Ticket, Totp, TotpConfig, Verification,
};
use zeroize::Zeroizing;

const NOW: u64 = 1_764_000_000;

/// The secret material of the fixture, in every form it could leak in.
struct Forbidden(Vec<String>);

impl Forbidden {
    fn check(&self, what: &str, text: &str) {
        for f in &self.0 {
            assert!(!text.contains(f.as_str()), "{what} shows {f:?}: {text}");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn debug_output_never_shows_a_secret_or_a_code() {
    let secret_bytes = *b"an otp secret for a courier!";
    let secret = Secret::from_bytes(&secret_bytes).unwrap();
    let secret_b32 = secret.to_base32().to_string();
    let master = MasterKey::from_bytes("k1", &[0x5a; 32]).unwrap();
    let master_b32 = master.to_base32().to_string();
    let keys = KeySet::new(master.clone());
    let backend = Backend::new(keys.clone(), Arc::new(InMemoryAttemptStore::new()));
    let issued = backend
        .issue("PKG-1", 0, "courier-1", NOW, &DeliverySettings::default())
        .unwrap();
    let code = issued.code.as_str().to_string();
    let device_key = backend.provision_device("courier-1", "phone-1").unwrap();
    let device_json = device_key.to_json().to_string();
    let device_secret: serde_json::Value = serde_json::from_str(&device_json).unwrap();
    let device_b32 = device_secret["key"].as_str().unwrap().to_string();
    let ticket_json = issued.ticket.to_json();
    let ticket_value: serde_json::Value = serde_json::from_str(&ticket_json).unwrap();

    let forbidden = Forbidden(vec![
        secret_b32.clone(),
        hex(&secret_bytes),
        String::from_utf8_lossy(&secret_bytes).into_owned(),
        master_b32.clone(),
        hex(&[0x5a; 32]),
        device_b32.clone(),
        code.clone(),
        issued.code.grouped(),
        ticket_value["hkey"].as_str().unwrap().to_string(),
        ticket_value["mac"].as_str().unwrap().to_string(),
        format!("\"hash\":{}", ticket_value["hash"]),
    ]);

    let hotp = Hotp::new(secret.clone(), delivery_otp::Algorithm::Sha1, 6).unwrap();
    let totp = Totp::new(secret.clone(), TotpConfig::default()).unwrap();
    let uri = KeyUri::new_totp(secret.clone(), Some("Acme".into()), "courier-1".into());
    let verifier = OfflineVerifier::new(issued.ticket.clone(), Arc::new(InMemoryStateStore::new()));
    verifier.verify(&code, NOW + 1).unwrap();
    let outcome = ReceiptOutcome::Delivered {
        code: Zeroizing::new(code.clone()),
        verified: Verification::Offline,
    };
    let handover = Handover::DeliveredOffline {
        code: Zeroizing::new(code.clone()),
    };
    let receipt = verifier
        .receipt(
            &device_key,
            handover.clone(),
            NOW + 2,
            ReceiptDetails {
                app_version: "test/1".into(),
                ..ReceiptDetails::default()
            },
        )
        .unwrap();
    let draft = ReceiptDraft::for_ticket(&issued.ticket, outcome.clone(), 1, NOW + 2, "test/1");
    let values = MessageValues {
        sender: "Acme".into(),
        delivery_id: "PKG-1".into(),
        code: code.clone(),
        expires_at: delivery_otp::UnixTime::from_secs(NOW + 86_400),
        utc_offset_minutes: 0,
    };
    let templates = Templates::defaults();
    let sms = templates.render_sms("en", &values).unwrap();
    let email = templates.render_email("en", &values).unwrap();
    assert!(
        sms.text.contains(&issued.code.grouped()),
        "the SMS carries the code"
    );

    let rendered = [
        ("Secret", format!("{secret:?}")),
        ("Hotp", format!("{hotp:?}")),
        ("Totp", format!("{totp:?}")),
        ("KeyUri", format!("{uri:?}")),
        ("MasterKey", format!("{master:?}")),
        ("KeySet", format!("{keys:?}")),
        ("Backend", format!("{backend:?}")),
        ("Issued", format!("{issued:?}")),
        ("Code", format!("{:?}", issued.code)),
        ("Ticket", format!("{:?}", issued.ticket)),
        ("OfflineVerifier", format!("{verifier:?}")),
        ("DeviceKey", format!("{device_key:?}")),
        ("ReceiptOutcome", format!("{outcome:?}")),
        ("Handover", format!("{handover:?}")),
        ("ReceiptDraft", format!("{draft:?}")),
        ("Receipt", format!("{receipt:?}")),
        ("MessageValues", format!("{values:?}")),
        ("Sms", format!("{sms:?}")),
        ("Email", format!("{email:?}")),
    ];
    for (what, text) in rendered {
        forbidden.check(what, &text);
    }

    // Errors from bad input that holds a secret or a code.
    let mut bad_secret = secret_b32.clone();
    bad_secret.push('1');
    let receipt_json = receipt.to_json().to_string();
    let errors = [
        Secret::from_base32(&bad_secret).unwrap_err(),
        KeyUri::parse(&format!("otpauth://totp/A?secret={secret_b32}&digits=5")).unwrap_err(),
        KeyUri::parse(&format!("otpauth://hotp/A?secret={secret_b32}")).unwrap_err(),
        KeySet::from_json(&format!(
            r#"{{"version":1,"current":"k1","keys":[{{"id":"k1","secret":"{master_b32}1"}}]}}"#
        ))
        .unwrap_err(),
        DeviceKey::from_json(&device_json.replace("\"v\":1", "\"v\":2")).unwrap_err(),
        DeviceKey::from_json(&device_json.replace(&device_b32, &device_b32[..10])).unwrap_err(),
        Ticket::from_json(&ticket_json.replace("\"attempts\":5", "\"attempts\":500")).unwrap_err(),
        Ticket::from_json(&ticket_json[..ticket_json.len() - 3]).unwrap_err(),
        Receipt::from_json(&receipt_json.replace(&code, &format!("{code}0"))).unwrap_err(),
        Receipt::from_json(&receipt_json.replace(",\"kid\"", ", \"kid\"")).unwrap_err(),
        Receipt::from_json(&receipt_json[..receipt_json.len() - 2]).unwrap_err(),
        backend
            .verify_online(
                &issued.ticket,
                &format!("{code}x"),
                "courier-1",
                "phone-1",
                NOW + 1,
            )
            .unwrap_err(),
        verifier
            .receipt(
                &device_key,
                Handover::NotDelivered {
                    reason: delivery_otp::NotDeliveredReason::Refused,
                },
                NOW + 3,
                ReceiptDetails::default(),
            )
            .unwrap_err(),
        templates
            .render_sms(
                "en",
                &MessageValues {
                    code: format!("{code} "),
                    ..values.clone()
                },
            )
            .unwrap_err(),
        totp.verify(&format!("{code}1234"), NOW, Default::default(), None)
            .unwrap_err(),
    ];
    for e in errors {
        forbidden.check(e.kind(), &e.to_string());
        forbidden.check(e.kind(), &format!("{e:?}"));
    }
    // And the reconciliation's explanation, for a right and a wrong code.
    let r = backend
        .reconcile(&receipt_json, &issued.ticket, NOW + 10)
        .unwrap();
    forbidden.check("explanation", &r.explanation);
}
