//! Backend master keys, named by key id, several at once for rotation.
//!
//! The JSON form (what `delivery-otp issue --keys FILE` reads):
//!
//! ```json
//! {"version":1,"current":"2026-11","keys":[{"id":"2026-10","secret":"<base32>"},{"id":"2026-11","secret":"<base32>"}]}
//! ```
//!
//! New codes and tickets use the `current` key; codes and tickets that name
//! an older key id still verify while that key is in the set.

use core::fmt;

use rand::rngs::SysRng;
use rand::TryRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::mac::MacKey;

/// Size of a master key: 256 bits.
pub const KEY_BYTES: usize = 32;
/// Version of the key set JSON.
pub const KEY_SET_VERSION: u32 = 1;

/// One backend master key and its id.
///
/// The key is wiped on drop; `Debug` shows the id only.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    id: String,
    secret: [u8; KEY_BYTES],
    /// The HMAC state set up from `secret` once, so each code, ticket MAC
    /// and device key costs two SHA-256 compressions fewer. It wipes itself
    /// on drop.
    #[zeroize(skip)]
    mac: MacKey,
    /// This key's number in this process: a ticket whose MAC this very key
    /// made or checked carries it ([`crate::Ticket`]), so its MAC is not
    /// computed again. Copies of the key share it; another key made from
    /// the same bytes gets another.
    #[zeroize(skip)]
    serial: u64,
}

/// The next [`MasterKey::serial`].
static NEXT_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl MasterKey {
    /// A new key from the operating system's random generator.
    ///
    /// # Errors
    /// [`Error::InvalidKeyId`], [`Error::RandomUnavailable`].
    pub fn generate(id: &str) -> Result<Self> {
        check_key_id(id)?;
        let mut secret = Zeroizing::new([0u8; KEY_BYTES]);
        SysRng
            .try_fill_bytes(secret.as_mut_slice())
            .map_err(|_| Error::RandomUnavailable)?;
        Self::from_bytes(id, secret.as_slice())
    }

    /// A key from its 32 bytes.
    ///
    /// # Errors
    /// [`Error::InvalidKeyId`]; [`Error::InvalidKey`] unless `bytes` has 32 bytes.
    pub fn from_bytes(id: &str, bytes: &[u8]) -> Result<Self> {
        check_key_id(id)?;
        let secret: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| Error::InvalidKey {
            reason: format!("a master key has {KEY_BYTES} bytes, not {}", bytes.len()),
        })?;
        let mac = MacKey::new(&secret).ok_or_else(|| Error::InvalidKey {
            reason: "HMAC refused the key".into(),
        })?;
        Ok(MasterKey {
            id: id.to_string(),
            secret,
            mac,
            serial: NEXT_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// A key from base32 (as [`crate::Secret::from_base32`] reads it).
    ///
    /// # Errors
    /// [`Error::InvalidKeyId`], the base32 errors, [`Error::InvalidKey`].
    pub fn from_base32(id: &str, text: &str) -> Result<Self> {
        let secret = crate::Secret::from_base32(text)?;
        Self::from_bytes(id, secret.expose_bytes())
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as base32 without padding; wiped when dropped.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::b32::encode(&self.secret))
    }

    #[cfg(test)]
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        &self.secret
    }

    /// The HMAC-SHA256 state of this key, set up once.
    pub(crate) fn mac(&self) -> &MacKey {
        &self.mac
    }

    /// This key's number in this process (see the field).
    pub(crate) fn serial(&self) -> u64 {
        self.serial
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Checks a key id: 1 to 32 characters of `A-Z a-z 0-9 . _ -`.
///
/// # Errors
/// [`Error::InvalidKeyId`].
pub fn check_key_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 32 {
        return Err(Error::InvalidKeyId {
            reason: "a key id has 1 to 32 characters".into(),
        });
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Error::InvalidKeyId {
            reason: "a key id has only the characters A-Z, a-z, 0-9, '.', '_' and '-'".into(),
        });
    }
    Ok(())
}

