//! The `/v1` operations. Each handler checks the caller's scope, reads and
//! checks its input, and does its work in one database transaction. No
//! response holds a code, except inside the rendered customer message whose
//! job is to carry it; nothing here logs one.

use std::sync::Arc;

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use delivery_otp::{
    mask_email, mask_phone, Decision, DeliverySettings, Issued, MessageValues, OnlineOutcome,
    Order, Receipt, Reconciliation, Requirement, Ticket, VerificationMode,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::auth::{sha256_hex, Actor, Caller, Signed, SignedInTx};
use crate::db::{self, DeliveryRow, ReceiptRecord, Tx};
use crate::problem::{Problem, ProblemBody};
use crate::{now, AppState};

/// Most receipts in one upload.
pub const MAX_RECEIPTS_PER_UPLOAD: usize = 100;
/// Most times a delivery's code is sent again.
pub const MAX_RESENDS: u32 = 3;

/// A JSON body whose rejections (malformed JSON, a wrong type, an unknown
/// field, too large) are problem responses.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let status = rejection.status();
                let kind = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "not_json",
                    _ => "invalid_body",
                };
                // The parser's words name the field and position; the
                // core's bound keeps an echoed value short.
                let detail = rejection.body_text();
                let detail: String = detail.chars().take(300).collect();
                Err(Problem::new(status, kind, detail))
            }
        }
    }
}

/// Where the customer's code goes: exactly one of the two.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// A phone number in international form, for an SMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// An e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// `issueCode`'s request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// The delivery (parcel) id.
    pub delivery_id: String,
    /// The courier the delivery is given to.
    pub courier_id: String,
    /// The order, as the risk policy reads it (see the rules' schema).
    #[schema(value_type = Object)]
    pub order: serde_json::Value,
    /// Where the code goes.
    pub contact: Contact,
    /// The customer's locale for the message, such as `en` or `de`.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// The customer's UTC offset in minutes, for the expiry in the message.
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

fn default_locale() -> String {
    "en".into()
}

/// One rule of the policy that fired.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReasonBody {
    /// Stable code, such as `order_value`.
    pub code: String,
    /// The same in a sentence.
    pub detail: String,
}

/// The message for the caller's SMS or e-mail gateway. It is the only
/// place a response carries the code.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBody {
    /// `sms` or `email`.
    pub channel: String,
    /// The phone number or address to send it to.
    pub to: String,
    /// The SMS text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// SMS segments it takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<u32>,
    /// The e-mail subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The e-mail body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// `issueCode`, `resendCode` and `reassignDelivery`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssueResponse {
    /// The delivery id.
    pub delivery_id: String,
    /// `code`, `photo`, `no_code` or `method_not_allowed`.
    pub requirement: String,
    /// The policy's reasons.
    pub reasons: Vec<ReasonBody>,
    /// `offline` or `online` (with a code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<String>,
    /// The ticket's sequence (with a code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// The courier's ticket, its JSON as the app reads it (with a code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// Where the code went, masked for the courier's screen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_to: Option<String>,
    /// The customer's message, for the caller to send (with a code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageBody>,
    /// True when this answers a retry of an earlier, identical request.
    pub repeated: bool,
}

/// What the service needs from a delivery to render its message.
struct Rendered {
    sent_to: String,
    message: MessageBody,
}

fn contact_of(contact: &Contact) -> Result<(&'static str, String), Problem> {
    match (&contact.phone, &contact.email) {
        (Some(phone), None) => Ok(("sms", phone.clone())),
        (None, Some(email)) => Ok(("email", email.clone())),
        _ => Err(Problem::bad_request(
            "invalid_contact",
            "give exactly one of contact.phone and contact.email",
        )),
    }
}

fn render(
    state: &AppState,
    contact: &Contact,
    locale: &str,
    offset: i32,
    delivery_id: &str,
    issued: &Issued,
) -> Result<Rendered, Problem> {
    let (channel, to) = contact_of(contact)?;
    let values = MessageValues {
        sender: state.sender.clone(),
        delivery_id: delivery_id.to_string(),
        code: issued.code.as_str().to_string(),
        expires_at: delivery_otp::UnixTime::from_secs(issued.ticket.expires_at()),
        utc_offset_minutes: offset,
    };
    if channel == "sms" {
        let sms = state.templates.render_sms(locale, &values)?;
        Ok(Rendered {
            sent_to: mask_phone(&to)?,
            message: MessageBody {
                channel: channel.into(),
                to,
                text: Some(sms.text.clone()),
                segments: Some(count(sms.segments)),
                subject: None,
                body: None,
            },
        })
    } else {
        let email = state.templates.render_email(locale, &values)?;
        Ok(Rendered {
            sent_to: mask_email(&to)?,
            message: MessageBody {
                channel: channel.into(),
                to,
                text: None,
                segments: None,
                subject: Some(email.subject.clone()),
                body: Some(email.body.clone()),
            },
        })
    }
}

