//! The words around the code: the customer's SMS and e-mail, the masked
//! contact the courier sees, and the code format hint.
//!
//! Templates are data ([`Templates`], JSON, version 1), one set per locale.
//! Placeholders are `{sender}`, `{delivery}`, `{code}`, `{expires}` and
//! `{warning}`; `{{` and `}}` write a brace. The SMS and the e-mail body must
//! hold both `{code}` and `{warning}`: a message that gives the code without
//! saying it is only for the courier at the door, after checking the parcel,
//! helps phishers. The default English and German SMS fit one GSM-7 segment
//! (160 characters) with a sender id of up to 11 characters, a parcel id of
//! up to 20 and codes of up to 8 digits; `{expires}` is written in the
//! customer's local time (`utc_offset_minutes`), and `{offset}` can add the
//! offset to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::delivery::code::group;
use crate::delivery::settings::CodeFormat;
use crate::error::{Error, Result};
use crate::time::UnixTime;

/// The templates file version this library reads.
pub const TEMPLATES_VERSION: u32 = 1;

/// The default templates: English and German.
pub const DEFAULT_TEMPLATES_JSON: &str = r#"{"version":1,"locales":{
"en":{"sms":"{sender}: code {code} for parcel {delivery}, until {expires}. {warning}",
"email_subject":"{sender}: your delivery code for parcel {delivery}",
"email_body":"Hello,\n\nyour delivery code for parcel {delivery} is {code}. It is valid until {expires}.\n\n{warning}\n\n{sender}",
"warning":"Only tell the courier at your door, after checking the parcel. Never by phone.",
"expires":"{hh}:{mm} {d} {month}",
"months":["Jan","Feb","Mar","Apr","May","Jun","Jul","Aug","Sep","Oct","Nov","Dec"],
"hint_numeric":"{n} digits","hint_crockford":"{n} letters and digits"},
"de":{"sms":"{sender}: Code {code} für Paket {delivery}, bis {expires}. {warning}",
"email_subject":"{sender}: Ihr Zustellcode für Paket {delivery}",
"email_body":"Guten Tag,\n\nIhr Zustellcode für Paket {delivery} lautet {code}. Er gilt bis {expires}.\n\n{warning}\n\n{sender}",
"warning":"Nur dem Boten an der Tür nennen, nach Prüfung des Pakets. Nie am Telefon.",
"expires":"{d}. {month}, {hh}:{mm}",
"months":["Jan.","Feb.","März","Apr.","Mai","Juni","Juli","Aug.","Sep.","Okt.","Nov.","Dez."],
"hint_numeric":"{n} Ziffern","hint_crockford":"{n} Buchstaben und Ziffern"}}}"#;

/// One locale's texts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocaleTemplates {
    /// The SMS.
    pub sms: String,
    /// The e-mail subject (no code in it: subjects show in notifications).
    pub email_subject: String,
    /// The e-mail body.
    pub email_body: String,
    /// The anti-phishing warning that `{warning}` stands for.
    pub warning: String,
    /// How `{expires}` is written: `{hh}`, `{mm}`, `{d}`, `{month}`, `{offset}`.
    pub expires: String,
    /// Twelve month names.
    pub months: Vec<String>,
    /// The hint for numeric codes: `{n}` digits.
    pub hint_numeric: String,
    /// The hint for Crockford codes: `{n}` characters.
    pub hint_crockford: String,
}

/// Message templates by locale (`en`, `de`, `pt-BR`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    /// Format version, 1.
    pub version: u32,
    /// Texts by locale.
    pub locales: BTreeMap<String, LocaleTemplates>,
}

/// What a message says. `Debug` leaves out the code.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
pub struct MessageValues {
    /// Who sends it, such as `Acme` (for an SMS sender id, at most 11 characters).
    pub sender: String,
    /// The delivery id or parcel number.
    pub delivery_id: String,
    /// The code.
    pub code: String,
    /// Until when it is valid.
    pub expires_at: UnixTime,
    /// The customer's UTC offset in minutes (-720 to 840), for `{expires}`.
    #[cfg_attr(feature = "ffi", uniffi(default = 0))]
    pub utc_offset_minutes: i32,
}

