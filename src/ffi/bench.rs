//! Do-nothing twins of the exported entry points, for the Kotlin benchmark
//! only (cargo feature `ffi-bench`; never in a shipped library).
//!
//! Each method takes the same argument types and returns the same type as
//! the entry point it stands for, and does no work but handing back a value
//! made once in the constructor. What a call to it costs is what uniffi
//! costs for that signature; the benchmark divides each real entry point's
//! time by its twin's.

use std::sync::Arc;

use super::delivery::{Backend, DeviceStateStore, IssuedCode, Ticket};
use super::otp::KeyUri;
use super::FfiResult;
use crate::{
    CodeFormat, DeliverySettings, MessageValues, OfflineOutcome, OnlineOutcome, Order,
    PolicyDecision, Reconciliation, Sms, TotpMatch, UnixTime,
};

/// The trivial uniffi call: one `i32` in, the same out.
#[uniffi::export]
pub fn ffi_baseline_i32(value: i32) -> i32 {
    value
}

/// Twin of `normalizeCode` (a free function, as the entry point is: a method
/// call costs uniffi one more call, to clone the object's handle).
///
/// # Errors
/// None; the type is the entry point's.
#[uniffi::export]
pub fn ffi_baseline_normalize_code(entered: String, _format: CodeFormat) -> FfiResult<String> {
    Ok(entered)
}

/// Twin of `maskPhone` and `maskEmail`.
///
/// # Errors
/// None; the type is the entry point's.
#[uniffi::export]
pub fn ffi_baseline_mask(text: String) -> FfiResult<String> {
    Ok(text)
}

/// Twin of `KeyUri.parse`: hands back one value, made on the first call.
///
/// # Errors
/// None after the first call; the type is the entry point's.
#[uniffi::export]
pub fn ffi_baseline_parse_key_uri(uri: String) -> FfiResult<Arc<KeyUri>> {
    static SAMPLE: std::sync::OnceLock<Arc<KeyUri>> = std::sync::OnceLock::new();
    if let Some(sample) = SAMPLE.get() {
        return Ok(Arc::clone(sample));
    }
    let parsed = KeyUri::parse(uri)?;
    Ok(Arc::clone(SAMPLE.get_or_init(|| parsed)))
}

/// Holds one value of each return type, made with the real entry points.
#[derive(uniffi::Object)]
pub struct FfiBaseline {
    code: String,
    issued: Arc<IssuedCode>,
    ticket: Arc<Ticket>,
    online: OnlineOutcome,
    offline: OfflineOutcome,
    reconciliation: Reconciliation,
    decision: PolicyDecision,
    sms: Sms,
    totp_match: TotpMatch,
}

#[uniffi::export]
impl FfiBaseline {
    /// Makes the values the methods hand back, with `backend`, `receipt_json`
    /// (a receipt made for it), `order` and `values` as samples.
    ///
    /// # Errors
    /// Whatever the real entry points return for bad samples.
    #[uniffi::constructor]
    pub fn new(
        backend: Arc<Backend>,
        receipt_json: String,
        order: Order,
        values: MessageValues,
    ) -> FfiResult<Arc<Self>> {
        let issued = backend.issue(
            "PKG-2026-000123".into(),
            0,
            "courier-17".into(),
            UnixTime::from_secs(1_764_000_000),
            super::delivery::default_delivery_settings(),
        )?;
        let ticket = issued.ticket();
        let online = backend.verify_online(
            ticket.clone(),
            issued.code(),
            "courier-17".into(),
            "pixel-8-0042".into(),
            UnixTime::from_secs(1_764_000_010),
        )?;
        let reconciliation = backend.reconcile(
            receipt_json,
            ticket.clone(),
            UnixTime::from_secs(1_764_000_100),
        )?;
        Ok(Arc::new(FfiBaseline {
            code: issued.code(),
            issued,
            ticket,
            online,
            offline: OfflineOutcome::AcceptedProvisionally { attempts_used: 1 },
            reconciliation,
            decision: super::policy::RiskPolicy::defaults().decide(order)?,
            sms: super::policy::MessageTemplates::defaults().render_sms("en".into(), values)?,
            totp_match: TotpMatch {
                step: crate::Counter(1),
                drift: 0,
            },
        }))
    }

