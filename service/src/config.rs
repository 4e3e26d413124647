//! Starting the service: settings from arguments and the environment, the
//! data directory (database, backend keys and the first admin token, created
//! on first start), and the listener.

use std::io::Read;
use std::path::{Path, PathBuf};

use delivery_otp::{KeySet, Rules, Templates};
use tokio::net::TcpListener;

use crate::{app, auth, db, write_private, AppState};

/// Most bytes read from a key set, rules or templates file.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// `delivery-otp serve`'s settings. Each may also come from an environment
/// variable, or from the config file (`--config`, JSON); an argument or
/// variable wins over the file, the file over the defaults.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// A config file (JSON, with any of the settings below by their long
    /// names in snake case, such as `"data_dir"` or `"webhook_url"`).
    #[arg(long, env = "DELIVERY_OTP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the database, the backend keys and the admin token live
    /// (created on first start, readable by the owner alone) [default:
    /// delivery-otp-data].
    #[arg(long, env = "DELIVERY_OTP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 takes any free port (the address is
    /// printed) [default: 127.0.0.1:8080].
    #[arg(long, env = "DELIVERY_OTP_LISTEN")]
    pub listen: Option<String>,
    /// Key set file (JSON, as `delivery-otp keys new` writes it); default:
    /// DATA_DIR/keys.json, created on first start.
    #[arg(long, env = "DELIVERY_OTP_KEYS")]
    pub keys: Option<PathBuf>,
    /// Risk rules file (JSON); default: the built-in rules.
    #[arg(long, env = "DELIVERY_OTP_RULES")]
    pub rules: Option<PathBuf>,
    /// Customer message templates file (JSON); default: the built-in ones.
    #[arg(long, env = "DELIVERY_OTP_TEMPLATES")]
    pub templates: Option<PathBuf>,
    /// A PostgreSQL URL (`postgresql://user@host:port/db`) for several
    /// instances; default: SQLite in the data directory.
    #[arg(long, env = "DELIVERY_OTP_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections to PostgreSQL per instance, 1 to 256 [default: 8].
    #[arg(long, env = "DELIVERY_OTP_DATABASE_CONNECTIONS")]
    pub database_connections: Option<u32>,
    /// Where decisions are POSTed (http:// or https://); none by default.
    #[arg(long, env = "DELIVERY_OTP_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// The webhook signing secret; default: DATA_DIR/webhook-secret, made on
    /// first start.
    #[arg(long, env = "DELIVERY_OTP_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Webhook POSTs one instance has under way at once, 1 to 64: about
    /// this many events a second per instance for a receiver answering in a
    /// second [default: 8].
    #[arg(long, env = "DELIVERY_OTP_WEBHOOK_SENDERS")]
    pub webhook_senders: Option<u32>,
    /// Connections kept open at once, 1 to 1000000; more wait until one
    /// closes. The open-files limit is raised to fit them (up to the hard
    /// limit; a warning says when it cannot) [default: 1000].
    #[arg(long, env = "DELIVERY_OTP_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Seconds a connection may take to send a request head, from when it
    /// opens or its last answer went out; then it is closed. 1 to 3600.
    /// Behind a load balancer that keeps idle connections to the
    /// instances, set it above the balancer's idle timeout, so that the
    /// balancer closes them first [default: 10].
    #[arg(long, env = "DELIVERY_OTP_HEADER_TIMEOUT")]
    pub header_timeout: Option<u32>,
    /// A Redis URL for online attempts and decision slots, shared by every
    /// instance (it must persist every write: `appendonly yes`,
    /// `appendfsync always`); default: in the database.
    #[arg(long, env = "DELIVERY_OTP_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// What the service's Redis keys start with [default: delivery-otp:].
    #[arg(long, env = "DELIVERY_OTP_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// The sender named in customer messages [default: Deliveries].
    #[arg(long, env = "DELIVERY_OTP_SENDER")]
    pub sender: Option<String>,
}

