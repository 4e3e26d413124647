//! `delivery-otp demo`: a courier's two-factor enrolment and login, end to end.

use std::fmt::Write;

use delivery_otp::{Error, KeyUri, Secret, Window};

/// Runs the demo at unix time `now` and returns what it prints.
pub fn run(now: u64) -> Result<String, Error> {
    let mut out = String::new();
    let mut line = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    line("Courier two-factor enrolment (RFC 6238 TOTP), on built-in defaults".into());
    line(String::new());

    let secret = Secret::generate()?;
    line(format!(
        "1. backend: new secret of {} bits from the OS random generator",
        secret.len().saturating_mul(8)
    ));
    let key = KeyUri::new_totp(
        secret,
        Some("Acme Deliveries".into()),
        "courier-17@acme.example".into(),
    );
    let uri = key.to_uri()?;
    line(format!(
        "2. backend: key URI for the QR code:\n   {}",
        uri.as_str()
    ));

    let phone = KeyUri::parse(&uri)?.totp()?;
    let code = phone.generate(now)?;
    line(format!(
        "3. courier's authenticator app at unix time {now}: {}",
        group(code.as_str())
    ));

    let server = key.totp()?;
    let first = server.verify(code.as_str(), now, Window::RECOMMENDED, None)?;
    let Some(first) = first else {
        line("4. backend: code refused (this should not happen)".into());
        return Ok(out);
    };
    line(format!(
        "4. backend: code accepted at time step {} (clock drift {} steps); step stored",
        first.step, first.drift
    ));
    let replay = server.verify(code.as_str(), now, Window::RECOMMENDED, Some(first.step))?;
    line(format!(
        "5. backend: the same code again: {}",
        if replay.is_none() {
            "refused, its step was already used"
        } else {
            "ACCEPTED (replay not caught!)"
        }
    ));
    let wrong = if code.as_str() == "000000" {
        "111111"
    } else {
        "000000"
    };
    let refused = server
        .verify(wrong, now, Window::RECOMMENDED, Some(first.step))?
        .is_none();
    line(format!(
        "6. backend: a wrong code: {}",
        if refused { "refused" } else { "ACCEPTED" }
    ));
    Ok(out.trim_end().to_string())
}

/// "482913" -> "482 913", for reading aloud.
fn group(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    chars
        .chunks(3)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}