/// The settings as stored with the delivery (their JSON form in the core).
fn settings_from_json(text: &str) -> Result<DeliverySettings, Problem> {
    serde_json::from_str(text).map_err(|_| Problem::unavailable("stored settings unreadable"))
}

fn answer(
    delivery_id: &str,
    requirement: &str,
    reasons: Vec<ReasonBody>,
    verification: Option<VerificationMode>,
    issued: &Issued,
    rendered: Rendered,
    repeated: bool,
) -> IssueResponse {
    IssueResponse {
        delivery_id: delivery_id.to_string(),
        requirement: requirement.to_string(),
        reasons,
        verification: verification.map(|v| match v {
            VerificationMode::Offline => "offline".to_string(),
            VerificationMode::Online => "online".to_string(),
        }),
        sequence: Some(issued.ticket.sequence()),
        ticket: Some(issued.ticket.to_json()),
        sent_to: Some(rendered.sent_to),
        message: Some(rendered.message),
        repeated,
    }
}

/// Issues a delivery's code, after the risk policy decides it needs one.
#[utoipa::path(post, path = "/v1/deliveries", operation_id = "issueCode", tag = "deliveries",
    request_body = IssueRequest,
    responses(
        (status = 201, description = "Issued (or the policy's decision when no code is needed)", body = IssueResponse),
        (status = 200, description = "The same request again: the same ticket and message", body = IssueResponse),
        (status = 400, description = "Bad input", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No or an unknown token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "A token without the issue scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The delivery was issued with other details", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("token" = ["issue"])))]
pub async fn issue_code(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<IssueRequest>,
) -> Result<Response, Problem> {
    caller.require("issue")?;
    contact_of(&req.contact)?;
    let order = Order::from_json(&req.order.to_string())?;
    let decision = state.rules.decide(&order)?;
    let reasons: Vec<ReasonBody> = decision
        .reasons
        .iter()
        .map(|r| ReasonBody {
            code: r.code.clone(),
            detail: r.detail.clone(),
        })
        .collect();
    let (settings, verification) = match &decision.requirement {
        Requirement::Code {
            settings,
            verification,
        } => (*settings, *verification),
        other => {
            let body = IssueResponse {
                delivery_id: req.delivery_id.clone(),
                requirement: other.kind().to_string(),
                reasons,
                verification: None,
                sequence: None,
                ticket: None,
                sent_to: None,
                message: None,
                repeated: false,
            };
            return Ok((StatusCode::CREATED, Json(body)).into_response());
        }
    };
    let digest = sha256_hex(serde_json::to_string(&req).unwrap_or_default().as_bytes());
    let now = now();
    let st = state.clone();
    // One idempotent write: outside a transaction on PostgreSQL (see
    // db::autocommit).
    let (response, repeated) = db::autocommit(&state.db, move |tx| {
        let backend = st.core(tx);
        // The delivery is written first, with its history's first entry,
        // unless its id exists: one statement on PostgreSQL. A concurrent
        // issue of the same id waits for this one and then finds it.
        let render_for = |issued: &Issued| {
            render(
                &st,
                &req.contact,
                &req.locale,
                req.utc_offset_minutes,
                &req.delivery_id,
                issued,
            )
        };
        let issued = backend.issue(&req.delivery_id, 0, &req.courier_id, now, &settings)?;
        let rendered = render_for(&issued)?;
        let row = DeliveryRow {
            delivery_id: req.delivery_id.clone(),
            sequence: 0,
            courier_id: req.courier_id.clone(),
            settings: serde_json::to_string(&settings).unwrap_or_default(),
            ticket: issued.ticket.to_json(),
            status: "issued".into(),
            contact: serde_json::to_string(&req.contact).unwrap_or_default(),
            locale: req.locale.clone(),
            utc_offset_minutes: req.utc_offset_minutes,
            request_digest: digest.clone(),
            resends: 0,
            created_at: now,
        };
        let detail = serde_json::json!({
            "sequence": 0, "courier_id": req.courier_id, "channel": rendered.message.channel,
            "sent_to": rendered.sent_to, "verification": verification_name(verification),
        });
        let (issued, rendered, repeated) = if tx.insert_delivery(&row, now, &detail)? {
            (issued, rendered, false)
        } else {
            // Issued before: the same request gets the same answer.
            let existing = tx.delivery(&req.delivery_id)?.ok_or_else(|| {
                Problem::unavailable(
                    "the delivery changed while it was read; send the request again",
                )
            })?;
            if existing.request_digest != digest {
                return Err(Problem::conflict(
                    "delivery_exists",
                    "this delivery was issued with other details; use resendCode or reassignDelivery",
                ));
            }
            let ticket = backend.read_ticket(&existing.ticket)?;
            let code = backend.code_for(&ticket)?;
            let issued = Issued { code, ticket };
            let rendered = render_for(&issued)?;
            (issued, rendered, true)
        };
        let body = answer(
            &req.delivery_id,
            "code",
            reasons,
            Some(verification),
            &issued,
            rendered,
            repeated,
        );
        Ok((body, repeated))
    })
    .await?;
    if !repeated {
        metrics::counter!("delivery_otp_codes_issued_total").increment(1);
    }
    let status = if repeated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(response)).into_response())
}

