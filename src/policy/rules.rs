//! The risk policy: whether a delivery needs a code, and with which settings.
//!
//! Rules are data ([`Rules`], serde JSON, version 1); the same rules and the
//! same order give the same [`PolicyDecision`] on the backend and in both
//! apps. The decision lists every reason that fired, each with a stable code
//! and a sentence an app can show and an auditor can read.
//!
//! # Rules, version 1
//!
//! ```json
//! {"version":1,
//!  "value_thresholds":{"GBP":10000,"EUR":10000,"USD":10000,"INR":50000},
//!  "high_value_categories":["high_value","electronics","jewellery"],
//!  "restricted_categories":["age_restricted","alcohol","tobacco","prescription"],
//!  "region_risk_at_least":70,
//!  "first_delivery_to_address":true,
//!  "not_received_claims_at_least":1,
//!  "customer_cannot_waive":["restricted_item","earlier_not_received_claims"],
//!  "strict_reasons":["restricted_item","earlier_not_received_claims","high_value_item"],
//!  "methods":{"hand_to_customer":"code","doorstep":"code","neighbour":"refuse",
//!             "safe_place":"photo","locker":"own_check","pickup_point":"own_check"},
//!  "standard":{"format":"numeric-6","hash_bits":12,"max_attempts":5,"lifetime_secs":86400,"verification":"offline"},
//!  "strict":{"format":"numeric-6","hash_bits":10,"max_attempts":3,"lifetime_secs":86400,"verification":"online"}}
//! ```
//!
//! - `value_thresholds`: per ISO 4217 currency, in minor units (10000 = 100.00 GBP); an
//!   order at or above its threshold needs a code. A currency with no threshold needs one
//!   too (`currency_without_threshold`): the policy fails closed.
//! - `methods`: what each delivery method does when a code is needed: `code` (the
//!   customer reads it out), `photo` (no one can receive a code: a photo is the proof),
//!   `own_check` (lockers and pickup points check the collection themselves), `refuse`
//!   (choose another method). Restricted items always need `code`.
//! - `customer_cannot_waive`: reasons a customer's "never" preference does not override.
//! - `strict_reasons`: reasons that select the `strict` settings over `standard`.
//!
//! Reason codes: `order_value`, `currency_without_threshold`, `high_value_item`,
//! `restricted_item`, `high_risk_region`, `first_delivery_to_address`,
//! `earlier_not_received_claims`, `customer_asked`, `customer_declined`,
//! `waiver_not_allowed`, `no_risk_signal`, `no_one_to_receive_code`,
//! `method_has_own_check`, `method_not_allowed`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::delivery::settings::{CodeFormat, DeliverySettings};
use crate::error::{Error, Result};

/// The rules file version this library reads.
pub const POLICY_VERSION: u32 = 1;

/// How a delivery reaches the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMethod {
    /// Into the customer's hands.
    HandToCustomer,
    /// At the customer's door, to whoever answers.
    Doorstep,
    /// Into a parcel locker.
    Locker,
    /// To a pickup point (a shop).
    PickupPoint,
    /// To a neighbour.
    Neighbour,
    /// Left in a safe place the customer chose.
    SafePlace,
}

impl DeliveryMethod {
    /// Every method.
    pub const ALL: [DeliveryMethod; 6] = [
        DeliveryMethod::HandToCustomer,
        DeliveryMethod::Doorstep,
        DeliveryMethod::Locker,
        DeliveryMethod::PickupPoint,
        DeliveryMethod::Neighbour,
        DeliveryMethod::SafePlace,
    ];

    /// The name in rules and orders: `hand_to_customer`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMethod::HandToCustomer => "hand_to_customer",
            DeliveryMethod::Doorstep => "doorstep",
            DeliveryMethod::Locker => "locker",
            DeliveryMethod::PickupPoint => "pickup_point",
            DeliveryMethod::Neighbour => "neighbour",
            DeliveryMethod::SafePlace => "safe_place",
        }
    }
}

