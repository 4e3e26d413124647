//! Every parser's error message stays short and on one line, whatever the
//! input: a megabyte key name, id, value or URI parameter is never echoed
//! whole (issue 11, D14), and no control character reaches a log line.

use delivery_otp::{
    CodeFormat, DeviceKey, Error, KeySet, KeyUri, Order, Receipt, Rules, Templates, Ticket,
};

/// Longest error message any parser may give, in characters.
const MAX_MESSAGE_CHARS: usize = 600;

fn big(fill: char) -> String {
    std::iter::repeat_n(fill, 1 << 20).collect()
}

/// Hostile documents: a huge key, a huge string value, a huge number, huge
/// ids, control characters and newlines in echoed places.
fn hostile_json() -> Vec<(String, String)> {
    let a = big('A');
    let nl = format!("x\n{}\u{1b}[31m", "y".repeat(5000));
    vec![
        ("huge key".into(), format!("{{\"{a}\":1}}")),
        ("huge key, nested".into(), format!("{{\"v\":1,\"rules\":{{\"{a}\":1}}}}")),
        ("huge string value".into(), format!("{{\"v\":\"{a}\"}}")),
        ("huge version string".into(), format!("{{\"version\":\"{a}\"}}")),
        ("huge number".into(), format!("{{\"v\":{}}}", "9".repeat(1 << 20))),
        ("huge current id".into(), format!("{{\"version\":1,\"current\":\"{a}\",\"keys\":[]}}")),
        (
            "huge key id".into(),
            format!("{{\"version\":1,\"current\":\"k\",\"keys\":[{{\"id\":\"{a}\",\"secret\":\"AAAA\"}}]}}"),
        ),
        ("newline key".into(), format!("{{{}:1}}", serde_json::to_string(&nl).unwrap_or_default())),
        ("newline value".into(), format!("{{\"v\":{}}}", serde_json::to_string(&nl).unwrap_or_default())),
        ("unknown variant".into(), format!("{{\"method\":\"{a}\"}}")),
        ("deep nesting".into(), "[".repeat(100_000)),
        ("huge whitespace then junk".into(), format!("{}x", " ".repeat(1 << 20))),
    ]
}

fn check(parser: &str, case: &str, result: Result<(), Error>) {
    let Err(e) = result else {
        return;
    };
    let message = e.to_string();
    let chars = message.chars().count();
    assert!(
        chars <= MAX_MESSAGE_CHARS,
        "{parser}, {case}: a {chars}-character message: {}…",
        message.chars().take(200).collect::<String>()
    );
    assert!(
        !message.chars().any(char::is_control),
        "{parser}, {case}: a control character in {:?}",
        message.chars().take(300).collect::<String>()
    );
}

#[test]
fn json_parsers_never_echo_input_unbounded() {
    for (case, text) in hostile_json() {
        check("KeySet", &case, KeySet::from_json(&text).map(drop));
        check("Ticket", &case, Ticket::from_json(&text).map(drop));
        check("Receipt", &case, Receipt::from_json(&text).map(drop));
        check("DeviceKey", &case, DeviceKey::from_json(&text).map(drop));
        check("Rules", &case, Rules::from_json(&text).map(drop));
        check("Order", &case, Order::from_json(&text).map(drop));
        check("Templates", &case, Templates::from_json(&text).map(drop));
    }
}

#[test]
fn key_uris_and_formats_never_echo_input_unbounded() {
    let a = big('A');
    let uris = [
        format!("otpauth://totp/{a}?secret=JBSWY3DPEHPK3PXP"),
        format!("otpauth://totp/Acme:c?secret=JBSWY3DPEHPK3PXP&{a}=1"),
        format!("otpauth://totp/Acme:c?secret=JBSWY3DPEHPK3PXP&algorithm={a}"),
        format!("otpauth://totp/Acme:c?secret=JBSWY3DPEHPK3PXP&digits={a}"),
        format!("otpauth://totp/Acme:c?secret=JBSWY3DPEHPK3PXP&issuer={a}"),
        format!("otpauth://{a}/Acme:c?secret=JBSWY3DPEHPK3PXP"),
        "otpauth://totp/Acme:c?secret=JBSWY3DPEHPK3PXP&period=%0A%1B".to_string(),
    ];
    for (i, uri) in uris.iter().enumerate() {
        check("KeyUri", &format!("uri {i}"), KeyUri::parse(uri).map(drop));
    }
    for text in [
        format!("numeric-{a}"),
        format!("{a}-6"),
        "numeric-\n6".to_string(),
    ] {
        check("CodeFormat", "format", text.parse::<CodeFormat>().map(drop));
    }
}