/// The config file's fields: the settings of [`ServeArgs`], all optional.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    keys: Option<PathBuf>,
    rules: Option<PathBuf>,
    templates: Option<PathBuf>,
    database_url: Option<String>,
    database_connections: Option<u32>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    webhook_senders: Option<u32>,
    max_connections: Option<u32>,
    header_timeout: Option<u32>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
    sender: Option<String>,
}

/// The settings in effect.
#[derive(Debug, Clone)]
pub struct Settings {
    /// See [`ServeArgs::data_dir`].
    pub data_dir: PathBuf,
    /// See [`ServeArgs::listen`].
    pub listen: String,
    /// See [`ServeArgs::keys`].
    pub keys: Option<PathBuf>,
    /// See [`ServeArgs::rules`].
    pub rules: Option<PathBuf>,
    /// See [`ServeArgs::templates`].
    pub templates: Option<PathBuf>,
    /// See [`ServeArgs::database_url`].
    pub database_url: Option<String>,
    /// See [`ServeArgs::database_connections`].
    pub database_connections: u32,
    /// See [`ServeArgs::webhook_url`].
    pub webhook_url: Option<String>,
    /// See [`ServeArgs::webhook_secret`].
    pub webhook_secret: Option<String>,
    /// See [`ServeArgs::webhook_senders`] (checked: 1 to
    /// [`crate::webhook::MAX_SENDERS`]).
    pub webhook_senders: usize,
    /// See [`ServeArgs::max_connections`] (checked: 1 to
    /// [`crate::listen::MAX_MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// See [`ServeArgs::header_timeout`] (checked: 1 to
    /// [`crate::listen::MAX_HEADER_TIMEOUT_SECS`] seconds).
    pub header_timeout: std::time::Duration,
    /// See [`ServeArgs::redis_url`].
    pub redis_url: Option<String>,
    /// See [`ServeArgs::redis_prefix`].
    pub redis_prefix: String,
    /// See [`ServeArgs::sender`].
    pub sender: String,
}

impl ServeArgs {
    /// Arguments and environment over the config file over the defaults.
    ///
    /// # Errors
    /// The config file cannot be read, is not JSON of these fields, or is
    /// over 1 MiB; a setting is out of its range.
    pub fn resolve(self) -> Result<Settings, String> {
        let file: FileSettings = match &self.config {
            Some(path) => serde_json::from_str(&read_limited(path, "config")?).map_err(|e| {
                let why: String = e.to_string().chars().take(200).collect();
                format!("the config file {path:?} is not valid: {why}")
            })?,
            None => FileSettings::default(),
        };
        let webhook_senders = in_range(
            "--webhook-senders",
            self.webhook_senders.or(file.webhook_senders),
            crate::webhook::SENDERS,
            crate::webhook::MAX_SENDERS,
        )?;
        let max_connections = in_range(
            "--max-connections",
            self.max_connections.or(file.max_connections),
            crate::listen::MAX_CONNECTIONS,
            crate::listen::MAX_MAX_CONNECTIONS,
        )?;
        let header_timeout = std::time::Duration::from_secs(in_range(
            "--header-timeout",
            self.header_timeout.or(file.header_timeout),
            crate::listen::HEADER_TIMEOUT_SECS,
            crate::listen::MAX_HEADER_TIMEOUT_SECS,
        )?);
        let database_connections = in_range(
            "--database-connections",
            self.database_connections.or(file.database_connections),
            DATABASE_CONNECTIONS,
            MAX_DATABASE_CONNECTIONS,
        )?;
        Ok(Settings {
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("delivery-otp-data")),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            keys: self.keys.or(file.keys),
            rules: self.rules.or(file.rules),
            templates: self.templates.or(file.templates),
            database_url: self.database_url.or(file.database_url),
            database_connections,
            webhook_url: self.webhook_url.or(file.webhook_url),
            webhook_secret: self.webhook_secret.or(file.webhook_secret),
            webhook_senders,
            max_connections,
            header_timeout,
            redis_url: self.redis_url.or(file.redis_url),
            redis_prefix: self
                .redis_prefix
                .or(file.redis_prefix)
                .unwrap_or_else(|| "delivery-otp:".into()),
            sender: self
                .sender
                .or(file.sender)
                .unwrap_or_else(|| "Deliveries".into()),
        })
    }
}