/// What the customer asked for (nothing: `None` in [`Order`], and the rules decide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum CustomerPreference {
    /// Always a code.
    Always,
    /// Never a code, where the rules allow it.
    Never,
}

/// What a delivery method does when a code is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodRule {
    /// The customer reads the code out to the courier.
    Code,
    /// No one can receive a code; a photo is the proof.
    Photo,
    /// The locker or pickup point checks the collection itself.
    OwnCheck,
    /// Not allowed for such a delivery: choose another method.
    Refuse,
}

/// How the code is checked at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum VerificationMode {
    /// Offline on the phone if need be (provisional), reconciled later.
    Offline,
    /// Only online, by the backend.
    Online,
}

/// Code settings a policy tier gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRules {
    /// `numeric-N` or `crockford-N`.
    pub format: String,
    /// Allow 4 or 5 digit codes.
    #[serde(default)]
    pub allow_short_codes: bool,
    /// Width of the offline hash.
    pub hash_bits: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Lifetime in seconds.
    pub lifetime_secs: u64,
    /// Offline or online only.
    pub verification: VerificationMode,
}

/// The rules, as read from JSON (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Format version, 1.
    pub version: u32,
    /// Per currency, the order value (minor units) from which a code is needed.
    pub value_thresholds: BTreeMap<String, u64>,
    /// Categories that make an item high value.
    pub high_value_categories: Vec<String>,
    /// Categories that need a handover in person (age, prescription).
    pub restricted_categories: Vec<String>,
    /// Region risk score (0 to 100) from which a code is needed.
    pub region_risk_at_least: u8,
    /// Whether a first delivery to an address needs a code.
    pub first_delivery_to_address: bool,
    /// Earlier "not received" claims from which a code is needed (0: never).
    pub not_received_claims_at_least: u32,
    /// Reasons the customer's "never" does not override.
    pub customer_cannot_waive: Vec<String>,
    /// Reasons that select the strict tier.
    pub strict_reasons: Vec<String>,
    /// What each method does when a code is needed, by method name
    /// (`hand_to_customer`, ...).
    pub methods: BTreeMap<String, MethodRule>,
    /// Settings for most deliveries that need a code.
    pub standard: TierRules,
    /// Settings when a strict reason fired.
    pub strict: TierRules,
}

/// The defaults (the module documentation shows them as JSON).
pub const DEFAULT_RULES_JSON: &str = r#"{"version":1,
"value_thresholds":{"EUR":10000,"GBP":10000,"INR":50000,"USD":10000},
"high_value_categories":["high_value","electronics","jewellery"],
"restricted_categories":["age_restricted","alcohol","tobacco","prescription"],
"region_risk_at_least":70,
"first_delivery_to_address":true,
"not_received_claims_at_least":1,
"customer_cannot_waive":["restricted_item","earlier_not_received_claims"],
"strict_reasons":["restricted_item","earlier_not_received_claims","high_value_item"],
"methods":{"hand_to_customer":"code","doorstep":"code","neighbour":"refuse","safe_place":"photo","locker":"own_check","pickup_point":"own_check"},
"standard":{"format":"numeric-6","hash_bits":12,"max_attempts":5,"lifetime_secs":86400,"verification":"offline"},
"strict":{"format":"numeric-6","hash_bits":10,"max_attempts":3,"lifetime_secs":86400,"verification":"online"}}"#;

const REASONS: [&str; 14] = [
    "order_value",
    "currency_without_threshold",
    "high_value_item",
    "restricted_item",
    "high_risk_region",
    "first_delivery_to_address",
    "earlier_not_received_claims",
    "customer_asked",
    "customer_declined",
    "waiver_not_allowed",
    "no_risk_signal",
    "no_one_to_receive_code",
    "method_has_own_check",
    "method_not_allowed",
];

