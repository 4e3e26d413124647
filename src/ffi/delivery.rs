//! FFI for delivery codes: key sets, issuing, tickets, offline verification
//! on the courier's device and online verification on the backend.

use std::sync::{Arc, Mutex, PoisonError};

use zeroize::Zeroizing;

use std::time::Duration;

use super::{now, unsigned, whole_secs, FfiResult};
use crate::error::Error as CoreError;
use crate::error::{count, int};
use crate::UnixTime;
use crate::{CodeFormat, DeliverySettings, OfflineOutcome, OnlineOutcome};

debug_as_inner!(KeySet, Ticket, OfflineVerifier);

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner().fmt(f)
    }
}

// ---------------------------------------------------------------------------
// Settings

/// The default settings: 6 digits, a 12-bit hash (1 false accept in 4096,
/// about 244 candidates), 5 attempts, one day.
#[uniffi::export]
pub fn default_delivery_settings() -> DeliverySettings {
    DeliverySettings::default()
}

/// Checks settings before using them.
///
/// # Errors
/// `InvalidCodeFormat`, `UnsafeSettings`, `InvalidNumber` for a lifetime
/// with a fraction of a second.
#[uniffi::export]
pub fn check_delivery_settings(settings: DeliverySettings) -> FfiResult<()> {
    settings.check()
}

/// The chance that one wrong code passes the offline check: 2^-hash_bits.
///
/// # Errors
/// `InvalidNumber` for a negative width.
#[uniffi::export]
pub fn false_accept_probability(hash_bits: i32) -> FfiResult<f64> {
    Ok(crate::delivery::settings::false_accept_probability(
        unsigned(hash_bits, "hash_bits")?,
    ))
}

/// About how many codes match a ticket's hash: code space / 2^hash_bits
/// (0 for a format out of range).
///
/// # Errors
/// `InvalidNumber` for a negative width.
#[uniffi::export]
pub fn expected_candidates(format: CodeFormat, hash_bits: i32) -> FfiResult<f64> {
    Ok(crate::delivery::settings::expected_candidates(
        format,
        unsigned(hash_bits, "hash_bits")?,
    ))
}

/// Normalizes typed text to the code's form: separators dropped, digits of
/// every script to ASCII, and for Crockford codes upper case with O as 0 and
/// I, L as 1.
///
/// # Errors
/// `InvalidCodeCharacter` (with its position), `WrongCodeLength`.
#[uniffi::export]
pub fn normalize_code(entered: String, format: CodeFormat) -> FfiResult<String> {
    let entered = Zeroizing::new(entered);
    Ok(crate::normalize(&entered, format)?.to_string())
}

// ---------------------------------------------------------------------------
// Keys

/// The backend's master keys, by key id; one is current. Key material stays
/// in Rust memory and is wiped when the object is closed or collected.
#[derive(uniffi::Object)]
#[uniffi::export(Debug)]
pub struct KeySet {
    inner: Mutex<crate::KeySet>,
    /// Counts changes (rotate, setCurrent, remove), so a `Backend` made
    /// from this set sees them.
    generation: std::sync::atomic::AtomicU64,
}

impl KeySet {
    fn get(&self) -> std::sync::MutexGuard<'_, crate::KeySet> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[uniffi::export]
impl KeySet {
    /// A set of one new 256-bit key from the OS generator.
    ///
    /// # Errors
    /// `InvalidKeyId`, `RandomUnavailable`.
    #[uniffi::constructor]
    pub fn generate(key_id: String) -> FfiResult<Arc<Self>> {
        Ok(Self::wrap(crate::KeySet::generate(&key_id)?))
    }

    /// Reads the JSON form `{"version":1,"current":ID,"keys":[{"id":ID,"secret":BASE32}]}`.
    ///
    /// # Errors
    /// `InvalidKeySet`, `UnknownKeyId`, `InvalidKeyId`, `InvalidKey` and the base32 errors.
    #[uniffi::constructor]
    pub fn from_json(json: String) -> FfiResult<Arc<Self>> {
        let json = Zeroizing::new(json);
        Ok(Self::wrap(crate::KeySet::from_json(&json)?))
    }

    /// The JSON form; it holds the keys.
    pub fn to_json(&self) -> String {
        self.get().to_json().to_string()
    }

