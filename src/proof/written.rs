//! Reading a receipt in its one written form in one pass.
//!
//! A receipt reads only in the form this library writes (fields in order,
//! no spaces, serde_json's escapes), so no byte can change without changing
//! what the MAC covers. Reading it with serde and writing it again to
//! compare checks that, at the cost of a second pass and a copy. This reader
//! walks the text once and accepts only that form as it goes: the field
//! names and punctuation byte for byte, integers without leading zeros or a
//! minus zero, strings with no escapes but `\"` and `\\` (a valid receipt
//! needs no other, as no field may hold a control character). It gives up
//! (`None`) at the first byte it does not expect, and the caller reads the
//! text the slow way, which refuses it with the precise reason or, for a
//! form this reader does not take, accepts it the same.
//!
//! What it reads goes through the same conversion and rules as serde's
//! reading ([`super::receipt`]). The tests in that module check that both
//! readings agree on every shape of receipt we write and on texts one byte
//! away from one; the fuzz target `receipt` that whatever reads is exactly
//! the form we write.

use std::borrow::Cow;

use zeroize::Zeroizing;

use super::receipt::{LocationWire, Wire};

/// A receipt's wire fields as written, and the parts of the text the
/// reader's caller still needs.
pub(super) struct Written<'a> {
    pub(super) wire: Wire<'a>,
    /// The text before `,"mac":"`: the MAC covers it and a closing brace.
    pub(super) body: &'a str,
    /// The code as it stands in the text (to check it is normalized).
    pub(super) code: Option<&'a str>,
    /// The format as it stands in the text (to check its spelling).
    pub(super) format: &'a str,
}

/// Reads `text` if it is a receipt in the written form, field by field in
/// the order of the wire format (see [`super::receipt`]).
pub(super) fn parse(text: &str) -> Option<Written<'_>> {
    let mut c = Cursor { text, at: 0 };
    let v = c.after("{\"v\":", Cursor::uint)?;
    let delivery = c.after(",\"delivery\":\"", Cursor::owned)?;
    let kid = c.after(",\"kid\":\"", Cursor::owned)?;
    let seq = c.after(",\"seq\":", Cursor::uint)?;
    let format = c.after(",\"format\":\"", Cursor::plain)?;
    let courier = c.after(",\"courier\":\"", Cursor::owned)?;
    let device = c.after(",\"device\":\"", Cursor::owned)?;
    let dkid = c.after(",\"dkid\":\"", Cursor::owned)?;
    let outcome = c.after(",\"outcome\":\"", Cursor::plain)?;
    let code = c.optional(",\"code\":\"", Cursor::plain)?;
    let via = c.optional(",\"via\":\"", Cursor::plain)?;
    let reason = c.optional(",\"reason\":\"", Cursor::plain)?;
    let note = c.optional(",\"note\":\"", Cursor::owned)?;
    let attempts = u32::try_from(c.after(",\"attempts\":", Cursor::uint)?).ok()?;
    let first = c.optional(",\"first\":", Cursor::uint)?;
    let decided = c.after(",\"decided\":", Cursor::uint)?;
    let loc = c.optional(",\"loc\":{\"lat\":", Cursor::location)?;
    let photo = c.optional(",\"photo\":\"", Cursor::plain)?;
    let app = c.after(",\"app\":\"", Cursor::owned)?;
    let body = text.get(..c.at)?;
    let mac = c.after(",\"mac\":\"", Cursor::plain)?;
    c.expect("}")?;
    if c.at != text.len() {
        return None;
    }
    Some(Written {
        wire: Wire {
            v,
            delivery,
            kid,
            seq,
            format: Cow::Borrowed(format),
            courier,
            device,
            dkid,
            outcome: Cow::Borrowed(outcome),
            code: code.map(|c| Zeroizing::new(c.to_owned())),
            via: via.map(Cow::Borrowed),
            reason: reason.map(Cow::Borrowed),
            note,
            attempts,
            first,
            decided,
            loc,
            photo: photo.map(Cow::Borrowed),
            app,
            mac: Some(Cow::Borrowed(mac)),
        },
        body,
        code,
        format,
    })
}

/// A position in the text; it only moves forward, past what it accepted.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