/// The order facts the policy reads. Numbers are signed so that Kotlin,
/// Swift and Java read them as plain integers; [`Rules::decide`] refuses
/// negative ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// Order value in minor units (pence, cents, paise), 0 or more.
    pub value_minor: i64,
    /// ISO 4217 currency code, such as `GBP`.
    pub currency: String,
    /// How it is delivered.
    pub method: DeliveryMethod,
    /// Item categories, such as `electronics` or `age_restricted`.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default = []))]
    pub categories: Vec<String>,
    /// Region risk score, 0 to 100.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default = 0))]
    pub region_risk: i32,
    /// What the customer asked for; none (JSON: absent, null or `"none"`)
    /// leaves it to the rules.
    #[serde(default, deserialize_with = "preference")]
    #[cfg_attr(feature = "ffi", uniffi(default = None))]
    pub customer_preference: Option<CustomerPreference>,
    /// Whether this is the first delivery to this address.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default = false))]
    pub first_delivery_to_address: bool,
    /// Earlier "not received" claims by this customer, 0 or more.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default = 0))]
    pub not_received_claims: i32,
}

/// Reads `"always"`, `"never"`, and for no preference null or `"none"`.
fn preference<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> core::result::Result<Option<CustomerPreference>, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Written {
        None,
        Always,
        Never,
    }
    Ok(match Option::<Written>::deserialize(d)? {
        None | Some(Written::None) => None,
        Some(Written::Always) => Some(CustomerPreference::Always),
        Some(Written::Never) => Some(CustomerPreference::Never),
    })
}

/// One rule that fired (Kotlin and Swift: `PolicyReason`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record), uniffi(name = "PolicyReason"))]
pub struct Reason {
    /// Stable code, such as `order_value`.
    pub code: String,
    /// The same in a sentence.
    pub detail: String,
}

/// What the policy asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
pub enum Requirement {
    /// A code, with these settings.
    Code {
        /// Issue the code with these.
        settings: DeliverySettings,
        /// How it is checked.
        verification: VerificationMode,
    },
    /// A photo of the parcel where it was left, since no one can receive a code.
    Photo,
    /// No code.
    NoCode,
    /// This delivery method is not allowed for this order; choose another.
    MethodNotAllowed,
}

impl Requirement {
    /// Stable name: `code`, `photo`, `no_code`, `method_not_allowed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Requirement::Code { .. } => "code",
            Requirement::Photo => "photo",
            Requirement::NoCode => "no_code",
            Requirement::MethodNotAllowed => "method_not_allowed",
        }
    }
}

/// The policy's decision for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct PolicyDecision {
    /// What to do.
    pub requirement: Requirement,
    /// Every reason that fired, in rule order.
    pub reasons: Vec<Reason>,
}

fn bad_rules(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidPolicy {
        field: crate::error::echoed(&field.into()),
        reason: crate::error::echoed(&reason.into()),
    }
}

fn bad_order(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidOrder {
        field: crate::error::echoed(field),
        reason: crate::error::echoed(&reason.into()),
    }
}

fn check_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

