//! The risk policy and the customer's messages from the shared vector files
//! `tests/vectors/policy-*.json` (the Kotlin and Swift suites read them too).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use common::{load, s};
use delivery_otp::policy::message::{sms_segments, DEFAULT_TEMPLATES_JSON};
use delivery_otp::policy::rules::DEFAULT_RULES_JSON;
use delivery_otp::{
    mask_email, mask_phone, CodeFormat, Error, MessageValues, Order, Requirement, Rules,
    SmsEncoding, Templates, VerificationMode,
};
use serde_json::Value;

fn field_of(e: &Error) -> String {
    match e {
        Error::InvalidPolicy { field, .. }
        | Error::InvalidOrder { field, .. }
        | Error::InvalidTemplate { field, .. } => field.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn decisions_match_the_vectors() {
    let v = load("policy-decisions.json");
    let rules = Rules::from_json(&s(&v, "rules")).unwrap();
    assert_eq!(rules, Rules::defaults(), "the file holds the default rules");
    assert_eq!(rules, Rules::from_json(DEFAULT_RULES_JSON).unwrap());
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let name = s(c, "name");
        let order = Order::from_json(&c["order"].to_string()).unwrap();
        let d = rules.decide(&order).unwrap();
        assert_eq!(d.requirement.kind(), s(c, "requirement"), "{name}: {d:?}");
        let codes: Vec<&str> = d.reasons.iter().map(|r| r.code.as_str()).collect();
        let expected: Vec<&str> = c["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(codes, expected, "{name}");
        if let Some(details) = c.get("details") {
            let got: Vec<&str> = d.reasons.iter().map(|r| r.detail.as_str()).collect();
            let want: Vec<&str> = details
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            assert_eq!(got, want, "{name}");
        }
        match (&d.requirement, c.get("settings")) {
            (
                Requirement::Code {
                    settings,
                    verification,
                },
                Some(want),
            ) => {
                assert_eq!(settings.format.to_string(), s(want, "format"), "{name}");
                assert_eq!(
                    i64::from(settings.hash_bits),
                    want["hash_bits"].as_i64().unwrap()
                );
                assert_eq!(
                    i64::from(settings.max_attempts),
                    want["max_attempts"].as_i64().unwrap()
                );
                assert_eq!(
                    settings.lifetime_secs().to_string(),
                    s(want, "lifetime_secs")
                );
                let mode = match verification {
                    VerificationMode::Offline => "offline",
                    VerificationMode::Online => "online",
                };
                assert_eq!(mode, s(want, "verification"), "{name}");
            }
            (Requirement::Code { .. }, None) => panic!("{name}: settings missing in the vector"),
            (_, Some(_)) => panic!("{name}: settings for a decision without a code"),
            (_, None) => {}
        }
    }
}

#[test]
fn broken_rules_and_orders_name_the_field() {
    let v = load("policy-decisions.json");
    for c in v["bad_rules"].as_array().unwrap() {
        let e = Rules::from_json(&s(c, "rules")).unwrap_err();
        assert_eq!(e.kind(), s(c, "error"), "{}", s(c, "name"));
        assert_eq!(field_of(&e), s(c, "field"), "{}: {e}", s(c, "name"));
    }
    let rules = Rules::defaults();
    for c in v["bad_orders"].as_array().unwrap() {
        let e = Order::from_json(&c["order"].to_string())
            .and_then(|o| rules.decide(&o))
            .unwrap_err();
        assert_eq!(e.kind(), s(c, "error"), "{}", s(c, "name"));
        assert_eq!(field_of(&e), s(c, "field"), "{}: {e}", s(c, "name"));
    }
}

fn values(v: &Value) -> MessageValues {
    MessageValues {
        sender: s(v, "sender"),
        delivery_id: s(v, "delivery_id"),
        code: s(v, "code"),
        expires_at: delivery_otp::UnixTime::from_secs(s(v, "expires_at").parse().unwrap()),
        utc_offset_minutes: v["utc_offset_minutes"].as_i64().unwrap() as i32,
    }
}

#[test]
fn masks_and_messages_match_the_vectors() {
    let v = load("policy-messages.json");
    for c in v["masks"].as_array().unwrap() {
        let input = s(c, "input");
        let got = match s(c, "kind").as_str() {
            "phone" => mask_phone(&input),
            _ => mask_email(&input),
        };
        match c.get("masked") {
            Some(m) => assert_eq!(got.unwrap(), m.as_str().unwrap(), "{input}"),
            None => {
                let e = got.unwrap_err();
                assert_eq!(e.kind(), s(c, "error"), "{input}");
                // The message never repeats the contact.
                assert!(!e.to_string().contains(&input), "{e}");
            }
        }
    }
    let t = Templates::defaults();
    assert_eq!(t, Templates::from_json(DEFAULT_TEMPLATES_JSON).unwrap());
    for c in v["sms"].as_array().unwrap() {
        let sms = t
            .render_sms(&s(c, "locale"), &values(&c["values"]))
            .unwrap();
        assert_eq!(sms.text, s(c, "text"), "{}", s(c, "name"));
        let encoding = match sms.encoding {
            SmsEncoding::Gsm7 => "gsm7",
            SmsEncoding::Ucs2 => "ucs2",
        };
        assert_eq!(encoding, s(c, "encoding"), "{}", s(c, "name"));
        assert_eq!(i64::from(sms.units), c["units"].as_i64().unwrap());
        assert_eq!(i64::from(sms.segments), c["segments"].as_i64().unwrap());
    }
    for c in v["emails"].as_array().unwrap() {
        let email = t
            .render_email(&s(c, "locale"), &values(&c["values"]))
            .unwrap();
        assert_eq!(email.subject, s(c, "subject"));
        assert_eq!(email.body, s(c, "body"));
    }
    for c in v["bad_values"].as_array().unwrap() {
        let locale = c.get("locale").and_then(Value::as_str).unwrap_or("en");
        let e = t.render_sms(locale, &values(&c["values"])).unwrap_err();
        assert_eq!(field_of(&e), s(c, "field"), "{}", s(c, "name"));
    }
    for c in v["hints"].as_array().unwrap() {
        let format: CodeFormat = s(c, "format").parse().unwrap();
        assert_eq!(
            t.format_hint(&s(c, "locale"), format).unwrap(),
            s(c, "hint")
        );
    }
    for c in v["bad_templates"].as_array().unwrap() {
        let e = Templates::from_json(&s(c, "templates")).unwrap_err();
        assert_eq!(field_of(&e), s(c, "field"), "{}: {e}", s(c, "name"));
    }
}

#[test]
fn segment_counting_follows_gsm_03_38() {
    assert_eq!(sms_segments(&"a".repeat(160)), (SmsEncoding::Gsm7, 160, 1));
    assert_eq!(sms_segments(&"a".repeat(161)), (SmsEncoding::Gsm7, 161, 2));
    // The euro sign is an escape plus one septet.
    assert_eq!(sms_segments(&"€".repeat(80)), (SmsEncoding::Gsm7, 160, 1));
    assert_eq!(sms_segments(&"ł".repeat(70)), (SmsEncoding::Ucs2, 70, 1));
    assert_eq!(sms_segments(&"ł".repeat(71)), (SmsEncoding::Ucs2, 71, 2));
}
