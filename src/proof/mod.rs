//! Proof of delivery: the device keys couriers' apps sign with, the signed
//! receipt the app records at the door, and the backend's reconciliation of
//! a receipt against the ticket it issued.

pub mod receipt;
pub mod reconcile;
