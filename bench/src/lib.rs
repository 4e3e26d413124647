//! Only benchmarks live here: `cargo bench -p delivery-otp-bench`.