    /// Adds a new key from the OS generator and makes it current.
    ///
    /// # Errors
    /// `InvalidKeyId`, `InvalidKeySet` (id taken), `RandomUnavailable`.
    pub fn rotate(&self, new_key_id: String) -> FfiResult<()> {
        self.get().rotate(&new_key_id)?;
        self.changed();
        Ok(())
    }

    /// Makes another key current.
    ///
    /// # Errors
    /// `UnknownKeyId`.
    pub fn set_current(&self, key_id: String) -> FfiResult<()> {
        self.get().set_current(&key_id)?;
        self.changed();
        Ok(())
    }

    /// Removes a retired key.
    ///
    /// # Errors
    /// `UnknownKeyId`, `InvalidKeySet` (the current key).
    pub fn remove(&self, key_id: String) -> FfiResult<()> {
        self.get().remove(&key_id)?;
        self.changed();
        Ok(())
    }

    /// The current key's id.
    pub fn current_id(&self) -> String {
        self.get().current().id().to_string()
    }

    /// Every key id, the current one first.
    pub fn ids(&self) -> Vec<String> {
        self.get().ids()
    }
}

impl KeySet {
    fn wrap(inner: crate::KeySet) -> Arc<Self> {
        Arc::new(KeySet {
            inner: Mutex::new(inner),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

// ---------------------------------------------------------------------------
// Tickets

/// A delivery's ticket: what the backend gives the courier's device. It
/// holds no code and no backend key. Its JSON wire form is versioned and
/// stable. Equal tickets have equal hash codes.
#[derive(uniffi::Object)]
#[uniffi::export(Debug, Eq, Hash)]
pub struct Ticket {
    pub(super) inner: crate::Ticket,
}

impl PartialEq for Ticket {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for Ticket {}

// The ticket's MAC binds every field, so hashing it keeps the hash
// contract (equal tickets, equal MACs) at the cost of one slice.
impl std::hash::Hash for Ticket {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.mac.hash(state);
    }
}

#[uniffi::export]
impl Ticket {
    /// Reads a ticket and checks its fields are consistent (the device
    /// cannot check the backend MAC; the backend's `readTicket` does).
    ///
    /// # Errors
    /// `UnsupportedTicketVersion`, `InvalidTicket`, `UnsafeSettings`.
    #[uniffi::constructor]
    pub fn from_json(json: String) -> FfiResult<Arc<Self>> {
        Ok(Self::wrap(crate::Ticket::from_json(&json)?))
    }

    /// The wire form.
    pub fn to_json(&self) -> String {
        self.inner.to_json()
    }

    /// The delivery id.
    pub fn delivery_id(&self) -> String {
        self.inner.delivery_id().to_string()
    }

    /// The id of the backend key the code derives from.
    pub fn key_id(&self) -> String {
        self.inner.key_id().to_string()
    }

    /// The sequence number; a resend issues the next.
    pub fn sequence(&self) -> i64 {
        int(self.inner.sequence())
    }

    /// The courier the delivery was given to.
    pub fn courier_id(&self) -> String {
        self.inner.courier_id().to_string()
    }

    /// How the code is written.
    pub fn format(&self) -> CodeFormat {
        self.inner.format()
    }

    /// Not valid before this time.
    pub fn not_before(&self) -> UnixTime {
        UnixTime::from_secs(self.inner.not_before())
    }

    /// Not valid from this time on.
    pub fn expires_at(&self) -> UnixTime {
        UnixTime::from_secs(self.inner.expires_at())
    }

    /// Attempts allowed.
    pub fn max_attempts(&self) -> i32 {
        count(self.inner.max_attempts())
    }

    /// Width of the offline hash in bits.
    pub fn hash_bits(&self) -> i32 {
        count(self.inner.hash_bits())
    }
}

impl Ticket {
    fn wrap(inner: crate::Ticket) -> Arc<Self> {
        Arc::new(Ticket { inner })
    }
}

// ---------------------------------------------------------------------------
// Backend

/// A code and its ticket, as the backend issues them. Printing it leaves
/// the code out (Kotlin's `toString()`, Swift's `description`); equal codes
/// (compared in constant time) of equal tickets are equal.
#[derive(uniffi::Object)]
#[uniffi::export(Debug, Eq, Hash)]
pub struct IssuedCode {
    code: crate::Code,
    ticket: Arc<Ticket>,
}

impl std::fmt::Debug for IssuedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCode")
            .field("code", &"[redacted]")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl PartialEq for IssuedCode {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        let same_code = self
            .code
            .as_str()
            .as_bytes()
            .ct_eq(other.code.as_str().as_bytes());
        bool::from(same_code) && self.ticket == other.ticket
    }
}

impl Eq for IssuedCode {}

/// The ticket's hash only: nothing derived from the code goes into a hash table.
impl std::hash::Hash for IssuedCode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ticket.hash(state);
    }
}

impl From<crate::Issued> for IssuedCode {
    fn from(i: crate::Issued) -> Self {
        IssuedCode {
            code: i.code,
            ticket: Ticket::wrap(i.ticket),
        }
    }
}

#[uniffi::export]
impl IssuedCode {
    /// The code, for the customer's message only.
    pub fn code(&self) -> String {
        self.code.as_str().to_string()
    }