/// Connections to PostgreSQL per instance by default.
pub const DATABASE_CONNECTIONS: u32 = 8;

/// The most `--database-connections` accepted.
pub const MAX_DATABASE_CONNECTIONS: u32 = 256;

/// `value` if it is 1 to `max`, `default` if none was given, in the type
/// the setting is used as.
fn in_range<T>(name: &str, value: Option<u32>, default: T, max: T) -> Result<T, String>
where
    T: TryFrom<u32> + PartialOrd + From<u8> + Copy + std::fmt::Display,
{
    match value {
        None => Ok(default),
        Some(n) => T::try_from(n)
            .ok()
            .filter(|n| (T::from(1)..=max).contains(n))
            .ok_or_else(|| format!("{name} must be 1 to {max}, not {n}")),
    }
}

fn read_limited(path: &Path, what: &str) -> Result<String, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read the {what} file {path:?}: {}", e.kind()))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the {what} file {path:?}: {}", e.kind()))?;
    if u64::try_from(text.len()).map_or(true, |n| n > MAX_CONFIG_BYTES) {
        return Err(format!("the {what} file {path:?} is over 1 MiB"));
    }
    Ok(text)
}

/// The backend keys: the given file, or DATA_DIR/keys.json, made on first start.
fn load_keys(args: &Settings) -> Result<KeySet, String> {
    let path = match &args.keys {
        Some(path) => path.clone(),
        None => {
            let path = args.data_dir.join("keys.json");
            if !path.exists() {
                let keys = KeySet::generate("k1").map_err(|e| e.to_string())?;
                write_private(&path, &keys.to_json())
                    .map_err(|e| format!("cannot write {path:?}: {}", e.kind()))?;
                tracing::info!(path = %path.display(), "created the backend keys");
            }
            path
        }
    };
    KeySet::from_json(&read_limited(&path, "key set")?).map_err(|e| e.to_string())
}

/// Locks DATA_DIR/start.lock (exclusively, waiting for it) while an
/// instance sets up what its first start makes: the keys, the admin token,
/// the webhook secret and the SQLite database's tables. Instances started
/// together on one data directory then take turns; the first makes them,
/// the others find them made (before, two of three started at once failed:
/// "keys.json already exists", "table api_tokens already exists"). The
/// operating system releases the lock when the file is dropped or the
/// process dies.
///
/// # Errors
/// The lock file cannot be opened or locked.
async fn first_start_lock(data_dir: &Path) -> Result<std::fs::File, String> {
    let path = data_dir.join("start.lock");
    tokio::task::spawn_blocking(move || {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&path)
            .map_err(|e| format!("cannot open {path:?}: {}", e.kind()))?;
        file.lock()
            .map_err(|e| format!("cannot lock {path:?}: {}", e.kind()))?;
        Ok(file)
    })
    .await
    .map_err(|_| "the start lock stopped".to_string())?
}

/// The secret kept in the file at `path`: read, or on first start made
/// (256 random bits) and written readable by the owner alone.
fn secret_file(path: &Path, what: &str) -> Result<String, String> {
    if !path.exists() {
        let secret = auth::new_token().map_err(|p| p.detail)?;
        write_private(path, &format!("{}\n", secret.as_str()))
            .map_err(|e| format!("cannot write {path:?}: {}", e.kind()))?;
    }
    Ok(read_limited(path, what)?.trim().to_string())
}

