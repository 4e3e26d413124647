//! Prints the OpenAPI document, as committed in `service/openapi.json`:
//! `cargo run -q -p delivery-otp-service --example openapi > service/openapi.json`.

fn main() {
    println!("{}", delivery_otp_service::openapi_json());
}
