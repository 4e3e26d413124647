//! `delivery-otp`: one-time codes, key URIs and a demo from the command line.
//!
//! Results go to stdout alone; on bad input the tool prints one line on
//! stderr, nothing on stdout, and exits with status 2.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use delivery_otp::{Algorithm, Hotp, KeyUri, OtpKind, Secret, Totp, TotpConfig};
use serde::Serialize;

mod delivery;
mod demo;

#[derive(Parser)]
#[command(
    name = "delivery-otp",
    version,
    about = "One-time codes for delivery handovers and courier logins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the RFC 6238 TOTP code for a base32 secret.
    Totp {
        #[command(flatten)]
        key: KeyArgs,
        /// Unix time in seconds (default: now).
        #[arg(long)]
        time: Option<u64>,
        /// Time step in seconds.
        #[arg(long, default_value_t = 30)]
        period: u64,
    },
    /// Print the RFC 4226 HOTP code for a base32 secret and a counter.
    Hotp {
        #[command(flatten)]
        key: KeyArgs,
        /// The counter.
        #[arg(long)]
        counter: u64,
    },
    /// Read or create otpauth:// key URIs.
    #[command(subcommand)]
    Uri(UriCommand),
    /// Run a delivery handover end to end on built-in keys (--login: a
    /// courier's two-factor enrolment instead).
    Demo {
        /// Show the courier's two-factor login enrolment instead.
        #[arg(long)]
        login: bool,
    },
    /// Issue a delivery code and its ticket (JSON), with keys from a file.
    Issue(delivery::IssueArgs),
    /// Verify a typed code against a ticket: online with the backend keys,
    /// or --offline as the courier's device does (JSON).
    Verify(delivery::VerifyArgs),
    /// Create a key set file for `issue` and `verify`, or a device key.
    #[command(subcommand)]
    Keys(delivery::KeysCommand),
    /// Judge receipts from couriers' devices (JSON lines from a file or
    /// stdin) and print one decision per line (JSON lines).
    Reconcile(delivery::ReconcileArgs),
    /// The risk policy: whether an order needs a code.
    #[command(subcommand)]
    Policy(delivery::PolicyCommand),
    /// Run the backend as an HTTP JSON API with its data in a directory.
    #[cfg(feature = "serve")]
    Serve(delivery_otp_service::config::ServeArgs),
    /// Run the backend as an HTTP JSON API (needs a build with the `serve` feature).
    #[cfg(not(feature = "serve"))]
    Serve {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

#[derive(Args)]
struct KeyArgs {
    /// The shared secret in base32 (RFC 4648; case, spaces, dashes and padding are ignored).
    #[arg(long, allow_hyphen_values = true)]
    secret: String,
    /// Digits per code, 6 to 10.
    #[arg(long, default_value_t = 6)]
    digits: u32,
    /// Hash function.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Sha1)]
    algorithm: AlgorithmArg,
}

#[derive(Subcommand)]
enum UriCommand {
    /// Print the fields of a key URI as JSON (the secret only with --show-secret).
    Parse {
        /// The otpauth:// URI.
        uri: String,
        /// Include the base32 secret in the output.
        #[arg(long)]
        show_secret: bool,
    },
    /// Create a new 160-bit secret and print its key URI.
    New {
        /// Who issues the key, e.g. "Acme Deliveries".
        #[arg(long)]
        issuer: Option<String>,
        /// The account, e.g. "courier-17@acme.example".
        #[arg(long)]
        account: String,
        /// Digits per code, 6 to 10.
        #[arg(long, default_value_t = 6)]
        digits: u32,
        /// Hash function.
        #[arg(long, value_enum, default_value_t = AlgorithmArg::Sha1)]
        algorithm: AlgorithmArg,
        /// Time step in seconds (TOTP).
        #[arg(long, default_value_t = 30, conflicts_with = "counter")]
        period: u64,
        /// Make an HOTP key starting at this counter instead of a TOTP key.
        #[arg(long)]
        counter: Option<u64>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    Sha1,
    Sha256,
    Sha512,
}

impl From<AlgorithmArg> for Algorithm {
    fn from(a: AlgorithmArg) -> Self {
        match a {
            AlgorithmArg::Sha1 => Algorithm::Sha1,
            AlgorithmArg::Sha256 => Algorithm::Sha256,
            AlgorithmArg::Sha512 => Algorithm::Sha512,
        }
    }
}

/// The fields of a key URI, as `uri parse` prints them.
#[derive(Serialize)]
struct UriJson {
    #[serde(rename = "type")]
    otp_type: &'static str,
    issuer: Option<String>,
    account: String,
    algorithm: &'static str,
    digits: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    counter: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    secret_bits: usize,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn run(command: Command) -> Result<String, delivery_otp::Error> {
    match command {
        Command::Totp { key, time, period } => {
            let config = TotpConfig {
                algorithm: key.algorithm.into(),
                digits: key.digits,
                period,
                t0: 0,
            };
            let totp = Totp::new(Secret::from_base32(&key.secret)?, config)?;
            Ok(totp
                .generate(time.unwrap_or_else(now))?
                .as_str()
                .to_string())
        }
        Command::Hotp { key, counter } => {
            let hotp = Hotp::new(
                Secret::from_base32(&key.secret)?,
                key.algorithm.into(),
                key.digits,
            )?;
            Ok(hotp.generate(counter).as_str().to_string())
        }
        Command::Uri(UriCommand::Parse { uri, show_secret }) => {
            let key = KeyUri::parse(&uri)?;
            let (otp_type, period, counter) = match key.kind {
                OtpKind::Totp { period } => ("totp", Some(period.as_secs()), None),
                OtpKind::Hotp { counter } => ("hotp", None, Some(counter.0)),
            };
            let json = UriJson {
                otp_type,
                issuer: key.issuer.clone(),
                account: key.account.clone(),
                algorithm: key.algorithm.as_str(),
                digits: key.digits,
                period,
                counter,
                secret: show_secret.then(|| key.secret.to_base32().to_string()),
                secret_bits: key.secret.len().saturating_mul(8),
            };
            Ok(serde_json::to_string_pretty(&json).unwrap_or_default())
        }
        Command::Uri(UriCommand::New {
            issuer,
            account,
            digits,
            algorithm,
            period,
            counter,
        }) => {
            let kind = match counter {
                Some(counter) => OtpKind::Hotp {
                    counter: delivery_otp::Counter(counter),
                },
                None => OtpKind::Totp {
                    period: std::time::Duration::from_secs(period),
                },
            };
            let key = KeyUri {
                kind,
                secret: Secret::generate()?,
                issuer,
                account,
                algorithm: algorithm.into(),
                digits,
            };
            // `to_uri` checks digits, period and labels before writing.
            Ok(key.to_uri()?.to_string())
        }
        Command::Demo { login: true } => demo::login(now()),
        Command::Demo { login: false } => demo::handover(now()),
        Command::Issue(args) => delivery::issue(args, now()),
        Command::Verify(args) => delivery::verify(args, now()),
        Command::Keys(command) => delivery::keys(command),
        Command::Reconcile(args) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            delivery::reconcile(args, now(), &mut out)?;
            std::io::Write::flush(&mut out).map_err(|e| delivery_otp::Error::InvalidReceipt {
                reason: format!("cannot write the output: {}", e.kind()),
            })?;
            // Written as it went.
            Ok(String::new())
        }
        Command::Policy(command) => delivery::policy(command),
        // `main` hands the process to the server, or refuses, before this.
        Command::Serve { .. } => Ok(String::new()),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            match rendered.lines().next() {
                Some(line) if line.starts_with("error:") => {
                    eprintln!("{} (see --help)", one_line(&without_values(line)));
                }
                // A missing subcommand, where clap would print the whole help.
                _ => eprintln!("error: a command is missing (see --help)"),
            }
            return ExitCode::from(2);
        }
    };
    #[cfg(feature = "serve")]
    if let Command::Serve(args) = cli.command {
        return delivery_otp_service::run(args);
    }
    #[cfg(not(feature = "serve"))]
    if let Command::Serve { .. } = cli.command {
        eprintln!(
            "error: this delivery-otp was built without the server; build it with `--features serve` \
             (cargo run -p delivery-otp-cli --features serve -- serve), or run delivery-otp-server"
        );
        return ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::from(2)
        }
    }
}

