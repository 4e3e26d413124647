//! The standards underneath: RFC 4226 HOTP and RFC 6238 TOTP over SHA-1,
//! SHA-256 and SHA-512, RFC 4648 base32 secrets, and `otpauth://` key URIs.
//! They protect the courier's own login with a second factor; nothing here
//! knows about deliveries.

pub mod algorithm;
pub mod hotp;
pub mod secret;
pub mod totp;
pub mod uri;