fn verification_name(v: VerificationMode) -> &'static str {
    match v {
        VerificationMode::Offline => "offline",
        VerificationMode::Online => "online",
    }
}

/// `reassignDelivery`'s request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReassignRequest {
    /// The courier who takes the delivery over.
    pub courier_id: String,
}

/// The delivery, held for this transaction ([`Tx::delivery_held`]), and
/// whether `device` may act; 404 when it was never issued.
fn held_delivery(
    tx: &Tx,
    delivery_id: &str,
    device: Option<(&str, &str)>,
) -> Result<(DeliveryRow, Option<bool>), Problem> {
    tx.delivery_held(delivery_id, device)?.ok_or_else(|| {
        Problem::not_found("unknown_delivery", "no delivery with this id was issued")
    })
}

fn open_delivery(tx: &Tx, delivery_id: &str) -> Result<DeliveryRow, Problem> {
    let (row, _) = held_delivery(tx, delivery_id, None)?;
    if row.status != "issued" {
        return Err(Problem::conflict(
            "delivery_closed",
            format!(
                "the delivery is {}; nothing more can be sent for it",
                row.status
            ),
        ));
    }
    Ok(row)
}

/// A new ticket and code for a delivery (a resend, or another courier),
/// with the customer's message rendered again.
async fn reissue(
    state: AppState,
    delivery_id: String,
    new_courier: Option<String>,
) -> Result<Response, Problem> {
    let now = now();
    let st = state.clone();
    let response = db::transaction(&state.db, move |tx| {
        let backend = st.core(tx);
        let row = open_delivery(tx, &delivery_id)?;
        let settings = settings_from_json(&row.settings)?;
        let prev = backend.read_ticket(&row.ticket)?;
        let (issued, resends, kind) = match &new_courier {
            None => {
                if row.resends >= MAX_RESENDS {
                    return Err(Problem::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "resend_limit",
                        format!("the code was already sent again {MAX_RESENDS} times"),
                    ));
                }
                (backend.resend(&prev, now, &settings)?, row.resends.saturating_add(1), "resent")
            }
            Some(courier) => (backend.reassign(&prev, courier, now, &settings)?, row.resends, "reassigned"),
        };
        let contact: Contact = serde_json::from_str(&row.contact).map_err(|_| Problem::unavailable("stored contact unreadable"))?;
        let rendered = render(&st, &contact, &row.locale, row.utc_offset_minutes, &delivery_id, &issued)?;
        let courier = issued.ticket.courier_id().to_string();
        tx.update_ticket(&delivery_id, issued.ticket.sequence(), &courier, &issued.ticket.to_json(), resends, now)?;
        tx.event(&delivery_id, now, kind, &serde_json::json!({
            "sequence": issued.ticket.sequence(), "courier_id": courier, "sent_to": rendered.sent_to,
        }))?;
        Ok(answer(&delivery_id, "code", Vec::new(), None, &issued, rendered, false))
    })
    .await?;
    metrics::counter!("delivery_otp_codes_issued_total").increment(1);
    Ok((StatusCode::OK, Json(response)).into_response())
}

