//! FFI for the risk policy, the customer's messages and masked contacts.

use std::sync::Arc;

use super::delivery::{CodeFormat, DeliverySettings};
use super::FfiResult;
use crate::error::count;
use crate::UnixTime;
use crate::{DeliveryMethod, Email, SmsEncoding, VerificationMode};

debug_as_inner!(RiskPolicy, MessageTemplates);

/// What the customer asked for (no preference: null/nil).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CustomerPreference {
    /// Always a code.
    Always,
    /// Never a code, where the rules allow it.
    Never,
}

/// The order facts the policy reads.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Order {
    /// Order value in minor units (pence, cents, paise), 0 or more.
    pub value_minor: i64,
    /// ISO 4217 currency code, such as `GBP`.
    pub currency: String,
    /// How it is delivered.
    pub method: DeliveryMethod,
    /// Item categories, such as `electronics` or `age_restricted`.
    #[uniffi(default = [])]
    pub categories: Vec<String>,
    /// Region risk score, 0 to 100.
    #[uniffi(default = 0)]
    pub region_risk: i32,
    /// What the customer asked for; none when null/nil.
    #[uniffi(default = None)]
    pub customer_preference: Option<CustomerPreference>,
    /// Whether this is the first delivery to this address.
    #[uniffi(default = false)]
    pub first_delivery_to_address: bool,
    /// Earlier "not received" claims by this customer.
    #[uniffi(default = 0)]
    pub not_received_claims: i32,
}

impl Order {
    /// The core's order; a negative number (or a region risk over 255) is refused.
    fn core(self) -> FfiResult<crate::Order> {
        fn field<T: TryFrom<i64>>(n: impl Into<i64>, name: &str) -> FfiResult<T> {
            let n = n.into();
            T::try_from(n).map_err(|_| crate::Error::InvalidOrder {
                field: name.to_string(),
                reason: format!("{n} is out of range"),
            })
        }
        let o = self;
        Ok(crate::Order {
            value_minor: field(o.value_minor, "value_minor")?,
            currency: o.currency,
            method: o.method,
            categories: o.categories,
            region_risk: field(o.region_risk, "region_risk")?,
            customer_preference: match o.customer_preference {
                None => crate::CustomerPreference::None,
                Some(CustomerPreference::Always) => crate::CustomerPreference::Always,
                Some(CustomerPreference::Never) => crate::CustomerPreference::Never,
            },
            first_delivery_to_address: o.first_delivery_to_address,
            not_received_claims: field(o.not_received_claims, "not_received_claims")?,
        })
    }
}

/// What the policy asks for.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
#[uniffi::export(Debug)]
pub enum Requirement {
    /// A code, with these settings.
    Code {
        /// Issue the code with these.
        settings: DeliverySettings,
        /// How it is checked.
        verification: VerificationMode,
    },
    /// A photo where the parcel is left, since no one can receive a code.
    Photo,
    /// No code.
    NoCode,
    /// This delivery method is not allowed for this order.
    MethodNotAllowed,
}

/// One rule that fired.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PolicyReason {
    /// Stable code, such as `order_value`.
    pub code: String,
    /// The same in a sentence.
    pub detail: String,
}

/// The policy's decision for one order.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PolicyDecision {
    /// What to do.
    pub requirement: Requirement,
    /// Every reason that fired, in rule order.
    pub reasons: Vec<PolicyReason>,
}

impl From<crate::PolicyDecision> for PolicyDecision {
    fn from(d: crate::PolicyDecision) -> Self {
        PolicyDecision {
            requirement: match d.requirement {
                crate::Requirement::Code {
                    settings,
                    verification,
                } => Requirement::Code {
                    settings: settings.into(),
                    verification: match verification {
                        crate::VerificationMode::Offline => VerificationMode::Offline,
                        crate::VerificationMode::Online => VerificationMode::Online,
                    },
                },
                crate::Requirement::Photo => Requirement::Photo,
                crate::Requirement::NoCode => Requirement::NoCode,
                crate::Requirement::MethodNotAllowed => Requirement::MethodNotAllowed,
            },
            reasons: d
                .reasons
                .into_iter()
                .map(|r| PolicyReason {
                    code: r.code,
                    detail: r.detail,
                })
                .collect(),
        }
    }
}

/// Risk-policy rules: whether a delivery needs a code, and which settings.
/// The backend and both apps decide the same from the same rules.
#[derive(uniffi::Object)]
#[uniffi::export(Debug)]
pub struct RiskPolicy {
    inner: crate::Rules,
}

#[uniffi::export]
impl RiskPolicy {
    /// The default rules.
    #[uniffi::constructor]
    pub fn defaults() -> Arc<Self> {
        Arc::new(RiskPolicy {
            inner: crate::Rules::defaults(),
        })
    }

    /// Reads rules (JSON, version 1).
    ///
    /// # Errors
    /// `InvalidPolicy` naming the field.
    #[uniffi::constructor]
    pub fn from_json(json: String) -> FfiResult<Arc<Self>> {
        Ok(Arc::new(RiskPolicy {
            inner: crate::Rules::from_json(&json)?,
        }))
    }

    /// The rules as JSON.
    pub fn to_json(&self) -> String {
        self.inner.to_json()
    }

    /// Decides for one order.
    ///
    /// # Errors
    /// `InvalidOrder` naming the field.
    pub fn decide(&self, order: Order) -> FfiResult<PolicyDecision> {
        Ok(self.inner.decide(&order.core()?)?.into())
    }

