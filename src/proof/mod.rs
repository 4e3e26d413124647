//! Proof of delivery: the device keys couriers' apps sign with, the signed
//! receipt the app records at the door, the backend's reconciliation of a
//! receipt against the ticket it issued, and the signature a device puts on
//! each request it sends the service.

pub mod receipt;
pub mod reconcile;
pub mod request;
mod written;