/// Checks this instance's backend keys against the ones the database has
/// seen: each key id's fingerprint is recorded by the first instance that
/// starts with it, and an instance whose key under a recorded id differs
/// refuses to start. An instance started without `--keys` on a data
/// directory of its own makes keys of its own; sharing the database with
/// others, its tickets would be refused by them as tampered with. New key
/// ids (a rotation) are recorded as they come; ids no longer in the set are
/// kept.
///
/// # Errors
/// A key differs from the one recorded under its id (named), or the
/// database fails.
async fn check_keys(keys: &KeySet, db: &db::Db) -> Result<(), String> {
    let mut prints = Vec::new();
    for id in keys.ids() {
        let key = keys.get(&id).map_err(|e| e.to_string())?;
        prints.push((id, fingerprint(key)?));
    }
    let now = crate::now();
    let differing = db::transaction(db, move |tx| {
        let mut differing = Vec::new();
        for (id, print) in &prints {
            if tx.key_fingerprint(id, print, now)? != *print {
                differing.push(id.clone());
            }
        }
        Ok(differing)
    })
    .await
    .map_err(|p| p.detail)?;
    if differing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the database was set up with other backend keys under the id(s) {}: give every \
         instance on one database the same keys (--keys)",
        differing.join(", ")
    ))
}

/// A fingerprint of `key` that does not reveal it: HMAC-SHA256 under the
/// key (its base32 text) of a fixed label, the first 16 bytes in hex.
fn fingerprint(key: &delivery_otp::MasterKey) -> Result<String, String> {
    use hmac::{KeyInit, Mac};
    let secret = key.to_base32();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .map_err(|_| "cannot fingerprint the backend keys".to_string())?;
    mac.update(b"delivery-otp backend key fingerprint v1");
    let digest = mac.finalize().into_bytes();
    Ok(hex::encode(digest.get(..16).unwrap_or_default()))
}

/// Makes sure the admin token in DATA_DIR/admin-token exists and is known
/// to the database; returns its path.
async fn admin_token(data_dir: &Path, db: &db::Db) -> Result<PathBuf, String> {
    let path = data_dir.join("admin-token");
    let token = secret_file(&path, "admin token")?;
    let hash = auth::sha256_hex(token.as_bytes());
    db::transaction(db, move |tx| {
        if tx.token_scopes(&hash)?.is_none() {
            tx.insert_token("admin", &hash, "admin", crate::now())?;
        }
        Ok(())
    })
    .await
    .map_err(|p| p.detail)?;
    Ok(path)
}

/// The Redis store for attempts and decision slots, if a URL is set,
/// checked once at start: reachable, and persisting every write.
async fn counters(
    args: &Settings,
) -> Result<Option<std::sync::Arc<dyn delivery_otp::AttemptStore>>, String> {
    let Some(url) = &args.redis_url else {
        return Ok(None);
    };
    let store = delivery_otp::RedisStore::open(url)
        .map_err(|e| e.to_string())?
        .with_prefix(&args.redis_prefix);
    let store: std::sync::Arc<dyn delivery_otp::AttemptStore> = std::sync::Arc::new(store);
    let check = std::sync::Arc::clone(&store);
    tokio::task::spawn_blocking(move || check.recall("startup-check"))
        .await
        .map_err(|_| "the Redis check stopped".to_string())?
        .map_err(|e| format!("cannot use Redis: {e}"))?;
    Ok(Some(store))
}

/// The webhook, if a URL is set: its secret from the settings, or from
/// DATA_DIR/webhook-secret (made on first start, 0600).
fn webhook(args: &Settings) -> Result<Option<crate::webhook::Webhook>, String> {
    let Some(url) = &args.webhook_url else {
        return Ok(None);
    };
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    if !scheme_ok || url.len() > 2048 || url.chars().any(char::is_control) {
        return Err("the webhook URL must be http:// or https://, at most 2048 characters".into());
    }
    let secret = match &args.webhook_secret {
        Some(secret) if secret.len() >= 16 => secret.clone(),
        Some(_) => return Err("the webhook secret must have at least 16 characters".into()),
        None => secret_file(&args.data_dir.join("webhook-secret"), "webhook secret")?,
    };
    crate::webhook::Webhook::new(url.clone(), zeroize::Zeroizing::new(secret))
        .with_timing(
            crate::db::CLAIM_LEASE_SECS,
            crate::webhook::SEND_TIMEOUT,
            args.webhook_senders,
        )
        .map(Some)
}