/// Sends a delivery's code again: a new sequence, so the old code and ticket
/// stop counting.
#[utoipa::path(post, path = "/v1/deliveries/{delivery_id}/resend", operation_id = "resendCode", tag = "deliveries",
    params(("delivery_id" = String, Path, description = "The delivery")),
    responses(
        (status = 200, description = "A new code and ticket", body = IssueResponse),
        (status = 404, description = "Unknown delivery", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The delivery is closed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Sent again too often", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("token" = ["issue"])))]
pub async fn resend_code(
    State(state): State<AppState>,
    caller: Caller,
    Path(delivery_id): Path<String>,
) -> Result<Response, Problem> {
    caller.require("issue")?;
    reissue(state, delivery_id, None).await
}

/// Gives a delivery to another courier: a new sequence and code, so the
/// first courier's ticket stops counting.
#[utoipa::path(post, path = "/v1/deliveries/{delivery_id}/reassign", operation_id = "reassignDelivery", tag = "deliveries",
    params(("delivery_id" = String, Path, description = "The delivery")),
    request_body = ReassignRequest,
    responses(
        (status = 200, description = "A new code and ticket for the new courier", body = IssueResponse),
        (status = 404, description = "Unknown delivery", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The delivery is closed", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("token" = ["issue"])))]
pub async fn reassign_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(delivery_id): Path<String>,
    ApiJson(req): ApiJson<ReassignRequest>,
) -> Result<Response, Problem> {
    caller.require("issue")?;
    reissue(state, delivery_id, Some(req.courier_id)).await
}

/// `verifyCode`'s request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The courier asking (only the assigned one may).
    pub courier_id: String,
    /// Their device.
    pub device_id: String,
    /// The code as typed.
    #[schema(value_type = String)]
    pub code: Zeroizing<String>,
}

/// `verifyCode`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// `confirmed`, `rejected`, `already_used`, `guessed_from_ticket`,
    /// `ended`, `expired` or `not_yet_valid`.
    pub outcome: String,
    /// Attempts used, this one included (confirmed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_used: Option<u32>,
    /// Attempts still allowed (rejected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
    /// When the code expired or becomes valid, unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

/// Checks a code online, counting attempts; the right code is used up.
#[utoipa::path(post, path = "/v1/deliveries/{delivery_id}/verify", operation_id = "verifyCode", tag = "deliveries",
    params(("delivery_id" = String, Path, description = "The delivery")),
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "The outcome", body = VerifyResponse),
        (status = 400, description = "Not a code of the delivery's format", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not the assigned courier, or a device not provisioned or revoked", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Unknown delivery", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Locked out: too many wrong codes", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("token" = ["verify"]), ("device" = [])))]
pub async fn verify_code(
    State(state): State<AppState>,
    Path(delivery_id): Path<String>,
    signed: SignedInTx<VerifyRequest>,
) -> Result<Response, Problem> {
    let req = signed.body;
    signed
        .actor
        .may_act_for("verify", &req.courier_id, &req.device_id)?;
    let now = now();
    let st = state.clone();
    // Guarded (two round trips on PostgreSQL): the check reads and writes
    // one delivery, and a device's signature is recorded with its writes.
    let outcome = db::guarded(&state.db, db::Reads::Check, signed.admission, move |tx| {
        let backend = st.core(tx);
        let (row, device) = held_delivery(tx, &delivery_id, Some((&req.courier_id, &req.device_id)))?;
        device_may_act(device)?;
        let ticket = backend.read_ticket(&row.ticket)?;
        let outcome = backend.verify_online(&ticket, &req.code, &req.courier_id, &req.device_id, now)?;
        tx.event(&delivery_id, now, "online_check", &serde_json::json!({
            "courier_id": req.courier_id, "device_id": req.device_id, "outcome": online_name(&outcome),
        }))?;
        Ok(outcome)
    })
    .await?;
    metrics::counter!("delivery_otp_checks_total", "outcome" => online_name(&outcome)).increment(1);
    let body = |outcome: &str| VerifyResponse {
        outcome: outcome.into(),
        attempts_used: None,
        attempts_left: None,
        at: None,
    };
    let response = match outcome {
        OnlineOutcome::Confirmed { attempts_used } => VerifyResponse {
            attempts_used: Some(count(attempts_used)),
            ..body("confirmed")
        },
        OnlineOutcome::Rejected { attempts_left } => VerifyResponse {
            attempts_left: Some(count(attempts_left)),
            ..body("rejected")
        },
        OnlineOutcome::LockedOut { until } => {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "locked_out",
                "too many wrong codes; only a resend helps",
            )
            .with("until", until.secs().into()));
        }
        OnlineOutcome::NotAssigned => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "not_assigned",
                "this delivery is assigned to another courier",
            ));
        }
        OnlineOutcome::Expired { at } => VerifyResponse {
            at: Some(at.secs()),
            ..body("expired")
        },
        OnlineOutcome::NotYetValid { from } => VerifyResponse {
            at: Some(from.secs()),
            ..body("not_yet_valid")
        },
        other => body(online_name(&other)),
    };
    Ok((StatusCode::OK, Json(response)).into_response())
}

/// A count from the core (attempts; never negative) as the API writes it.
fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn online_name(o: &OnlineOutcome) -> &'static str {
    match o {
        OnlineOutcome::Confirmed { .. } => "confirmed",
        OnlineOutcome::Rejected { .. } => "rejected",
        OnlineOutcome::LockedOut { .. } => "locked_out",
        OnlineOutcome::AlreadyUsed => "already_used",
        OnlineOutcome::GuessedFromTicket => "guessed_from_ticket",
        OnlineOutcome::Ended => "ended",
        OnlineOutcome::Expired { .. } => "expired",
        OnlineOutcome::NotYetValid { .. } => "not_yet_valid",
        OnlineOutcome::NotAssigned => "not_assigned",
    }
}

/// Refuses a revoked device, or one never provisioned, as
/// [`Tx::device_active`] or [`Tx::delivery_held`] found it.
pub(crate) fn device_may_act(active: Option<bool>) -> Result<(), Problem> {
    match active {
        Some(true) => Ok(()),
        Some(false) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "device_revoked",
            "this device was revoked",
        )),
        None => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "device_not_provisioned",
            "this device was never provisioned",
        )),
    }
}

