//! FFI for the risk policy, the customer's messages and masked contacts.

use std::sync::Arc;

use super::FfiResult;
use crate::{CodeFormat, Email, MessageValues, Order, PolicyDecision, Sms};

debug_as_inner!(RiskPolicy, MessageTemplates);

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
        self.inner.decide(&order)
    }

    /// Decides for an order given as JSON (the fields of `Order`, snake case).
    ///
    /// # Errors
    /// `InvalidOrder` naming the field.
    pub fn decide_json(&self, order_json: String) -> FfiResult<PolicyDecision> {
        self.inner.decide(&crate::Order::from_json(&order_json)?)
    }
}

// Debug of the records that hold the code leaves it out.
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
        self.inner.render_sms(&locale, &values)
    }

    /// The e-mail for `locale`.
    ///
    /// # Errors
    /// `InvalidTemplate` for an unknown locale or a bad value.
    pub fn render_email(&self, locale: String, values: MessageValues) -> FfiResult<Email> {
        self.inner.render_email(&locale, &values)
    }

    /// What the courier's app says the code looks like (`6 digits`).
    ///
    /// # Errors
    /// `InvalidTemplate` for an unknown locale.
    pub fn format_hint(&self, locale: String, format: CodeFormat) -> FfiResult<String> {
        self.inner.format_hint(&locale, format)
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
    use crate::UnixTime;

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
            code: issued.code(),
            expires_at: UnixTime::from_secs(1_764_086_400),
            utc_offset_minutes: 0,
        };
        let templates = MessageTemplates::defaults();
        let sms = templates.render_sms("en".into(), values.clone()).unwrap();
        let email = templates.render_email("en".into(), values.clone()).unwrap();
        assert!(sms.text.contains(&issued.code_grouped()));
        for text in [
            format!("{issued:?}"),
            format!("{values:?}"),
            format!("{sms:?}"),
            format!("{email:?}"),
        ] {
            assert!(!text.contains(&issued.code()), "{text}");
            assert!(!text.contains(&issued.code_grouped()), "{text}");
        }
    }
}