/// The backend's master keys; one of them is current.
#[derive(Clone)]
pub struct KeySet {
    current: MasterKey,
    others: Vec<MasterKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("ids", &self.ids())
            .field("current", &self.current().id())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySetJson {
    version: u32,
    current: String,
    keys: Vec<KeyJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyJson {
    id: String,
    secret: Zeroizing<String>,
}

impl KeySet {
    /// A set of one key, which is current.
    pub fn new(key: MasterKey) -> Self {
        KeySet {
            current: key,
            others: Vec::new(),
        }
    }

    /// A set of one new key from the OS generator.
    ///
    /// # Errors
    /// [`Error::InvalidKeyId`], [`Error::RandomUnavailable`].
    pub fn generate(id: &str) -> Result<Self> {
        Ok(Self::new(MasterKey::generate(id)?))
    }

    /// Adds a key (not current until [`KeySet::set_current`]).
    ///
    /// # Errors
    /// [`Error::InvalidKeySet`] when the id is already in the set.
    pub fn add(&mut self, key: MasterKey) -> Result<()> {
        if self.get(&key.id).is_ok() {
            return Err(Error::InvalidKeySet {
                reason: format!("the key id '{}' appears twice", key.id),
            });
        }
        self.others.push(key);
        Ok(())
    }

    /// Rotation: adds a new key from the OS generator and makes it current.
    ///
    /// # Errors
    /// As [`MasterKey::generate`] and [`KeySet::add`].
    pub fn rotate(&mut self, new_id: &str) -> Result<()> {
        self.add(MasterKey::generate(new_id)?)?;
        self.set_current(new_id)
    }

    /// Makes the key with this id the one new codes use.
    ///
    /// # Errors
    /// [`Error::UnknownKeyId`].
    pub fn set_current(&mut self, id: &str) -> Result<()> {
        if self.current.id == id {
            return Ok(());
        }
        let at = self.position(id)?;
        if let Some(slot) = self.others.get_mut(at) {
            core::mem::swap(slot, &mut self.current);
        }
        Ok(())
    }

    /// Removes a retired key; codes and tickets naming it stop verifying.
    ///
    /// # Errors
    /// [`Error::UnknownKeyId`]; [`Error::InvalidKeySet`] for the current key.
    pub fn remove(&mut self, id: &str) -> Result<()> {
        if self.current.id == id {
            return Err(Error::InvalidKeySet {
                reason: "the current key cannot be removed; make another current first".into(),
            });
        }
        let at = self.position(id)?;
        self.others.remove(at);
        Ok(())
    }

    /// The key new codes use.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// The key with this id.
    ///
    /// # Errors
    /// [`Error::UnknownKeyId`].
    pub fn get(&self, id: &str) -> Result<&MasterKey> {
        self.keys()
            .find(|k| k.id == id)
            .ok_or_else(|| Error::UnknownKeyId {
                key_id: id.to_string(),
            })
    }

    /// Every key id, the current one first.
    pub fn ids(&self) -> Vec<String> {
        self.keys().map(|k| k.id.clone()).collect()
    }

    fn keys(&self) -> impl Iterator<Item = &MasterKey> {
        core::iter::once(&self.current).chain(self.others.iter())
    }

    /// Position among `others`.
    fn position(&self, id: &str) -> Result<usize> {
        self.others
            .iter()
            .position(|k| k.id == id)
            .ok_or_else(|| Error::UnknownKeyId {
                key_id: id.to_string(),
            })
    }

    /// Reads the JSON form (see the module documentation).
    ///
    /// # Errors
    /// [`Error::InvalidKeySet`] for malformed JSON, another version, no keys
    /// or duplicate ids; [`Error::UnknownKeyId`] for a current id not in the
    /// set; the key errors of [`MasterKey::from_base32`]. Messages never
    /// quote the JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        let parsed: KeySetJson = serde_json::from_str(text).map_err(|e| Error::InvalidKeySet {
            reason: format!(
                "not a key set in JSON ({} at line {}, column {})",
                json_problem(&e),
                e.line(),
                e.column()
            ),
        })?;
        if parsed.version != KEY_SET_VERSION {
            return Err(Error::InvalidKeySet {
                reason: format!(
                    "version {} is not {KEY_SET_VERSION}, the one this library reads",
                    parsed.version
                ),
            });
        }
        let mut keys = parsed.keys.iter();
        let first = keys.next().ok_or(Error::InvalidKeySet {
            reason: "it has no keys".into(),
        })?;
        let mut set = KeySet::new(MasterKey::from_base32(&first.id, &first.secret)?);
        for key in keys {
            set.add(MasterKey::from_base32(&key.id, &key.secret)?)?;
        }
        set.set_current(&parsed.current)?;
        Ok(set)
    }

    /// Writes the JSON form. The text holds the keys and is wiped when dropped.
    pub fn to_json(&self) -> Zeroizing<String> {
        let json = KeySetJson {
            version: KEY_SET_VERSION,
            current: self.current.id.clone(),
            keys: self
                .keys()
                .map(|k| KeyJson {
                    id: k.id.clone(),
                    secret: k.to_base32(),
                })
                .collect(),
        };
        Zeroizing::new(serde_json::to_string(&json).unwrap_or_default())
    }
}