/// `uploadReceipts`' request: receipts as the app made them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// Each receipt's JSON text, exactly as the app's `toJson` gave it (at
    /// most 100).
    pub receipts: Vec<String>,
}

/// The outcome for one receipt of an upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadResult {
    /// Its position in the request, from 0.
    pub index: usize,
    /// The delivery it is for, when readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// The decision's kind, such as `confirmed` or `code_mismatch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// The decision in full (as the core's `Decision` serializes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
    /// The same receipt came before, and got this decision then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeated: Option<bool>,
    /// For support staff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// Why this receipt was not judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
}

/// `uploadReceipts`' answer, one result per receipt in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadResponse {
    /// The results.
    pub results: Vec<UploadResult>,
}

fn status_after(decision: &Decision) -> Option<&'static str> {
    match decision {
        Decision::Confirmed { .. } => Some("confirmed"),
        Decision::NotDelivered { .. } => Some("not_delivered"),
        Decision::NotAssigned { .. } | Decision::Stale { .. } | Decision::Conflicting => None,
        _ => Some("flagged"),
    }
}

/// Judges receipts, as a phone back online sends them; each is kept byte for
/// byte with its decision. The whole upload is one transaction: a receipt
/// that cannot be judged gets its own error in the results and changes
/// nothing, while a 503 means none of the upload was kept, and sending it
/// again is safe (a receipt judged before is answered `repeated`).
#[utoipa::path(post, path = "/v1/receipts", operation_id = "uploadReceipts", tag = "receipts",
    request_body = UploadRequest,
    responses(
        (status = 200, description = "One result per receipt, in order", body = UploadResponse),
        (status = 503, description = "The database or the attempt store failed or is busy: nothing of the upload was kept; send it again", body = ProblemBody, content_type = "application/problem+json"),
        (status = 400, description = "Not a batch of receipts, or over 100", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Over 1 MiB", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("token" = ["receipts"]), ("device" = [])))]
pub async fn upload_receipts(
    State(state): State<AppState>,
    signed: SignedInTx<UploadRequest>,
) -> Result<Response, Problem> {
    let (actor, req, admission) = (signed.actor, signed.body, signed.admission);
    if let Actor::Backend(caller) = &actor {
        caller.require("receipts")?;
    }
    let req_len = req.receipts.len();
    if req_len > MAX_RECEIPTS_PER_UPLOAD {
        return Err(Problem::bad_request(
            "too_many_receipts",
            format!("at most {MAX_RECEIPTS_PER_UPLOAD} receipts per upload"),
        ));
    }
    // The whole upload is one transaction: the store is asked twice for
    // all its receipts (Backend::reconcile_many), and a failure of the
    // database keeps none of them (sending the upload again is safe). An
    // upload of one receipt is about one delivery: guarded, two round trips
    // on PostgreSQL.
    let now = now();
    let st = state.clone();
    let judge = move |tx: &Arc<Tx>| judge_all(&st, tx, &actor, &req.receipts, now);
    let judged = if req_len == 1 {
        db::guarded(&state.db, db::Reads::Receipt, admission, judge).await?
    } else {
        db::admitted(&state.db, admission, judge).await?
    };
    if let Some(hook) = &state.webhook {
        if judged.iter().any(Result::is_ok) {
            hook.wake.notify_one();
        }
    }
    let results = (0..)
        .zip(judged)
        .map(|(index, outcome)| match outcome {
            Ok((delivery_id, decision, repeated, explanation)) => {
                metrics::counter!("delivery_otp_decisions_total", "kind" => decision.kind())
                    .increment(1);
                UploadResult {
                    index,
                    delivery_id: Some(delivery_id),
                    decision: Some(decision.kind().to_string()),
                    detail: serde_json::to_value(&decision).ok(),
                    repeated: Some(repeated),
                    explanation: Some(explanation),
                    error: None,
                }
            }
            Err(problem) => UploadResult {
                index,
                delivery_id: None,
                decision: None,
                detail: None,
                repeated: None,
                explanation: None,
                error: Some(problem.body()),
            },
        })
        .collect();
    Ok((StatusCode::OK, Json(UploadResponse { results })).into_response())
}

/// What one receipt of an upload got: its delivery, decision, whether it
/// was repeated, and the explanation; or why it was not judged.
type Judged = Result<(String, Decision, bool, String), Problem>;

/// Judges an upload's receipts in one transaction: each is read and its
/// delivery held (in delivery-id order, so two uploads never wait for each
/// other in a circle), then all are reconciled together, then each decision
/// is kept with its receipt. A receipt that cannot be judged gets its own
/// error and changes nothing; a failure of the database or the attempt
/// store fails the whole upload (`Err`), and nothing of it is kept.
fn judge_all(
    state: &AppState,
    tx: &Arc<Tx>,
    actor: &Actor,
    bodies: &[String],
    now: u64,
) -> Result<Vec<Judged>, Problem> {
    let mut out: Vec<Option<Judged>> = (0..bodies.len()).map(|_| None).collect();
    let put = |out: &mut Vec<Option<Judged>>, i: usize, judged: Judged| {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(judged);
        }
    };
    let mut read: Vec<(usize, Receipt)> = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let receipt = Receipt::from_json(body)
            .map_err(Problem::from)
            .and_then(|receipt| {
                if let Actor::Device { .. } = actor {
                    actor.may_act_for("receipts", receipt.courier_id(), receipt.device_id())?;
                }
                Ok(receipt)
            });
        match receipt {
            Ok(receipt) => read.push((i, receipt)),
            Err(problem) => put(&mut out, i, Err(problem)),
        }
    }
    let mut by_delivery: Vec<&(usize, Receipt)> = read.iter().collect();
    by_delivery.sort_by(|a, b| a.1.delivery_id().cmp(b.1.delivery_id()));
    let backend = state.core(tx);
    let mut tickets: std::collections::HashMap<usize, Ticket> = std::collections::HashMap::new();
    for (i, receipt) in by_delivery {
        let ticket = held_delivery(
            tx,
            receipt.delivery_id(),
            Some((receipt.courier_id(), receipt.device_id())),
        )
        .and_then(|(row, device)| {
            device_may_act(device)?;
            Ok(backend.read_ticket(&row.ticket)?)
        });
        match ticket {
            Ok(ticket) => {
                tickets.insert(*i, ticket);
            }
            Err(problem) if problem.status == StatusCode::SERVICE_UNAVAILABLE => {
                return Err(problem)
            }
            Err(problem) => put(&mut out, *i, Err(problem)),
        }
    }
    // In the order received: of two receipts for one ticket, the first stands.
    let batch: Vec<(usize, &str, &Ticket, &str)> = read
        .iter()
        .filter_map(|(i, receipt)| {
            Some((
                *i,
                bodies.get(*i)?.as_str(),
                tickets.get(i)?,
                receipt.delivery_id(),
            ))
        })
        .collect();
    let pairs: Vec<(&str, &Ticket)> = batch.iter().map(|(_, body, t, _)| (*body, *t)).collect();
    let reconciled = backend.reconcile_many(&pairs, now);
    for ((i, body, _, delivery_id), result) in batch.iter().zip(reconciled) {
        let r = match result.map_err(Problem::from) {
            Ok(r) => r,
            Err(problem) if problem.status == StatusCode::SERVICE_UNAVAILABLE => {
                return Err(problem)
            }
            Err(problem) => {
                put(&mut out, *i, Err(problem));
                continue;
            }
        };
        let repeated = keep_decision(state, tx, delivery_id, body, &r, now)?;
        put(
            &mut out,
            *i,
            Ok((
                (*delivery_id).to_string(),
                r.decision,
                repeated,
                r.explanation,
            )),
        );
    }
    Ok(out
        .into_iter()
        .map(|judged| {
            judged.unwrap_or_else(|| Err(Problem::unavailable("the receipt was not judged")))
        })
        .collect())
}