    /// The code grouped for reading aloud ("482 913").
    pub fn code_grouped(&self) -> String {
        self.code.grouped()
    }

    /// The ticket, for the courier's device.
    pub fn ticket(&self) -> Arc<Ticket> {
        Arc::clone(&self.ticket)
    }
}

/// The backend: issues codes and tickets, recognises its own tickets and
/// verifies codes online, counting attempts in a thread-safe in-memory
/// store (a Rust backend can plug in a shared store instead).
#[derive(uniffi::Object)]
#[uniffi::export(Debug)]
pub struct Backend {
    /// The key set it was made with: changes to it reach this backend.
    keys: Arc<KeySet>,
    /// The core backend, and the key set's generation it was built for.
    core: std::sync::RwLock<(crate::Backend, u64)>,
}

impl Backend {
    /// The core backend over the key set as it is now.
    pub(super) fn inner(&self) -> crate::Backend {
        let now = self.keys.generation();
        {
            let core = self.core.read().unwrap_or_else(PoisonError::into_inner);
            if core.1 == now {
                return core.0.clone();
            }
        }
        let mut core = self.core.write().unwrap_or_else(PoisonError::into_inner);
        if core.1 != now {
            let keys = self.keys.get().clone();
            core.0 = core.0.with_keys(keys);
            core.1 = now;
        }
        core.0.clone()
    }
}

#[uniffi::export]
impl Backend {
    /// A backend with a copy of `keys` and an empty in-memory attempt store.
    #[uniffi::constructor]
    pub fn new(keys: Arc<KeySet>) -> Arc<Self> {
        let generation = keys.generation();
        let core = crate::Backend::new(
            keys.get().clone(),
            Arc::new(crate::InMemoryAttemptStore::new()),
        );
        Arc::new(Backend {
            keys,
            core: std::sync::RwLock::new((core, generation)),
        })
    }

    /// Issues the code and ticket for `delivery_id`'s `sequence` (0 first,
    /// one more per resend), given to `courier_id`, valid from `now` (unix
    /// seconds). Issuing again for the same sequence gives the same code and
    /// ticket hash.
    ///
    /// # Errors
    /// `InvalidCodeFormat`, `UnsafeSettings`, `InvalidDeliveryId`,
    /// `InvalidDeviceKey` (a bad courier id), `Overflow`.
    pub fn issue(
        &self,
        delivery_id: String,
        sequence: i64,
        courier_id: String,
        now: UnixTime,
        settings: DeliverySettings,
    ) -> FfiResult<Arc<IssuedCode>> {
        let sequence = unsigned(sequence, "sequence")?;
        Ok(Arc::new(
            self.inner()
                .issue(&delivery_id, sequence, &courier_id, now.secs(), &settings)?
                .into(),
        ))
    }

    /// Gives the delivery to `courier_id` with the next sequence after
    /// `previous`, so the earlier courier's ticket and code stop counting.
    ///
    /// # Errors
    /// As `issue`.
    pub fn reassign(
        &self,
        previous: Arc<Ticket>,
        courier_id: String,
        now: UnixTime,
        settings: DeliverySettings,
    ) -> FfiResult<Arc<IssuedCode>> {
        Ok(Arc::new(
            self.inner()
                .reassign(&previous.inner, &courier_id, now.secs(), &settings)?
                .into(),
        ))
    }