/// Prepares the data directory, database, keys, policy and token, binds the
/// listener and prints where it listens.
///
/// # Errors
/// A message for the operator: what could not be read, written or bound.
pub async fn prepare(args: &Settings) -> Result<(TcpListener, AppState, PathBuf), String> {
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create {:?}: {}", args.data_dir, e.kind()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&args.data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {:?}: {}", args.data_dir, e.kind()))?;
    }
    // Held until the end: instances started together on one data directory
    // make what a first start makes one after another.
    let _first_start = first_start_lock(&args.data_dir).await?;
    let keys = load_keys(args)?;
    let rules = match &args.rules {
        Some(path) => Rules::from_json(&read_limited(path, "rules")?).map_err(|e| e.to_string())?,
        None => Rules::defaults(),
    };
    let templates = match &args.templates {
        Some(path) => {
            Templates::from_json(&read_limited(path, "templates")?).map_err(|e| e.to_string())?
        }
        None => Templates::defaults(),
    };
    let db = match &args.database_url {
        Some(url) => db::open_postgres(url, args.database_connections)
            .await
            // The URL may hold a password: the message names only the engine.
            .map_err(|e| format!("cannot use the PostgreSQL database: {}", db_error(&e)))?,
        None => {
            let database = args.data_dir.join("delivery-otp.sqlite3");
            db::open_sqlite(&database)
                .await
                .map_err(|e| format!("cannot open the database {database:?}: {}", db_error(&e)))?
        }
    };
    check_keys(&keys, &db).await?;
    let token_path = admin_token(&args.data_dir, &db).await?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {}", args.listen, e.kind()))?;
    let mut state = AppState::new(keys, db, rules, templates, args.sender.clone());
    state.webhook = webhook(args)?;
    state.counters = counters(args).await?;
    Ok((listener, state, token_path))
}

/// A database error as one short line, without connection details.
fn db_error(e: &db::DbError) -> String {
    let text = match e {
        db::DbError::Sqlx(sqlx::Error::Configuration(_)) => {
            "the database URL is not valid".to_string()
        }
        other => other.to_string(),
    };
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// Runs the service until SIGINT or SIGTERM.
///
/// # Errors
/// As [`prepare`], or the server fails.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    let settings = args.resolve()?;
    // Before the database's connections are opened: they need room too.
    if let Some(warning) =
        crate::listen::make_room(settings.max_connections, settings.database_connections)
    {
        tracing::warn!("{warning}");
    }
    let (listener, mut state, token_path) = prepare(&settings).await?;
    // Latency as a histogram with buckets (Prometheus can aggregate them
    // across instances, unlike quantiles).
    state.metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )
        .ok()
        .and_then(|builder| builder.install_recorder().ok());
    let address = listener
        .local_addr()
        .map_err(|e| format!("no local address: {}", e.kind()))?;
    // Scripts and tests read these two lines.
    println!("delivery-otp serve: listening on http://{address}");
    println!(
        "delivery-otp serve: admin token in {}",
        token_path.display()
    );
    if let Some(hook) = state.webhook.clone() {
        tokio::spawn(crate::webhook::run(state.db.clone(), hook));
    }
    tokio::spawn(forget_expired(state.db.clone()));
    tokio::spawn(crate::clock::watch(state.db.clone()));
    let limits = crate::listen::Limits {
        max_connections: settings.max_connections,
        header_timeout: settings.header_timeout,
    };
    crate::listen::serve(listener, app(state), limits, shutdown()).await;
    Ok(())
}

/// How often expired rows are forgotten.
const FORGET_EVERY_SECS: u64 = 60;

/// Forgets expired rows now and then: device-request signatures (the
/// requests that record them with their own writes,
/// [`crate::auth::SignedInTx`], do not, so that they do not wait for each
/// other over the same old rows) and webhook events delivered more than
/// [`crate::webhook::DELIVERED_KEPT_SECS`] ago.
async fn forget_expired(db: crate::db::Db) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(FORGET_EVERY_SECS));
    loop {
        every.tick().await;
        let now = crate::now();
        // A failure is logged by the database layer; the next turn tries again.
        let _ = crate::db::autocommit(&db, move |tx| Ok(tx.forget_signatures(now)?)).await;
        crate::webhook::forget_delivered(&db).await;
    }
}

async fn shutdown() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