/// Longest error line the tool prints, in characters.
const MAX_ERROR_CHARS: usize = 1000;

/// `text` as one line of at most [`MAX_ERROR_CHARS`]: control characters
/// (a newline in a path, an escape sequence) written as `\u{..}`.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i >= MAX_ERROR_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// The argument parser's message with every quoted piece of what was typed
/// left out, keeping only option names (`'--digits <DIGITS>'`): a stray
/// word or a value starting with `-` may be part of a code or a secret.
fn without_values(line: &str) -> String {
    let is_option_name = |quoted: &str| {
        let name = quoted.split(' ').next().unwrap_or_default();
        let placeholder = quoted.get(name.len()..).unwrap_or_default().trim();
        (name.starts_with("--") || name.starts_with('<'))
            && name.len() > 2
            && name
                .trim_start_matches('-')
                .trim_start_matches('<')
                .trim_end_matches('>')
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && placeholder
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c == '<' || c == '>')
    };
    let mut out = String::new();
    for (i, piece) in line.split('\'').enumerate() {
        if i % 2 == 1 {
            if is_option_name(piece) {
                out.push('\'');
                out.push_str(piece);
                out.push('\'');
            } else {
                out.push_str("(value not shown)");
            }
        } else {
            out.push_str(piece);
        }
    }
    out
}