    /// A resend: the next sequence after `previous`, so its code stops working.
    ///
    /// # Errors
    /// As `issue`.
    pub fn resend(
        &self,
        previous: Arc<Ticket>,
        now: UnixTime,
        settings: DeliverySettings,
    ) -> FfiResult<Arc<IssuedCode>> {
        Ok(Arc::new(
            self.inner()
                .resend(&previous.inner, now.secs(), &settings)?
                .into(),
        ))
    }

    /// Reads a ticket and checks it is this backend's, unchanged.
    ///
    /// # Errors
    /// `UnsupportedTicketVersion`, `InvalidTicket`, `UnsafeSettings`,
    /// `UnknownKeyId`, `TicketMacMismatch`.
    pub fn read_ticket(&self, json: String) -> FfiResult<Arc<Ticket>> {
        Ok(Ticket::wrap(self.inner().read_ticket(&json)?))
    }

    /// The code for a delivery's sequence with the named key, derived again
    /// (the backend stores only the sequence).
    ///
    /// # Errors
    /// `UnknownKeyId`, `InvalidDeliveryId`, `InvalidCodeFormat`.
    pub fn derive_code(
        &self,
        key_id: String,
        delivery_id: String,
        sequence: i64,
        format: CodeFormat,
    ) -> FfiResult<String> {
        let sequence = unsigned(sequence, "sequence")?;
        Ok(self
            .inner()
            .derive_code(&key_id, &delivery_id, sequence, format)?
            .as_str()
            .to_string())
    }

    /// The code a ticket stands for (for the customer's message on a resend
    /// of the same code, or for support).
    ///
    /// # Errors
    /// `UnknownKeyId`, `TicketMacMismatch`.
    pub fn code_for(&self, ticket: Arc<Ticket>) -> FfiResult<String> {
        Ok(self.inner().code_for(&ticket.inner)?.as_str().to_string())
    }

    /// Verifies a code typed for `ticket` (the delivery's current ticket as
    /// issued), sent by `courier_id` from `device_id`: exact, constant time,
    /// every attempt counted before the comparison, a right code consumed
    /// once, the first wrong code matching the ticket's hash ends the code.
    /// The same request again gets the same outcome.
    ///
    /// # Errors
    /// `TicketMacMismatch`, `UnknownKeyId`, `InvalidDeviceKey`,
    /// `InvalidCodeCharacter`, `WrongCodeLength` (not counted as attempts),
    /// `StateStorage` (sending the same request again is safe).
    pub fn verify_online(
        &self,
        ticket: Arc<Ticket>,
        entered: String,
        courier_id: String,
        device_id: String,
        now: UnixTime,
    ) -> FfiResult<OnlineOutcome> {
        let entered = Zeroizing::new(entered);
        self.inner()
            .verify_online(&ticket.inner, &entered, &courier_id, &device_id, now.secs())
    }
}

// ---------------------------------------------------------------------------
// Device

/// The error a [`DeviceStateStore`] implementation throws.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum StoreError {
    /// The storage failed; `reason` says how.
    #[error("{reason}")]
    Failed {
        /// What went wrong.
        reason: String,
    },
}

/// Longest unexpected-error text kept from a store, in characters.
const STORE_REASON_MAX_CHARS: usize = 200;

/// A store that throws something other than `StoreError` (a Kotlin
/// `RuntimeException` or `Error`) arrives here with its whole stack trace;
/// only its first line (the exception's class and message), bounded, is
/// kept, so messages stay readable and logs stay small.
impl From<uniffi::UnexpectedUniFFICallbackError> for StoreError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        let first = e.reason.lines().next().unwrap_or_default().trim();
        let mut reason: String = first.chars().take(STORE_REASON_MAX_CHARS).collect();
        if reason.is_empty() {
            reason = "the store threw an unexpected error".to_string();
        } else if first.chars().nth(STORE_REASON_MAX_CHARS).is_some() {
            reason.push('…');
        }
        StoreError::Failed {
            reason: format!("unexpected store failure: {reason}"),
        }
    }
}

/// Where the app keeps attempt state between runs, implemented in Kotlin
/// or Swift (SharedPreferences, UserDefaults, a database). `key` names the
/// delivery; values are short texts to store as they are. Every verifier of
/// a ticket must use the same store, and `compareAndSet` must be atomic for
/// all of them (`synchronized`, a lock, a database transaction): that keeps
/// the attempt count exact however many verifiers an app makes.
#[uniffi::export(with_foreign)]
pub trait DeviceStateStore: Send + Sync {
    /// The value saved under `key`, or null.
    ///
    /// # Errors
    /// `StoreError.Failed` when the storage fails.
    fn load(&self, key: String) -> Result<Option<String>, StoreError>;

