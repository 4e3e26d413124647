//! Builds the service again when a migration is added or changed: the
//! `sqlx::migrate!` macro embeds the `migrations` folders at compile time,
//! and on stable Rust cargo does not know it reads them.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
