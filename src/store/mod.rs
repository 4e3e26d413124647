//! Where state lives: the backend's attempt store (in memory, or Redis
//! shared by several instances behind the `redis` feature) and the courier
//! app's device state store. Each is a trait the caller may implement;
//! every operation is atomic and safe to repeat.

pub mod attempts;
pub mod device_state;
#[cfg(feature = "redis")]
pub mod redis;