/// Keeps a receipt's decision: the receipt and decision as evidence, the
/// delivery's new status, its history, and the webhook event. Returns
/// whether the decision was recorded before (the answer's `repeated`).
///
/// The database decides that, not the attempt store: with the store in
/// Redis, an upload can keep its decision there and then lose its
/// database transaction (a crash, the database down). The retry then gets
/// the decision as repeated from the store, but the database has no record
/// of it yet, so this upload records it, sets the status and sends the
/// webhook, as the first would have.
fn keep_decision(
    state: &AppState,
    tx: &Tx,
    delivery_id: &str,
    body: &str,
    r: &Reconciliation,
    now: u64,
) -> Result<bool, Problem> {
    let decision_json = serde_json::to_string(&r.decision).unwrap_or_default();
    let repeated = r.repeated && tx.decision_recorded(delivery_id, r.sequence, &decision_json)?;
    if let (Some(_), false) = (&state.webhook, repeated) {
        let event_id = crate::webhook::event_id()?;
        let payload = serde_json::json!({
            "event_id": event_id, "type": "decision", "at": now,
            "delivery_id": delivery_id, "sequence": r.sequence,
            "courier_id": r.courier_id, "device_id": r.device_id,
            "decision": r.decision, "explanation": r.explanation,
        });
        tx.enqueue_event(&event_id, &payload.to_string(), now)?;
    }
    tx.record_receipt(&ReceiptRecord {
        delivery_id,
        sequence: r.sequence,
        courier_id: &r.courier_id,
        device_id: &r.device_id,
        body,
        decision: &decision_json,
        explanation: &r.explanation,
        repeated,
        now,
        status: if repeated { None } else { status_after(&r.decision) },
        history: &serde_json::json!({
            "sequence": r.sequence, "device_id": r.device_id, "decision": r.decision.kind(), "repeated": repeated,
        }),
    })?;
    Ok(repeated)
}