    /// Saves `value` under `key` only if the value there is still
    /// `expected` (null: none), as one atomic step, and returns whether it
    /// saved. Return only once the value is durably written (check the
    /// result of `commit()`); throw when it is not.
    ///
    /// # Errors
    /// `StoreError.Failed` when the storage fails; the verification then
    /// gives no outcome.
    fn compare_and_set(
        &self,
        key: String,
        expected: Option<String>,
        value: String,
    ) -> Result<bool, StoreError>;
}

/// Adapts a foreign store to the core's trait.
struct ForeignStore(Arc<dyn DeviceStateStore>);

impl crate::StateStore for ForeignStore {
    fn load(&self, key: &str) -> crate::Result<Option<String>> {
        self.0
            .load(key.to_string())
            .map_err(|e| CoreError::StateStorage {
                reason: e.to_string(),
            })
    }

    fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
    ) -> crate::Result<bool> {
        self.0
            .compare_and_set(
                key.to_string(),
                expected.map(str::to_string),
                value.to_string(),
            )
            .map_err(|e| CoreError::StateStorage {
                reason: e.to_string(),
            })
    }
}

/// Checks typed codes against one ticket on the courier's device, offline,
/// keeping attempts, lockout and the latest time seen in the app's store so
/// they survive restarts. Thread-safe.
#[derive(uniffi::Object)]
#[uniffi::export(Debug)]
pub struct OfflineVerifier {
    pub(super) inner: crate::OfflineVerifier,
}

#[uniffi::export]
impl OfflineVerifier {
    /// A verifier for `ticket` with its state in `store`; the clock may seem
    /// to go back up to five minutes unreported.
    #[uniffi::constructor]
    pub fn new(ticket: Arc<Ticket>, store: Arc<dyn DeviceStateStore>) -> Arc<Self> {
        let inner =
            crate::OfflineVerifier::new(ticket.inner.clone(), Arc::new(ForeignStore(store)));
        Arc::new(OfflineVerifier { inner })
    }

    /// A verifier as `new` makes it, that lets the clock seem to go back up to
    /// `clock_tolerance` (whole seconds) unreported.
    ///
    /// # Errors
    /// `InvalidNumber` for a fraction of a second.
    #[uniffi::constructor]
    pub fn with_clock_tolerance(
        ticket: Arc<Ticket>,
        store: Arc<dyn DeviceStateStore>,
        clock_tolerance: Duration,
    ) -> FfiResult<Arc<Self>> {
        let inner =
            crate::OfflineVerifier::new(ticket.inner.clone(), Arc::new(ForeignStore(store)))
                .with_clock_tolerance(whole_secs(clock_tolerance, "clock_tolerance")?);
        Ok(Arc::new(OfflineVerifier { inner }))
    }

    /// Checks what the courier typed at unix time `now`. The state is saved
    /// before the outcome is returned.
    ///
    /// # Errors
    /// `InvalidCodeCharacter`, `WrongCodeLength` (not counted as attempts),
    /// `StateStorage` (no outcome then), `CorruptState`.
    pub fn verify(&self, entered: String, now: UnixTime) -> FfiResult<OfflineOutcome> {
        let entered = Zeroizing::new(entered);
        self.inner.verify(&entered, now.secs())
    }

    /// `verify` at the device's current time.
    ///
    /// # Errors
    /// As `verify`.
    pub fn verify_now(&self, entered: String) -> FfiResult<OfflineOutcome> {
        self.verify(entered, now())
    }

    /// Attempts still allowed.
    ///
    /// # Errors
    /// `StateStorage`, `CorruptState`.
    pub fn attempts_left(&self) -> FfiResult<i32> {
        Ok(count(self.inner.attempts_left()?))
    }

    /// The key the state is stored under.
    pub fn state_key(&self) -> String {
        self.inner.state_key()
    }

    /// The ticket.
    pub fn ticket(&self) -> Arc<Ticket> {
        Ticket::wrap(self.inner.ticket().clone())
    }
}