fn check_category(category: &str) -> bool {
    !category.is_empty()
        && category.len() <= 64
        && category
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Minor units as a decimal amount, two places: 15000 -> "150.00".
fn amount(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

impl TierRules {
    fn settings(&self, field: &str) -> Result<DeliverySettings> {
        let format: CodeFormat = self
            .format
            .parse()
            .map_err(|e: Error| bad_rules(format!("{field}.format"), e.to_string()))?;
        let at = |name: &str| format!("{field}.{name}");
        format
            .check(self.allow_short_codes)
            .map_err(|e| bad_rules(at("format"), e.to_string()))?;
        crate::delivery::settings::check_hash_bits(format, self.hash_bits)
            .map_err(|e| bad_rules(at("hash_bits"), e.to_string()))?;
        crate::delivery::settings::check_attempts(self.max_attempts)
            .map_err(|e| bad_rules(at("max_attempts"), e.to_string()))?;
        // Both are checked to be small (at most 32 and 100), so they fit exactly.
        let settings = DeliverySettings {
            format,
            allow_short_codes: self.allow_short_codes,
            hash_bits: crate::error::count(self.hash_bits),
            max_attempts: crate::error::count(self.max_attempts),
            lifetime: std::time::Duration::from_secs(self.lifetime_secs),
        };
        // What is left to check is the lifetime.
        settings
            .check()
            .map_err(|e| bad_rules(at("lifetime_secs"), e.to_string()))?;
        Ok(settings)
    }
}

impl Rules {
    /// The default rules.
    pub fn defaults() -> Self {
        // The defaults are tested to read; this fallback is never taken.
        Self::from_json(DEFAULT_RULES_JSON).unwrap_or_else(|_| Rules {
            version: POLICY_VERSION,
            value_thresholds: BTreeMap::new(),
            high_value_categories: Vec::new(),
            restricted_categories: Vec::new(),
            region_risk_at_least: 0,
            first_delivery_to_address: true,
            not_received_claims_at_least: 1,
            customer_cannot_waive: Vec::new(),
            strict_reasons: Vec::new(),
            methods: BTreeMap::new(),
            standard: TierRules {
                format: "numeric-6".into(),
                allow_short_codes: false,
                hash_bits: 12,
                max_attempts: 5,
                lifetime_secs: 86400,
                verification: VerificationMode::Online,
            },
            strict: TierRules {
                format: "numeric-6".into(),
                allow_short_codes: false,
                hash_bits: 12,
                max_attempts: 5,
                lifetime_secs: 86400,
                verification: VerificationMode::Online,
            },
        })
    }

    /// Reads and checks rules.
    ///
    /// # Errors
    /// [`Error::InvalidPolicy`] naming the field: malformed JSON, an unknown
    /// or missing field, another version, a bad currency or category, a
    /// reason code that does not exist, a method without a rule, or tier
    /// settings [`DeliverySettings::check`] refuses.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut de = serde_json::Deserializer::from_str(text);
        let rules: Rules = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // Rules hold no secrets: serde's own words name the problem.
            bad_rules(
                if path == "." {
                    "(top)".to_string()
                } else {
                    path
                },
                inner.to_string(),
            )
        })?;
        de.end()
            .map_err(|_| bad_rules("(top)", "text follows the rules"))?;
        rules.check()?;
        Ok(rules)
    }

    /// The rules as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn check(&self) -> Result<()> {
        if self.version != POLICY_VERSION {
            return Err(bad_rules(
                "version",
                format!(
                    "version {} is not read by this library, which reads {POLICY_VERSION}",
                    self.version
                ),
            ));
        }
        for currency in self.value_thresholds.keys() {
            if !check_currency(currency) {
                return Err(bad_rules(
                    format!("value_thresholds.{currency}"),
                    "a currency is three capital letters (ISO 4217)",
                ));
            }
        }
        for (field, list) in [
            ("high_value_categories", &self.high_value_categories),
            ("restricted_categories", &self.restricted_categories),
        ] {
            if let Some((i, _)) = list.iter().enumerate().find(|(_, c)| !check_category(c)) {
                return Err(bad_rules(
                    format!("{field}[{i}]"),
                    "a category is 1 to 64 of a-z, 0-9 and _",
                ));
            }
        }
        if self.region_risk_at_least > 100 {
            return Err(bad_rules(
                "region_risk_at_least",
                "a risk score is 0 to 100",
            ));
        }
        for (field, list) in [
            ("customer_cannot_waive", &self.customer_cannot_waive),
            ("strict_reasons", &self.strict_reasons),
        ] {
            if let Some((i, code)) = list
                .iter()
                .enumerate()
                .find(|(_, c)| !REASONS.contains(&c.as_str()))
            {
                return Err(bad_rules(
                    format!("{field}[{i}]"),
                    format!("'{code}' is not a reason code"),
                ));
            }
        }
        for name in self.methods.keys() {
            if !DeliveryMethod::ALL.iter().any(|m| m.as_str() == name) {
                return Err(bad_rules(
                    format!("methods.{name}"),
                    "not a delivery method; they are hand_to_customer, doorstep, locker, pickup_point, neighbour and safe_place",
                ));
            }
        }
        for method in DeliveryMethod::ALL {
            if !self.methods.contains_key(method.as_str()) {
                return Err(bad_rules(
                    format!("methods.{}", method.as_str()),
                    "every delivery method needs a rule",
                ));
            }
        }
        self.standard.settings("standard")?;
        self.strict.settings("strict")?;
        Ok(())
    }

    /// Decides for one order.
    ///
    /// # Errors
    /// [`Error::InvalidOrder`] for a currency that is not three capital
    /// letters, a category outside `a-z 0-9 _`, a risk score outside 0 to
    /// 100, or a negative order value or claim count.
    pub fn decide(&self, order: &Order) -> Result<PolicyDecision> {
        if !check_currency(&order.currency) {
            return Err(bad_order(
                "currency",
                "a currency is three capital letters (ISO 4217)",
            ));
        }
        if let Some((i, _)) = order
            .categories
            .iter()
            .enumerate()
            .find(|(_, c)| !check_category(c))
        {
            return Err(bad_order(
                &format!("categories[{i}]"),
                "a category is 1 to 64 of a-z, 0-9 and _",
            ));
        }
        if !(0..=100).contains(&order.region_risk) {
            return Err(bad_order("region_risk", "a risk score is 0 to 100"));
        }
        let Ok(value_minor) = u64::try_from(order.value_minor) else {
            return Err(bad_order("value_minor", "an order value is 0 or more"));
        };
        let Ok(claims) = u32::try_from(order.not_received_claims) else {
            return Err(bad_order(
                "not_received_claims",
                "a count of claims is 0 or more",
            ));
        };
        let mut fired: Vec<Reason> = Vec::new();
        let mut fire = |code: &str, detail: String| {
            fired.push(Reason {
                code: code.into(),
                detail,
            })
        };
        match self.value_thresholds.get(&order.currency) {
            Some(&threshold) if value_minor >= threshold => fire(
                "order_value",
                format!(
                    "the order value {} {} is at or above {} {}",
                    amount(value_minor),
                    order.currency,
                    amount(threshold),
                    order.currency
                ),
            ),
            Some(_) => {}
            None => fire(
                "currency_without_threshold",
                format!(
                    "the rules set no value threshold for {}, so the order counts as high value",
                    order.currency
                ),
            ),
        }
        let matching = |list: &[String]| -> Vec<String> {
            order
                .categories
                .iter()
                .filter(|c| list.contains(c))
                .cloned()
                .collect()
        };
        let high = matching(&self.high_value_categories);
        if !high.is_empty() {
            fire(
                "high_value_item",
                format!("high-value items: {}", high.join(", ")),
            );
        }
        let restricted = matching(&self.restricted_categories);
        if !restricted.is_empty() {
            fire(
                "restricted_item",
                format!(
                    "items that must be handed over in person: {}",
                    restricted.join(", ")
                ),
            );
        }
        if order.region_risk >= i32::from(self.region_risk_at_least) {
            fire(
                "high_risk_region",
                format!(
                    "the region's risk score {} is at or above {}",
                    order.region_risk, self.region_risk_at_least
                ),
            );
        }
        if order.first_delivery_to_address && self.first_delivery_to_address {
            fire(
                "first_delivery_to_address",
                "the first delivery to this address".into(),
            );
        }
        if self.not_received_claims_at_least > 0 && claims >= self.not_received_claims_at_least {
            fire(
                "earlier_not_received_claims",
                format!(
                    "{} earlier \"not received\" claim(s) by this customer",
                    claims
                ),
            );
        }
        if order.customer_preference == Some(CustomerPreference::Always) {
            fire("customer_asked", "the customer asked for a code".into());
        }
        let mut reasons = fired;
        let has =
            |reasons: &[Reason], list: &[String]| reasons.iter().any(|r| list.contains(&r.code));
        let mut needs_code = !reasons.is_empty();
        if needs_code && order.customer_preference == Some(CustomerPreference::Never) {
            let binding: Vec<String> = reasons
                .iter()
                .filter(|r| self.customer_cannot_waive.contains(&r.code))
                .map(|r| r.code.clone())
                .collect();
            if binding.is_empty() {
                needs_code = false;
                reasons.push(Reason {
                    code: "customer_declined".into(),
                    detail: "the customer asked for no code, and the rules allow it".into(),
                });
            } else {
                reasons.push(Reason {
                    code: "waiver_not_allowed".into(),
                    detail: format!(
                        "the customer asked for no code, which {} does not allow",
                        binding.join(", ")
                    ),
                });
            }
        }
        if !needs_code {
            if reasons.is_empty() {
                reasons.push(Reason {
                    code: "no_risk_signal".into(),
                    detail: "no rule asked for a code".into(),
                });
            }
            return Ok(PolicyDecision {
                requirement: Requirement::NoCode,
                reasons,
            });
        }
        let restricted_fired = reasons.iter().any(|r| r.code == "restricted_item");
        let rule = self
            .methods
            .get(order.method.as_str())
            .copied()
            .unwrap_or(MethodRule::Refuse);
        let requirement = match rule {
            MethodRule::Code => {
                let strict = has(&reasons, &self.strict_reasons);
                let (tier, field) = if strict {
                    (&self.strict, "strict")
                } else {
                    (&self.standard, "standard")
                };
                Requirement::Code {
                    settings: tier.settings(field)?,
                    verification: tier.verification,
                }
            }
            _ if restricted_fired => {
                reasons.push(Reason {
                    code: "method_not_allowed".into(),
                    detail: "restricted items are handed to the customer in person".into(),
                });
                Requirement::MethodNotAllowed
            }
            MethodRule::Photo => {
                reasons.push(Reason {
                    code: "no_one_to_receive_code".into(),
                    detail: "no one is there to read out a code: take a photo of the parcel where it is left".into(),
                });
                Requirement::Photo
            }
            MethodRule::OwnCheck => {
                reasons.push(Reason {
                    code: "method_has_own_check".into(),
                    detail: "the locker or pickup point checks the collection itself".into(),
                });
                Requirement::NoCode
            }
            MethodRule::Refuse => {
                reasons.push(Reason {
                    code: "method_not_allowed".into(),
                    detail: "a delivery that needs a code is not left with this method".into(),
                });
                Requirement::MethodNotAllowed
            }
        };
        Ok(PolicyDecision {
            requirement,
            reasons,
        })
    }
}