    /// Decides for an order given as JSON (the fields of `Order`, snake case).
    ///
    /// # Errors
    /// `InvalidOrder` naming the field.
    pub fn decide_json(&self, order_json: String) -> FfiResult<PolicyDecision> {
        Ok(self
            .inner
            .decide(&crate::Order::from_json(&order_json)?)?
            .into())
    }
}

/// What a customer's message says.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct MessageValues {
    /// Who sends it (an SMS sender id has at most 11 characters).
    pub sender: String,
    /// The delivery id or parcel number.
    pub delivery_id: String,
    /// The code.
    pub code: String,
    /// Until when it is valid.
    pub expires_at: UnixTime,
    /// The customer's UTC offset in minutes.
    #[uniffi(default = 0)]
    pub utc_offset_minutes: i32,
}

impl From<MessageValues> for crate::MessageValues {
    fn from(v: MessageValues) -> Self {
        crate::MessageValues {
            sender: v.sender,
            delivery_id: v.delivery_id,
            code: v.code,
            expires_at: v.expires_at.secs(),
            utc_offset_minutes: v.utc_offset_minutes,
        }
    }
}

/// A rendered SMS.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct Sms {
    /// The text.
    pub text: String,
    /// Its encoding.
    pub encoding: SmsEncoding,
    /// Characters as the network counts them.
    pub units: i32,
    /// Segments it takes.
    pub segments: i32,
}

// Debug of the records that hold the code leaves it out.
impl std::fmt::Debug for MessageValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::MessageValues::from(self.clone()).fmt(f)
    }
}

impl std::fmt::Debug for Sms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::Sms {
            text: self.text.clone(),
            encoding: self.encoding,
            units: u32::try_from(self.units).unwrap_or(0),
            segments: u32::try_from(self.segments).unwrap_or(0),
        }
        .fmt(f)
    }
}

/// Message templates by locale.
#[derive(uniffi::Object)]
#[uniffi::export(Debug)]
pub struct MessageTemplates {
    inner: crate::Templates,
}

#[uniffi::export]
impl MessageTemplates {
    /// The default templates (English and German).
    #[uniffi::constructor]
    pub fn defaults() -> Arc<Self> {
        Arc::new(MessageTemplates {
            inner: crate::Templates::defaults(),
        })
    }

    /// Reads templates (JSON, version 1); each message must hold `{code}`
    /// and `{warning}`.
    ///
    /// # Errors
    /// `InvalidTemplate` naming the field.
    #[uniffi::constructor]
    pub fn from_json(json: String) -> FfiResult<Arc<Self>> {
        Ok(Arc::new(MessageTemplates {
            inner: crate::Templates::from_json(&json)?,
        }))
    }

    /// The SMS for `locale` (or its language), with encoding and segments.
    ///
    /// # Errors
    /// `InvalidTemplate` for an unknown locale or a bad value.
    pub fn render_sms(&self, locale: String, values: MessageValues) -> FfiResult<Sms> {
        let sms = self.inner.render_sms(&locale, &values.into())?;
        Ok(Sms {
            text: sms.text,
            encoding: sms.encoding,
            units: count(sms.units),
            segments: count(sms.segments),
        })
    }

    /// The e-mail for `locale`.
    ///
    /// # Errors
    /// `InvalidTemplate` for an unknown locale or a bad value.
    pub fn render_email(&self, locale: String, values: MessageValues) -> FfiResult<Email> {
        self.inner.render_email(&locale, &values.into())
    }

    /// What the courier's app says the code looks like (`6 digits`).
    ///
    /// # Errors
    /// `InvalidTemplate` for an unknown locale.
    pub fn format_hint(&self, locale: String, format: CodeFormat) -> FfiResult<String> {
        self.inner.format_hint(&locale, format.core()?)
    }
}

/// A phone number masked for the courier's screen (`+44 ••• ••• 1234`).
///
/// # Errors
/// `InvalidContact`.
#[uniffi::export]
pub fn mask_phone(phone: String) -> FfiResult<String> {
    crate::mask_phone(&phone)
}

/// An e-mail address masked for the courier's screen (`j•••@e•••.com`).
///
/// # Errors
/// `InvalidContact`.
#[uniffi::export]
pub fn mask_email(email: String) -> FfiResult<String> {
    crate::mask_email(&email)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::delivery::{default_delivery_settings, Backend, KeySet};

    #[test]
    fn debug_of_exported_records_leaves_out_the_code() {
        let backend = Backend::new(KeySet::generate("k1".into()).unwrap());
        let issued = backend
            .issue(
                "PKG-1".into(),
                0,
                "courier-1".into(),
                UnixTime::from_secs(1_764_000_000),
                default_delivery_settings(),
            )
            .unwrap();
        let values = MessageValues {
            sender: "Acme".into(),
            delivery_id: "PKG-1".into(),
            code: issued.code.clone(),
            expires_at: UnixTime::from_secs(1_764_086_400),
            utc_offset_minutes: 0,
        };
        let templates = MessageTemplates::defaults();
        let sms = templates.render_sms("en".into(), values.clone()).unwrap();
        let email = templates.render_email("en".into(), values.clone()).unwrap();
        assert!(sms.text.contains(&issued.code_grouped));
        for text in [
            format!("{issued:?}"),
            format!("{values:?}"),
            format!("{sms:?}"),
            format!("{email:?}"),
        ] {
            assert!(!text.contains(&issued.code), "{text}");
            assert!(!text.contains(&issued.code_grouped), "{text}");
        }
    }
}