/// How an SMS is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
pub enum SmsEncoding {
    /// The GSM 03.38 7-bit alphabet: 160 characters in one segment, 153 per
    /// segment when split.
    Gsm7,
    /// UCS-2: 70 characters in one segment, 67 when split.
    Ucs2,
}

/// A rendered SMS. `Debug` leaves out the text, which holds the code.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
pub struct Sms {
    /// The text.
    pub text: String,
    /// Its encoding.
    pub encoding: SmsEncoding,
    /// Characters as the network counts them (septets, or UTF-16 units).
    pub units: i32,
    /// How many segments it takes.
    pub segments: i32,
}

/// A rendered e-mail. `Debug` leaves out the body, which holds the code.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
pub struct Email {
    /// The subject.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

impl core::fmt::Debug for MessageValues {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MessageValues")
            .field("sender", &self.sender)
            .field("delivery_id", &self.delivery_id)
            .field("code", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("utc_offset_minutes", &self.utc_offset_minutes)
            .finish()
    }
}

impl core::fmt::Debug for Sms {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sms")
            .field("text", &"[redacted]")
            .field("encoding", &self.encoding)
            .field("units", &self.units)
            .field("segments", &self.segments)
            .finish()
    }
}

impl core::fmt::Debug for Email {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Email")
            .field("subject", &self.subject)
            .field("body", &"[redacted]")
            .finish()
    }
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidTemplate {
        field: crate::error::echoed(&field.into()),
        reason: crate::error::echoed(&reason.into()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Brace(char),
    Slot(&'a str),
}

/// Splits a template into text and placeholders.
fn parse<'a>(template: &'a str, allowed: &[&str], field: &str) -> Result<Vec<Piece<'a>>> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("{{") {
            pieces.push(Piece::Brace('{'));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("}}") {
            pieces.push(Piece::Brace('}'));
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let end = after
                .find('}')
                .ok_or_else(|| bad(field, "a '{' without its '}' (write {{ for a brace)"))?;
            let name = after.get(..end).unwrap_or_default();
            if !allowed.contains(&name) {
                return Err(bad(
                    field,
                    format!(
                        "unknown placeholder {{{name}}}; this text allows {}",
                        allowed
                            .iter()
                            .map(|a| format!("{{{a}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            pieces.push(Piece::Slot(name));
            rest = after.get(end.saturating_add(1)..).unwrap_or_default();
        } else if rest.starts_with('}') {
            return Err(bad(field, "a '}' without its '{' (write }} for a brace)"));
        } else {
            let end = rest.find(['{', '}']).unwrap_or(rest.len());
            pieces.push(Piece::Text(rest.get(..end).unwrap_or_default()));
            rest = rest.get(end..).unwrap_or_default();
        }
    }
    Ok(pieces)
}

fn fill(pieces: &[Piece<'_>], value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Brace(c) => out.push(*c),
            Piece::Slot(name) => out.push_str(&value(name)),
        }
    }
    out
}

const MESSAGE_SLOTS: [&str; 5] = ["sender", "delivery", "code", "expires", "warning"];

impl LocaleTemplates {
    fn check(&self, locale: &str) -> Result<()> {
        let at = |name: &str| format!("locales.{locale}.{name}");
        for (name, text, needs_code) in [
            ("sms", &self.sms, true),
            ("email_body", &self.email_body, true),
            ("email_subject", &self.email_subject, false),
        ] {
            let pieces = parse(text, &MESSAGE_SLOTS, &at(name))?;
            let has = |slot: &str| pieces.contains(&Piece::Slot(slot));
            if needs_code && !has("code") {
                return Err(bad(at(name), "the message has no {code}"));
            }
            if needs_code && !has("warning") {
                return Err(bad(
                    at(name),
                    "the message has no {warning}: it must say the code is only for the courier at the door",
                ));
            }
            if !needs_code && has("code") {
                return Err(bad(
                    at(name),
                    "no {code} in a subject: subjects show in notifications and lists",
                ));
            }
        }
        if self.warning.trim().is_empty() {
            return Err(bad(at("warning"), "the warning is empty"));
        }
        if self.warning.contains(['{', '}']) {
            return Err(bad(at("warning"), "the warning has no placeholders"));
        }
        parse(
            &self.expires,
            &["hh", "mm", "d", "month", "offset"],
            &at("expires"),
        )?;
        if self.months.len() != 12 {
            return Err(bad(at("months"), "there are 12 month names"));
        }
        parse(&self.hint_numeric, &["n"], &at("hint_numeric"))?;
        parse(&self.hint_crockford, &["n"], &at("hint_crockford"))?;
        Ok(())
    }
}

/// Days since 1970-01-01 to (month 1-12, day 1-31), proleptic Gregorian
/// (the civil-from-days method).
// Every value below is derived from the day of a 400-year era, 0 to
// 146 096, so no operation can overflow or divide by zero.
#[allow(clippy::arithmetic_side_effects)]
fn month_and_day(days: i64) -> (u32, u32) {
    let doe = days.saturating_add(719_468).rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

impl Templates {
    /// The default templates (English and German).
    pub fn defaults() -> Self {
        Self::from_json(DEFAULT_TEMPLATES_JSON).unwrap_or(Templates {
            version: TEMPLATES_VERSION,
            locales: BTreeMap::new(),
        })
    }

    /// Reads and checks templates.
    ///
    /// # Errors
    /// [`Error::InvalidTemplate`] naming the field: malformed JSON, another
    /// version, a message without `{code}` or `{warning}`, a `{code}` in a
    /// subject, an unknown placeholder, an unpaired brace, an empty warning,
    /// or not 12 month names.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut de = serde_json::Deserializer::from_str(text);
        let templates: Templates = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            bad(
                if path == "." {
                    "(top)".to_string()
                } else {
                    path
                },
                e.into_inner().to_string(),
            )
        })?;
        if templates.version != TEMPLATES_VERSION {
            return Err(bad(
                "version",
                format!("this library reads version {TEMPLATES_VERSION}"),
            ));
        }
        if templates.locales.is_empty() {
            return Err(bad("locales", "no locale"));
        }
        for (locale, t) in &templates.locales {
            t.check(locale)?;
        }
        Ok(templates)
    }

    /// The texts for `locale`, or for its language (`de` for `de-AT`).
    ///
    /// # Errors
    /// [`Error::InvalidTemplate`] when neither exists.
    pub fn locale(&self, locale: &str) -> Result<&LocaleTemplates> {
        let language = locale.split(['-', '_']).next().unwrap_or(locale);
        self.locales
            .get(locale)
            .or_else(|| self.locales.get(language))
            .ok_or_else(|| {
                bad(
                    "locale",
                    format!(
                        "no templates for '{locale}'; there are {}",
                        self.locales.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            })
    }

    fn values(&self, t: &LocaleTemplates, v: &MessageValues) -> Result<impl Fn(&str) -> String> {
        crate::delivery::code::check_delivery_id(&v.delivery_id)
            .map_err(|e| bad("values.delivery_id", e.to_string()))?;
        if v.sender.trim().is_empty() || v.sender.chars().any(char::is_control) {
            return Err(bad(
                "values.sender",
                "the sender is not empty and has no control characters",
            ));
        }
        if v.code.is_empty() || !v.code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad(
                "values.code",
                "the code is the issued code, letters and digits only",
            ));
        }
        if !(-720..=840).contains(&v.utc_offset_minutes) {
            return Err(bad(
                "values.utc_offset_minutes",
                "an offset is -720 to 840 minutes",
            ));
        }
        let local = i64::try_from(v.expires_at.secs())
            .ok()
            .and_then(|t| t.checked_add(i64::from(v.utc_offset_minutes).saturating_mul(60)))
            .ok_or_else(|| bad("values.expires_at", "the time is out of range"))?;
        let (month, day) = month_and_day(local.div_euclid(86_400));
        let secs = local.rem_euclid(86_400);
        let offset = match v.utc_offset_minutes {
            0 => String::new(),
            m => format!(
                "{}{}{}",
                if m < 0 { '-' } else { '+' },
                m.unsigned_abs() / 60,
                match m.unsigned_abs() % 60 {
                    0 => String::new(),
                    r => format!(":{r:02}"),
                }
            ),
        };
        let month_name = t
            .months
            .get(usize::try_from(month.saturating_sub(1)).unwrap_or(0))
            .cloned()
            .unwrap_or_default();
        let expires_pieces = parse(&t.expires, &["hh", "mm", "d", "month", "offset"], "expires")?;
        let expires = fill(&expires_pieces, |name| match name {
            "hh" => format!("{:02}", secs / 3600),
            "mm" => format!("{:02}", secs % 3600 / 60),
            "d" => day.to_string(),
            "month" => month_name.clone(),
            "offset" => offset.clone(),
            _ => String::new(),
        });
        let sender = v.sender.clone();
        let delivery = v.delivery_id.clone();
        let code = group(&v.code);
        let warning = t.warning.clone();
        Ok(move |name: &str| match name {
            "sender" => sender.clone(),
            "delivery" => delivery.clone(),
            "code" => code.clone(),
            "expires" => expires.clone(),
            "warning" => warning.clone(),
            _ => String::new(),
        })
    }

    /// The SMS for `locale`, with its encoding and segment count.
    ///
    /// # Errors
    /// [`Error::InvalidTemplate`] for an unknown locale or a bad value.
    pub fn render_sms(&self, locale: &str, values: &MessageValues) -> Result<Sms> {
        let t = self.locale(locale)?;
        let value = self.values(t, values)?;
        let text = fill(&parse(&t.sms, &MESSAGE_SLOTS, "sms")?, value);
        let (encoding, units, segments) = sms_segments(&text);
        Ok(Sms {
            text,
            encoding,
            units: crate::error::count(units),
            segments: crate::error::count(segments),
        })
    }

    /// The e-mail for `locale`.
    ///
    /// # Errors
    /// [`Error::InvalidTemplate`] for an unknown locale or a bad value.
    pub fn render_email(&self, locale: &str, values: &MessageValues) -> Result<Email> {
        let t = self.locale(locale)?;
        let value = self.values(t, values)?;
        Ok(Email {
            subject: fill(
                &parse(&t.email_subject, &MESSAGE_SLOTS, "email_subject")?,
                &value,
            ),
            body: fill(&parse(&t.email_body, &MESSAGE_SLOTS, "email_body")?, &value),
        })
    }

    /// What the courier's app says the code looks like: `6 digits`.
    ///
    /// # Errors
    /// [`Error::InvalidTemplate`] for an unknown locale.
    pub fn format_hint(&self, locale: &str, format: CodeFormat) -> Result<String> {
        let t = self.locale(locale)?;
        let (template, n) = match format {
            CodeFormat::Numeric { digits } => (&t.hint_numeric, digits),
            CodeFormat::Crockford { length } => (&t.hint_crockford, length),
        };
        Ok(fill(&parse(template, &["n"], "hint")?, |_| n.to_string()))
    }
}

const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";
const GSM7_SINGLE: u32 = 160;
const GSM7_MULTI: u32 = 153;
const UCS2_SINGLE: u32 = 70;
const UCS2_MULTI: u32 = 67;

/// How a text travels as SMS: its encoding, its length in the network's
/// units, and its number of segments.
pub fn sms_segments(text: &str) -> (SmsEncoding, u32, u32) {
    let mut septets = 0u32;
    let mut gsm = true;
    for c in text.chars() {
        if GSM7_BASIC.contains(c) {
            septets = septets.saturating_add(1);
        } else if GSM7_EXTENSION.contains(c) {
            septets = septets.saturating_add(2);
        } else {
            gsm = false;
            break;
        }
    }
    let (encoding, units, single, multi) = if gsm {
        (SmsEncoding::Gsm7, septets, GSM7_SINGLE, GSM7_MULTI)
    } else {
        let units = u32::try_from(text.encode_utf16().count()).unwrap_or(u32::MAX);
        (SmsEncoding::Ucs2, units, UCS2_SINGLE, UCS2_MULTI)
    };
    let segments = if units <= single {
        1
    } else {
        units.div_ceil(multi)
    };
    (encoding, units, segments)
}

// ---------------------------------------------------------------------------
// Masks

const DOT: char = '•';

/// Masks a phone number for the courier's screen: the country code and the
/// last four digits stay, the rest become dots in groups of three
/// (`+44 7700 900123` gives `+44 ••• ••• 0123`; the first group takes any
/// remainder, so the national `07700 900123` gives `•••• ••• 0123`). Reads
/// E.164 (`+44...`), the `00` international prefix and national numbers,
/// with spaces, dashes, dots, slashes and brackets.
///
/// # Errors
/// [`Error::InvalidContact`] for other characters, or fewer than 7 or more
/// than 15 digits.
pub fn mask_phone(phone: &str) -> Result<String> {
    let trimmed = phone.trim();
    let (international, rest) = if let Some(r) = trimmed.strip_prefix('+') {
        (true, r)
    } else if let Some(r) = trimmed.strip_prefix("00") {
        (true, r)
    } else {
        (false, trimmed)
    };
    let mut text = String::new();
    for c in rest.chars() {
        if c.is_ascii_digit() {
            text.push(c);
        } else if !matches!(c, ' ' | '-' | '.' | '(' | ')' | '/') {
            return Err(Error::InvalidContact {
                reason:
                    "a phone number has only digits, a leading +, spaces, dashes, dots and brackets"
                        .into(),
            });
        }
    }
    if !(7..=15).contains(&text.len()) {
        return Err(Error::InvalidContact {
            reason: format!("a phone number has 7 to 15 digits, not {}", text.len()),
        });
    }
    let country_len = if international {
        country_code_len(&text)
    } else {
        0
    };
    let (country, national) = text.split_at(country_len.min(text.len()));
    let keep = national.len().min(4);
    let hidden = national.len().saturating_sub(keep);
    let (_, last) = national.split_at(hidden);
    // Groups of three dots; the first group takes the remainder.
    let count = (hidden / 3).max(1);
    let first = hidden.saturating_sub(3usize.saturating_mul(count.saturating_sub(1)));
    let mut groups: Vec<String> = Vec::new();
    if hidden > 0 {
        groups.push(DOT.to_string().repeat(first));
        for _ in 1..count {
            groups.push(DOT.to_string().repeat(3));
        }
    }
    groups.push(last.to_string());
    let body = groups.join(" ");
    Ok(if international {
        format!("+{country} {body}")
    } else {
        body
    })
}

/// The length of the ITU-T E.164 country calling code at the start of
/// `digits`: 1 for zones 1 and 7, 2 for the two-digit codes, else 3.
fn country_code_len(digits: &str) -> usize {
    const TWO: [&str; 44] = [
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
        "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
        "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    match digits.as_bytes().first() {
        Some(b'1' | b'7') => 1,
        _ if TWO.iter().any(|p| digits.starts_with(p)) => 2,
        _ => 3,
    }
}

/// Masks an e-mail address: the first character of the local part and of
/// the domain stay, and the top-level domain (`j•••@e•••.com`).
///
/// # Errors
/// [`Error::InvalidContact`] unless it has one `@`, a local part, and a
/// domain with a dot and no spaces.
pub fn mask_email(email: &str) -> Result<String> {
    let bad = |reason: &str| Error::InvalidContact {
        reason: reason.into(),
    };
    let email = email.trim();
    let (local, domain) = email
        .split_once('@')
        .ok_or_else(|| bad("an e-mail address has an '@'"))?;
    if local.is_empty() || domain.contains('@') || email.chars().any(char::is_whitespace) {
        return Err(bad(
            "an e-mail address has one '@', something before it, and no spaces",
        ));
    }
    let (name, tld) = domain
        .rsplit_once('.')
        .filter(|(n, t)| !n.is_empty() && !t.is_empty())
        .ok_or_else(|| bad("an e-mail domain has a dot, with something on both sides"))?;
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    Ok(format!(
        "{}{DOT}{DOT}{DOT}@{}{DOT}{DOT}{DOT}.{tld}",
        first(local),
        first(name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_and_day_of_known_dates() {
        assert_eq!(month_and_day(0), (1, 1)); // 1970-01-01
        assert_eq!(month_and_day(11_016), (2, 29)); // 2000-02-29
        assert_eq!(month_and_day(20_088), (12, 31)); // 2024-12-31
        assert_eq!(month_and_day(-1), (12, 31)); // 1969-12-31
    }
}