/// `provisionDevice`'s request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    /// The courier logging in.
    pub courier_id: String,
    /// Their device.
    pub device_id: String,
}

/// `provisionDevice`'s answer: the device key, for the app alone.
#[derive(Serialize, ToSchema)]
pub struct ProvisionResponse {
    /// The device key's JSON, as the app's `DeviceKey.fromJson` reads it.
    pub device_key: String,
}

/// Provisions a courier's device at login: its key signs the receipts.
#[utoipa::path(post, path = "/v1/devices", operation_id = "provisionDevice", tag = "devices",
    request_body = ProvisionRequest,
    responses(
        (status = 201, description = "The device key", body = ProvisionResponse),
        (status = 400, description = "Bad ids", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("token" = ["devices"])))]
pub async fn provision_device(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ProvisionRequest>,
) -> Result<Response, Problem> {
    caller.require("devices")?;
    let now = now();
    let st = state.clone();
    let key = db::transaction(&state.db, move |tx| {
        let key = st
            .backend
            .provision_device(&req.courier_id, &req.device_id)?;
        tx.provision_device(&req.courier_id, &req.device_id, key.key_id(), now)?;
        Ok(key.to_json().to_string())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(ProvisionResponse { device_key: key }),
    )
        .into_response())
}

/// Revokes a device: its receipts and checks are refused from now on.
#[utoipa::path(delete, path = "/v1/devices/{courier_id}/{device_id}", operation_id = "revokeDevice", tag = "devices",
    params(("courier_id" = String, Path, description = "The courier"), ("device_id" = String, Path, description = "The device")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "Never provisioned", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("token" = ["devices"])))]
pub async fn revoke_device(
    State(state): State<AppState>,
    caller: Caller,
    Path((courier_id, device_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    caller.require("devices")?;
    let now = now();
    let found = db::transaction(&state.db, move |tx| {
        Ok(tx.revoke_device(&courier_id, &device_id, now)?)
    })
    .await?;
    if found {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found(
            "unknown_device",
            "this device was never provisioned",
        ))
    }
}

/// A device's current tickets.
#[derive(Serialize, ToSchema)]
pub struct TicketsResponse {
    /// Each open delivery's current ticket JSON.
    pub tickets: Vec<String>,
}

/// The current tickets of the open deliveries assigned to the device's
/// courier.
#[utoipa::path(get, path = "/v1/devices/{courier_id}/{device_id}/tickets", operation_id = "getTickets", tag = "devices",
    params(("courier_id" = String, Path, description = "The courier"), ("device_id" = String, Path, description = "The device")),
    responses(
        (status = 200, description = "The tickets", body = TicketsResponse),
        (status = 403, description = "A device not provisioned or revoked", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("token" = ["read"]), ("device" = [])))]
pub async fn get_tickets(
    State(state): State<AppState>,
    Path((courier_id, device_id)): Path<(String, String)>,
    signed: Signed<()>,
) -> Result<Response, Problem> {
    signed.actor.may_act_for("read", &courier_id, &device_id)?;
    let tickets = db::transaction(&state.db, move |tx| {
        device_may_act(tx.device_active(&courier_id, &device_id)?)?;
        Ok(tx.open_tickets(&courier_id)?)
    })
    .await?;
    Ok(Json(TicketsResponse { tickets }).into_response())
}

/// One step of a delivery's history.
#[derive(Serialize, ToSchema)]
pub struct EventBody {
    /// Unix seconds.
    pub at: u64,
    /// `issued`, `resent`, `reassigned`, `online_check`, `receipt`.
    pub kind: String,
    /// Its details.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A receipt received for the delivery (its bytes are kept as evidence).
#[derive(Serialize, ToSchema)]
pub struct ReceiptBody {
    /// The ticket's sequence it answers.
    pub sequence: u64,
    /// The device that made it.
    pub device_id: String,
    /// The decision in full.
    #[schema(value_type = Object)]
    pub decision: serde_json::Value,
    /// For support staff.
    pub explanation: String,
    /// The same receipt again.
    pub repeated: bool,
    /// Unix seconds.
    pub received_at: u64,
}

/// `getDelivery`'s answer.
#[derive(Serialize, ToSchema)]
pub struct DeliveryResponse {
    /// The delivery id.
    pub delivery_id: String,
    /// The current sequence.
    pub sequence: u64,
    /// The courier it is assigned to.
    pub courier_id: String,
    /// `issued`, `confirmed`, `flagged` or `not_delivered`.
    pub status: String,
    /// Unix seconds.
    pub created_at: u64,
    /// What happened, oldest first.
    pub events: Vec<EventBody>,
    /// The receipts received, oldest first.
    pub receipts: Vec<ReceiptBody>,
}

/// A delivery's status and history; never its code.
#[utoipa::path(get, path = "/v1/deliveries/{delivery_id}", operation_id = "getDelivery", tag = "deliveries",
    params(("delivery_id" = String, Path, description = "The delivery")),
    responses(
        (status = 200, description = "The delivery", body = DeliveryResponse),
        (status = 404, description = "Unknown delivery", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("token" = ["read"])))]
