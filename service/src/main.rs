//! `delivery-otp-server`: the service on its own (the same as `delivery-otp serve`).

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "delivery-otp-server",
    version,
    about = "The delivery-otp backend as an HTTP JSON API"
)]
struct Cli {
    #[command(flatten)]
    args: delivery_otp_service::config::ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    delivery_otp_service::run(cli.args)
}