impl Order {
    /// Reads an order from JSON (the fields of [`Order`], snake case).
    ///
    /// # Errors
    /// [`Error::InvalidOrder`] naming the field.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            bad_order(if path == "." { "(top)" } else { &path }, inner.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_read() {
        let rules = Rules::from_json(DEFAULT_RULES_JSON).unwrap();
        assert_eq!(rules, Rules::defaults());
        assert_eq!(Rules::from_json(&rules.to_json()).unwrap(), rules);
    }

    #[test]
    fn negative_numbers_in_an_order_are_named() {
        let base = r#"{"value_minor":100,"currency":"GBP","method":"doorstep""#;
        let rules = Rules::defaults();
        for (extra, field) in [
            (r#","region_risk":-1"#, "region_risk"),
            (r#","not_received_claims":-1"#, "not_received_claims"),
        ] {
            let order = Order::from_json(&format!("{base}{extra}}}")).unwrap();
            match rules.decide(&order) {
                Err(Error::InvalidOrder { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let negative =
            Order::from_json(r#"{"value_minor":-1,"currency":"GBP","method":"doorstep"}"#).unwrap();
        assert!(matches!(
            rules.decide(&negative),
            Err(Error::InvalidOrder { ref field, .. }) if field == "value_minor"
        ));
        // No preference: absent, null or "none" alike.
        for preference in [
            "",
            r#","customer_preference":null"#,
            r#","customer_preference":"none""#,
        ] {
            let order = Order::from_json(&format!("{base}{preference}}}")).unwrap();
            assert_eq!(order.customer_preference, None, "{preference}");
        }
        let always =
            Order::from_json(&format!(r#"{base},"customer_preference":"always"}}"#)).unwrap();
        assert_eq!(always.customer_preference, Some(CustomerPreference::Always));
    }
}