pub async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(delivery_id): Path<String>,
) -> Result<Response, Problem> {
    caller.require("read")?;
    let body = db::transaction(&state.db, move |tx| {
        let row = tx.delivery(&delivery_id)?.ok_or_else(|| {
            Problem::not_found("unknown_delivery", "no delivery with this id was issued")
        })?;
        let parse = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        Ok(DeliveryResponse {
            delivery_id: row.delivery_id,
            sequence: row.sequence,
            courier_id: row.courier_id,
            status: row.status,
            created_at: row.created_at,
            events: tx
                .events(&delivery_id)?
                .into_iter()
                .map(|e| EventBody {
                    at: e.at,
                    kind: e.kind,
                    detail: parse(&e.detail),
                })
                .collect(),
            receipts: tx
                .receipts(&delivery_id)?
                .into_iter()
                .map(|r| ReceiptBody {
                    sequence: r.sequence,
                    device_id: r.device_id,
                    decision: parse(&r.decision),
                    explanation: r.explanation,
                    repeated: r.repeated,
                    received_at: r.received_at,
                })
                .collect(),
        })
    })
    .await?;
    Ok(Json(body).into_response())
}

/// `createToken`'s request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// What the token is for, such as `order-service`.
    pub name: String,
    /// Its scopes: `issue`, `verify`, `devices`, `receipts`, `read`, `admin`.
    pub scopes: Vec<String>,
}

/// `createToken`'s answer: the token, shown this once.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// `dotp_` and 52 characters; only its hash is kept.
    pub token: String,
}

/// `revokeToken`'s request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeTokenRequest {
    /// The token to revoke, as `createToken` gave it.
    pub token: String,
}

/// `revokeToken`'s answer.
#[derive(Serialize, ToSchema)]
pub struct RevokeTokenResponse {
    /// Always true: the token is refused from now on (by this instance at
    /// once, by the others within 10 seconds).
    pub revoked: bool,
}

/// Revokes an API token (admin only). Only its hash is compared, never
/// the token itself, and the answer says nothing of what it could do.
#[utoipa::path(post, path = "/v1/tokens/revoke", operation_id = "revokeToken", tag = "tokens",
    request_body = RevokeTokenRequest,
    responses(
        (status = 200, description = "Revoked", body = RevokeTokenResponse),
        (status = 403, description = "Not an admin token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No live token like that", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("token" = ["admin"])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RevokeTokenRequest>,
) -> Result<Response, Problem> {
    caller.require("admin")?;
    let hash = sha256_hex(req.token.as_bytes());
    let now = now();
    let key = hash.clone();
    let revoked = db::transaction(&state.db, move |tx| Ok(tx.revoke_token(&key, now)?)).await?;
    state.tokens.forget(&hash);
    if !revoked {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "unknown_token",
            "no live token like that (unknown, or revoked before)",
        ));
    }
    Ok(Json(RevokeTokenResponse { revoked: true }).into_response())
}

/// Creates an API token with some scopes (admin only).
#[utoipa::path(post, path = "/v1/tokens", operation_id = "createToken", tag = "tokens",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "The new token", body = TokenResponse),
        (status = 400, description = "An unknown scope or a bad name", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("token" = ["admin"])))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Response, Problem> {
    caller.require("admin")?;
    let name_ok = !req.name.is_empty()
        && req.name.len() <= 64
        && req
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        return Err(Problem::bad_request(
            "invalid_name",
            "a token name has 1 to 64 of A-Z, a-z, 0-9, '-', '_', '.'",
        ));
    }
    if req.scopes.is_empty() || req.scopes.len() > crate::auth::SCOPES.len() {
        return Err(Problem::bad_request(
            "invalid_scopes",
            "give one or more scopes",
        ));
    }
    if let Some(bad) = req
        .scopes
        .iter()
        .find(|s| !crate::auth::SCOPES.contains(&s.as_str()))
    {
        let shown: String = bad.chars().take(32).filter(|c| !c.is_control()).collect();
        return Err(Problem::bad_request(
            "invalid_scopes",
            format!("unknown scope '{shown}'"),
        ));
    }
    let token = crate::auth::new_token()?;
    let hash = sha256_hex(token.as_bytes());
    let scopes = req.scopes.join(" ");
    let now = now();
    db::transaction(&state.db, move |tx| {
        Ok(tx.insert_token(&req.name, &hash, &scopes, now)?)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token: token.to_string(),
        }),
    )
        .into_response())
}
