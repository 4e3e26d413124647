//! FFI for proof of delivery: device keys, receipts made on the courier's
//! device, and the backend's reconciliation.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::delivery::{Backend, OfflineVerifier};
use super::{now, FfiResult};
use crate::error::{count, int};
use crate::UnixTime;
use crate::{Handover, Location, ReceiptDetails, Reconciliation};

debug_as_inner!(DeviceKey, Receipt);

/// The key a courier's device signs receipts with. The backend makes it
/// with `Backend.provisionDevice` at login; the app keeps its JSON in the
/// Android Keystore or the iOS Keychain and reads it back with `fromJson`.
#[derive(uniffi::Object)]
#[uniffi::export(Debug, Eq, Hash)]
pub struct DeviceKey {
    inner: crate::DeviceKey,
}

/// The same key: the same ids, and the same secret (its JSON, compared in
/// constant time).
impl PartialEq for DeviceKey {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(
            self.inner
                .to_json()
                .as_bytes()
                .ct_eq(other.inner.to_json().as_bytes()),
        )
    }
}

impl Eq for DeviceKey {}

/// The ids only: nothing derived from the secret goes into a hash table.
impl std::hash::Hash for DeviceKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (
            self.inner.key_id(),
            self.inner.courier_id(),
            self.inner.device_id(),
        )
            .hash(state);
    }
}

#[uniffi::export]
impl DeviceKey {
    /// Reads the JSON the backend provisioned.
    ///
    /// # Errors
    /// `InvalidDeviceKey`.
    #[uniffi::constructor]
    pub fn from_json(json: String) -> FfiResult<Arc<Self>> {
        let json = Zeroizing::new(json);
        Ok(Arc::new(DeviceKey {
            inner: crate::DeviceKey::from_json(&json)?,
        }))
    }

    /// The JSON to hand to the app (it holds the key: store it securely).
    pub fn to_json(&self) -> String {
        self.inner.to_json().as_str().to_string()
    }

    /// The id of the master key this key derives from.
    pub fn key_id(&self) -> String {
        self.inner.key_id().to_string()
    }

    /// The courier this key belongs to.
    pub fn courier_id(&self) -> String {
        self.inner.courier_id().to_string()
    }

    /// The device this key belongs to.
    pub fn device_id(&self) -> String {
        self.inner.device_id().to_string()
    }

    /// The `Authorization` header for a request to the service: `method`
    /// as sent (`POST`), `path` with its query (`/v1/receipts`), the
    /// device's time, and the exact body bytes (empty for none). The
    /// service accepts it within 300 seconds of its clock, once.
    ///
    /// # Errors
    /// `InvalidNumber` for a time before 1970.
    pub fn sign_request(
        &self,
        method: String,
        path: String,
        timestamp: UnixTime,
        body: Vec<u8>,
    ) -> FfiResult<String> {
        Ok(self
            .inner
            .sign_request(&method, &path, timestamp.secs(), &body))
    }

    /// `signRequest` at the device's current time.
    pub fn sign_request_now(&self, method: String, path: String, body: Vec<u8>) -> String {
        self.inner
            .sign_request(&method, &path, super::now().secs(), &body)
    }
}

/// A location from degrees as the phone reports them, rounded to a
/// millionth of a degree.
///
/// # Errors
/// `InvalidReceipt` for a latitude outside ±90, a longitude outside ±180, or
/// a value that is not a number.
#[uniffi::export]
pub fn location_from_degrees(
    latitude: f64,
    longitude: f64,
    accuracy_m: i32,
) -> FfiResult<Location> {
    Location::from_degrees(latitude, longitude, accuracy_m)
}

/// A signed proof-of-delivery receipt; `toJson` is what the app uploads.
#[derive(uniffi::Object)]
#[uniffi::export(Debug, Eq, Hash)]
pub struct Receipt {
    inner: crate::Receipt,
}

/// The same receipt, field for field (its MAC included).
impl PartialEq for Receipt {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for Receipt {}

/// Its delivery, sequence and device; equal receipts share them.
impl std::hash::Hash for Receipt {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (
            self.inner.delivery_id(),
            self.inner.sequence(),
            self.inner.device_id(),
        )
            .hash(state);
    }
}

#[uniffi::export]
impl Receipt {
    /// Reads a receipt and checks its fields are consistent.
    ///
    /// # Errors
    /// `UnsupportedReceiptVersion`, `InvalidReceipt`.
    #[uniffi::constructor]
    pub fn from_json(json: String) -> FfiResult<Arc<Self>> {
        let json = Zeroizing::new(json);
        Ok(Arc::new(Receipt {
            inner: crate::Receipt::from_json(&json)?,
        }))
    }

