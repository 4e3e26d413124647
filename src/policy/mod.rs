//! Deciding and telling: the risk policy that decides whether a delivery
//! needs a code and with which settings, and the customer's SMS and e-mail
//! with masked contacts and code hints.

pub mod message;
pub mod rules;