/// A JSON error's category, without the input text serde may quote.
pub(crate) fn json_problem(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "a syntax error",
        serde_json::error::Category::Data => "a missing, unknown or mistyped field",
        serde_json::error::Category::Eof => "it ends too early",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_ids_keys_and_current() {
        let mut set = KeySet::generate("2026-10").unwrap();
        set.rotate("2026-11").unwrap();
        assert_eq!(set.current().id(), "2026-11");
        let json = set.to_json();
        let back = KeySet::from_json(&json).unwrap();
        assert_eq!(back.ids(), vec!["2026-11", "2026-10"]);
        assert_eq!(back.current().id(), "2026-11");
        for id in back.ids() {
            assert_eq!(
                back.get(&id).unwrap().secret_bytes(),
                set.get(&id).unwrap().secret_bytes()
            );
        }
    }

    #[test]
    fn bad_key_sets_are_typed_errors_without_key_material() {
        let key = "A".repeat(52); // 32 zero bytes
        let cases = [
            "not json".to_string(),
            r#"{"version":2,"current":"a","keys":[]}"#.to_string(),
            r#"{"version":1,"current":"a","keys":[]}"#.to_string(),
            format!(r#"{{"version":1,"current":"b","keys":[{{"id":"a","secret":"{key}"}}]}}"#),
            format!(
                r#"{{"version":1,"current":"a","keys":[{{"id":"a","secret":"{key}"}},{{"id":"a","secret":"{key}"}}]}}"#
            ),
            format!(
                r#"{{"version":1,"current":"a","keys":[{{"id":"a","secret":"{key}","x":1}}]}}"#
            ),
            r#"{"version":1,"current":"a","keys":[{"id":"a","secret":"AAAA"}]}"#.to_string(),
            format!(r#"{{"version":1,"current":"a b","keys":[{{"id":"a b","secret":"{key}"}}]}}"#),
        ];
        for text in &cases {
            let err = KeySet::from_json(text).unwrap_err();
            assert!(!err.to_string().contains("AAAA"), "{err}");
        }
        assert_eq!(
            KeySet::from_json(&cases[3]).unwrap_err().kind(),
            "unknown_key_id"
        );
        assert_eq!(
            KeySet::from_json(&cases[6]).unwrap_err().kind(),
            "invalid_key"
        );
        assert_eq!(
            KeySet::from_json(&cases[7]).unwrap_err().kind(),
            "invalid_key_id"
        );
    }

    #[test]
    fn the_current_key_cannot_be_removed() {
        let mut set = KeySet::generate("a").unwrap();
        set.rotate("b").unwrap();
        assert_eq!(set.remove("b").unwrap_err().kind(), "invalid_key_set");
        set.remove("a").unwrap();
        assert_eq!(set.current().id(), "b");
        assert_eq!(set.get("a").unwrap_err().kind(), "unknown_key_id");
    }

    #[test]
    fn debug_shows_ids_only() {
        let set = KeySet::generate("k1").unwrap();
        let shown = format!("{set:?} {:?}", set.current());
        assert!(shown.contains("k1") && shown.contains("[redacted]"));
        assert!(!shown.contains(set.current().to_base32().as_str()));
    }
}