    /// The wire form, to upload to the backend.
    pub fn to_json(&self) -> String {
        self.inner.to_json().as_str().to_string()
    }

    /// Checks the MAC with the device key that made it.
    ///
    /// # Errors
    /// `ReceiptMacMismatch`.
    pub fn verify_mac(&self, device_key: Arc<DeviceKey>) -> FfiResult<()> {
        self.inner.verify_mac(&device_key.inner)
    }

    /// The delivery id.
    pub fn delivery_id(&self) -> String {
        self.inner.delivery_id().to_string()
    }

    /// The ticket's sequence.
    pub fn sequence(&self) -> i64 {
        int(self.inner.sequence())
    }

    /// The courier id.
    pub fn courier_id(&self) -> String {
        self.inner.courier_id().to_string()
    }

    /// The device id.
    pub fn device_id(&self) -> String {
        self.inner.device_id().to_string()
    }

    /// What happened.
    pub fn outcome(&self) -> crate::ReceiptOutcome {
        self.inner.outcome().clone()
    }

    /// Attempts used.
    pub fn attempts(&self) -> i32 {
        count(self.inner.attempts())
    }

    /// Device time of the first attempt.
    pub fn first_attempt_at(&self) -> Option<UnixTime> {
        self.inner.first_attempt_at().map(UnixTime::from_secs)
    }

    /// Device time of the decision.
    pub fn decided_at(&self) -> UnixTime {
        UnixTime::from_secs(self.inner.decided_at())
    }

    /// Where the decision was made.
    pub fn location(&self) -> Option<Location> {
        self.inner.location()
    }

    /// The app name and version.
    pub fn app_version(&self) -> String {
        self.inner.app_version().to_string()
    }
}

#[uniffi::export]
impl OfflineVerifier {
    /// Makes this ticket's receipt at device time `decided_at`, signed with
    /// `device_key`, and stores it in the app's store before returning it.
    /// Attempts and the first attempt's time come from the stored state.
    /// Asking again with the same outcome and details gives the same bytes;
    /// anything different is refused, so a receipt is never changed.
    ///
    /// # Errors
    /// `InvalidReceipt` (a bad field, an offline delivery this device did not
    /// accept, a ticket a newer one replaced); `ReceiptConflict` naming the
    /// fields that differ from the stored receipt; `StateStorage`,
    /// `CorruptState`.
    pub fn receipt(
        &self,
        device_key: Arc<DeviceKey>,
        handover: Handover,
        decided_at: UnixTime,
        details: ReceiptDetails,
    ) -> FfiResult<Arc<Receipt>> {
        let inner = self
            .inner
            .receipt(&device_key.inner, handover, decided_at.secs(), details)?;
        Ok(Arc::new(Receipt { inner }))
    }

    /// `receipt` at the device's current time.
    ///
    /// # Errors
    /// As `receipt`.
    pub fn receipt_now(
        &self,
        device_key: Arc<DeviceKey>,
        handover: Handover,
        details: ReceiptDetails,
    ) -> FfiResult<Arc<Receipt>> {
        self.receipt(device_key, handover, now(), details)
    }

    /// The receipt already made for this ticket on this device, to send
    /// again if it was lost on the way.
    ///
    /// # Errors
    /// `StateStorage`, `CorruptState`.
    pub fn stored_receipt(&self) -> FfiResult<Option<Arc<Receipt>>> {
        Ok(self
            .inner
            .stored_receipt()?
            .map(|inner| Arc::new(Receipt { inner })))
    }
}

#[uniffi::export]
impl Backend {
    /// The device key for `courier_id` on `device_id`, from the current
    /// master key; give its JSON to the app at login.
    ///
    /// # Errors
    /// `InvalidDeviceKey` for an empty, overlong or unprintable id.
    pub fn provision_device(
        &self,
        courier_id: String,
        device_id: String,
    ) -> FfiResult<Arc<DeviceKey>> {
        Ok(Arc::new(DeviceKey {
            inner: self.inner().provision_device(&courier_id, &device_id)?,
        }))
    }

    /// Judges a receipt (its JSON) against `ticket`, the delivery's current
    /// ticket as issued, at backend time `now`. The same receipt again gets
    /// the same decision with `repeated` set.
    ///
    /// # Errors
    /// `InvalidReceipt`, `UnsupportedReceiptVersion`, `TicketMacMismatch`,
    /// `UnknownKeyId`, `StateStorage` (sending it again is safe), `Overflow`.
    pub fn reconcile(
        &self,
        receipt_json: String,
        ticket: Arc<super::delivery::Ticket>,
        now: UnixTime,
    ) -> FfiResult<Reconciliation> {
        let receipt_json = Zeroizing::new(receipt_json);
        self.inner()
            .reconcile(&receipt_json, &ticket.inner, now.secs())
    }
}