// The small steps below are marked `#[inline]`: `parse` calls them for
// every field, and without the hint reading took about 14 % longer
// (`cargo bench --bench reconcile_loop`).
impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        self.text.as_bytes().get(self.at..).unwrap_or_default()
    }

    /// Steps over `literal` if the text goes on with it.
    #[inline]
    fn eat(&mut self, literal: &str) -> bool {
        // Byte by byte: the literals are short, and a call to memcmp for
        // each costs more than comparing them in place.
        let rest = self.rest();
        if rest.len() < literal.len() || !rest.iter().zip(literal.as_bytes()).all(|(a, b)| a == b) {
            return false;
        }
        match self.at.checked_add(literal.len()) {
            Some(at) => {
                self.at = at;
                true
            }
            None => false,
        }
    }

    #[inline]
    fn expect(&mut self, literal: &str) -> Option<()> {
        self.eat(literal).then_some(())
    }

    /// A field: its name and what opens its value (`key`), then the value
    /// as `value` reads it.
    #[inline]
    fn after<T>(&mut self, key: &str, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        self.expect(key)?;
        value(self)
    }

    /// A field the written form leaves out when absent: `Some(None)` when
    /// the text does not go on with `key`, else [`Self::after`]'s value.
    #[inline]
    fn optional<T>(
        &mut self,
        key: &str,
        value: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<Option<T>> {
        if self.eat(key) {
            value(self).map(Some)
        } else {
            Some(None)
        }
    }

    /// A location's value after `{"lat":`, to its closing brace.
    fn location(&mut self) -> Option<LocationWire> {
        let lat = i32::try_from(self.int()?).ok()?;
        let lon = i32::try_from(self.after(",\"lon\":", Cursor::int)?).ok()?;
        let acc = u32::try_from(self.after(",\"acc\":", Cursor::uint)?).ok()?;
        self.expect("}")?;
        Some(LocationWire { lat, lon, acc })
    }

    /// A string's contents and its closing quote, as serde_json writes
    /// them: escapes only for `"` and `\`, no control characters. Borrowed
    /// unless it holds an escape.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let bytes = self.rest();
        let mut len = 0usize;
        let mut escapes = false;
        loop {
            match *bytes.get(len)? {
                b'"' => break,
                b'\\' => match bytes.get(len.checked_add(1)?)? {
                    b'"' | b'\\' => {
                        escapes = true;
                        len = len.checked_add(2)?;
                    }
                    _ => return None,
                },
                0..=0x1f => return None,
                _ => len = len.checked_add(1)?,
            }
        }
        let end = self.at.checked_add(len)?;
        let raw = self.text.get(self.at..end)?;
        self.at = end.checked_add(1)?;
        if !escapes {
            return Some(Cow::Borrowed(raw));
        }
        let mut out = String::with_capacity(raw.len());
        let mut after_backslash = false;
        for ch in raw.chars() {
            if ch == '\\' && !after_backslash {
                after_backslash = true;
            } else {
                out.push(ch);
                after_backslash = false;
            }
        }
        Some(Cow::Owned(out))
    }

    /// [`Self::string`], owned.
    #[inline]
    fn owned(&mut self) -> Option<String> {
        self.string().map(Cow::into_owned)
    }

    /// A string that must hold no escape (an enumerated word, the code, a
    /// digest): borrowed from the text.
    fn plain(&mut self) -> Option<&'a str> {
        match self.string()? {
            Cow::Borrowed(text) => Some(text),
            Cow::Owned(_) => None,
        }
    }

    /// A non-negative integer as serde_json writes one: digits, no leading
    /// zero, within `u64`.
    fn uint(&mut self) -> Option<u64> {
        let bytes = self.rest();
        let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        let digits = bytes.get(..len)?;
        match digits {
            [] => return None,
            [b'0', _, ..] => return None,
            _ => {}
        }
        let mut n = 0u64;
        for d in digits {
            n = n
                .checked_mul(10)?
                .checked_add(u64::from(d.checked_sub(b'0')?))?;
        }
        self.at = self.at.checked_add(len)?;
        Some(n)
    }

    /// An integer that may be negative (never `-0`).
    fn int(&mut self) -> Option<i64> {
        if self.eat("-") {
            let n = i64::try_from(self.uint()?).ok()?;
            (n != 0).then(|| n.checked_neg()).flatten()
        } else {
            i64::try_from(self.uint()?).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(text: &str) -> Cursor<'_> {
        Cursor { text, at: 0 }
    }

    #[test]
    fn integers_only_as_written() {
        assert_eq!(cursor("0,").uint(), Some(0));
        assert_eq!(cursor("120}").uint(), Some(120));
        assert_eq!(cursor("18446744073709551615").uint(), Some(u64::MAX));
        for bad in ["", "-1", "01", "00", "18446744073709551616", "+1", " 1"] {
            assert_eq!(cursor(bad).uint(), None, "{bad:?}");
        }
        assert_eq!(cursor("-90000000,").int(), Some(-90_000_000));
        assert_eq!(cursor("0").int(), Some(0));
        for bad in ["-0", "-", "--1", "-01"] {
            assert_eq!(cursor(bad).int(), None, "{bad:?}");
        }
    }

    #[test]
    fn strings_only_with_the_escapes_serde_json_writes() {
        let mut c = cursor(r#"plain","#);
        assert_eq!(c.string().as_deref(), Some("plain"));
        assert_eq!(c.rest(), b",");
        assert_eq!(
            cursor(r#"a \"b\" \\c","#).string().as_deref(),
            Some(r#"a "b" \c"#)
        );
        assert_eq!(
            cursor("caf\u{e9} \u{1f4e6}\"").string().as_deref(),
            Some("caf\u{e9} \u{1f4e6}")
        );
        for bad in [
            r#"a\/b""#,
            r#"a\u0041""#,
            r#"a\n""#,
            "a\nb\"",
            "no end",
            r#"a\"#,
        ] {
            assert_eq!(cursor(bad).string(), None, "{bad:?}");
        }
        assert_eq!(cursor(r#"a\\b""#).plain(), None, "an escape is not plain");
    }
}
