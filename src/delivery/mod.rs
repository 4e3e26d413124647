//! Delivery codes and tickets: the backend's master keys, the settings that
//! keep a ticket from revealing its code, deriving and normalizing codes,
//! the ticket the courier's phone carries, the phone's offline check, and
//! the backend's issuing and online check.

pub mod backend;
pub mod code;
pub mod device;
pub mod keys;
pub mod settings;
pub mod ticket;