    /// Twin of `Hotp.generate`.
    pub fn code_for_counter(&self, _counter: crate::Counter) -> String {
        self.code.clone()
    }

    /// Twin of `Totp.generate`.
    ///
    /// # Errors
    /// None; the type is the entry point's.
    pub fn code_for_time_result(&self, _time: UnixTime) -> FfiResult<String> {
        Ok(self.code.clone())
    }

    /// Twin of `Hotp.verify`.
    ///
    /// # Errors
    /// None; the type is the entry point's.
    pub fn hotp_verify(
        &self,
        _code: String,
        counter: crate::Counter,
        _look_ahead: i32,
    ) -> FfiResult<Option<crate::Counter>> {
        Ok(Some(counter))
    }

    /// Twin of `Totp.verify`.
    ///
    /// # Errors
    /// None; the type is the entry point's.
    pub fn totp_verify(
        &self,
        _code: String,
        _time: UnixTime,
        _behind: i32,
        _ahead: i32,
        _last_used_step: Option<i64>,
    ) -> FfiResult<Option<TotpMatch>> {
        Ok(Some(self.totp_match))
    }

    /// Twin of `Backend.issue`.
    ///
    /// # Errors
    /// None; the type is the entry point's.
    pub fn issue(
        &self,
        _delivery_id: String,
        _sequence: i64,
        _courier_id: String,
        _now: UnixTime,
        _settings: DeliverySettings,
    ) -> FfiResult<Arc<IssuedCode>> {
        Ok(Arc::clone(&self.issued))
    }

    /// Twin of `Ticket.fromJson` and `Backend.readTicket`.
    ///
    /// # Errors
    /// None; the type is the entry point's.
    pub fn ticket_from_json(&self, _json: String) -> FfiResult<Arc<Ticket>> {
        Ok(self.ticket.clone())
    }

    /// Twin of `Backend.verifyOnline`.
    ///
    /// # Errors
    /// None; the type is the entry point's.
    pub fn verify_online(
        &self,
        _ticket: Arc<Ticket>,
        _entered: String,
        _courier_id: String,
        _device_id: String,
        _now: UnixTime,
    ) -> FfiResult<OnlineOutcome> {
        Ok(self.online)
    }

    /// Twin of `OfflineVerifier.verify`, without touching the store.
    ///
    /// # Errors
    /// None; the type is the entry point's.
    pub fn offline_verify(&self, _entered: String, _now: UnixTime) -> FfiResult<OfflineOutcome> {
        Ok(self.offline)
    }

    /// Twin of `OfflineVerifier.verify` that also calls the app's store once
    /// to load and once to save, as the real one must.
    ///
    /// # Errors
    /// `StateStorage` when the store fails.
    pub fn offline_verify_with_store(
        &self,
        store: Arc<dyn DeviceStateStore>,
        _entered: String,
        _now: UnixTime,
    ) -> FfiResult<OfflineOutcome> {
        let storage = |e: super::delivery::StoreError| crate::Error::StateStorage {
            reason: e.to_string(),
        };
        let state = store.load("baseline".into()).map_err(storage)?;
        store
            .compare_and_set("baseline".into(), state.clone(), state.unwrap_or_default())
            .map_err(storage)?;
        Ok(self.offline)
    }

    /// Twin of `Backend.reconcile`.
    ///
    /// # Errors
    /// None; the type is the entry point's.
    pub fn reconcile(
        &self,
        _receipt_json: String,
        _ticket: Arc<Ticket>,
        _now: UnixTime,
    ) -> FfiResult<Reconciliation> {
        Ok(self.reconciliation.clone())
    }

    /// Twin of `RiskPolicy.decide`.
    ///
    /// # Errors
    /// None; the type is the entry point's.
    pub fn decide(&self, _order: Order) -> FfiResult<PolicyDecision> {
        Ok(self.decision.clone())
    }

    /// Twin of `MessageTemplates.renderSms`.
    ///
    /// # Errors
    /// None; the type is the entry point's.
    pub fn render_sms(&self, _locale: String, _values: MessageValues) -> FfiResult<Sms> {
        Ok(self.sms.clone())
    }
}
