//! What the service's integration tests share: the real server process,
//! both database engines, a webhook receiver, request bodies.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use delivery_otp::{DeviceKey, ReceiptDraft, ReceiptOutcome, Ticket, Verification};
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// The server's command, without any `DELIVERY_OTP_*` setting of the
/// environment the tests run in (the test harness's own `*_TEST_*` ones
/// aside): each test passes what it means.
pub fn server_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_delivery-otp-server"));
    for (name, _) in std::env::vars() {
        if name.starts_with("DELIVERY_OTP_") && !name.starts_with("DELIVERY_OTP_TEST_") {
            command.env_remove(name);
        }
    }
    command
}

/// The server on `data` listening on a loopback port of its own, on
/// PostgreSQL at `database_url` when given (else SQLite in `data`).
pub fn serve_command(data: &Path, database_url: Option<&str>) -> Command {
    let mut command = server_command();
    command.args([
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    command
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub token: String,
}

/// Where a test keeps its data: SQLite in the data directory, or a fresh
/// PostgreSQL database on the server the test command started.
#[derive(Clone, Debug)]
pub enum Engine {
    Sqlite,
    Postgres(String),
}

impl Engine {
    pub fn label(&self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// What `--database-url` says for this engine (nothing for SQLite).
    pub fn database_url(&self) -> Option<&str> {
        match self {
            Engine::Sqlite => None,
            Engine::Postgres(url) => Some(url),
        }
    }
}

/// Both engines, for a test named `name`: every test runs against each.
/// PostgreSQL needs `DELIVERY_OTP_TEST_POSTGRES_URL` (scripts/test starts a
/// private server and sets it); without it these tests fail, never skip.
pub fn engines(name: &str) -> Vec<Engine> {
    vec![Engine::Sqlite, Engine::Postgres(fresh_postgres(name))]
}

pub fn fresh_postgres(name: &str) -> String {
    let base = std::env::var("DELIVERY_OTP_TEST_POSTGRES_URL").expect(
        "DELIVERY_OTP_TEST_POSTGRES_URL is not set: run scripts/test, which starts a PostgreSQL server",
    );
    let db = format!("t{}_{name}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut admin)
            .await
            .unwrap();
    });
    format!("{}/{db}", base.rsplit_once('/').unwrap().0)
}

impl Server {
    /// A server for the test `name` on `engine`, in a fresh data directory.
    pub fn start_for(name: &str, engine: &Engine) -> Server {
        Self::start(&data_dir(&format!("{name}-{}", engine.label())), engine)
    }

    pub fn start(data: &Path, engine: &Engine) -> Server {
        Self::spawn(serve_command(data, engine.database_url()))
    }

    pub fn spawn(command: Command) -> Server {
        Self::spawn_with_stderr(warnings_to_stderr(command))
    }

    /// Starts `command` as it is set up (its environment and stderr).
    pub fn spawn_with_stderr(command: Command) -> Server {
        Self::ready(Self::launch(command))
    }

    /// Starts `command` without waiting for it to listen.
    pub fn launch(mut command: Command) -> Child {
        command.stdout(Stdio::piped()).spawn().unwrap()
    }

    /// Waits until the launched server listens, and reads its admin token.
    pub fn ready(child: Child) -> Server {
        Self::try_ready(child).unwrap()
    }

    /// [`Server::ready`], or, when the server stops before it listens, why
    /// (and the server is gone).
    pub fn try_ready(mut child: Child) -> Result<Server, String> {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let Some(Ok(listening)) = lines.next() else {
            let _ = child.kill();
            let status = child.wait();
            return Err(format!(
                "the server stopped before it listened ({status:?}; its error is on stderr)"
            ));
        };
        let base = listening.rsplit(' ').next().unwrap().to_string();
        let token_line = lines.next().unwrap().unwrap();
        let token_path = token_line.rsplit(' ').next().unwrap().to_string();
        let token = std::fs::read_to_string(token_path)
            .unwrap()
            .trim()
            .to_string();
        Ok(Server { child, base, token })
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// (status, content type, body as JSON or Null)
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, String, Value) {
        self.send_auth(method, path, token.map(|t| format!("Bearer {t}")), body)
    }

    /// A request with this `Authorization` header (a device's signature).
    pub fn send_auth(
        &self,
        method: &str,
        path: &str,
        auth: Option<String>,
        body: Option<&[u8]>,
    ) -> (u16, String, Value) {
        let agent = Self::agent();
        let url = format!("{}{path}", self.base);
        let mut response = match (method, body) {
            ("GET", _) => {
                let mut r = agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (_, body) => {
                let mut r = agent.post(&url).header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.unwrap_or(b""))
            }
        }
        .unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            kind,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, _, value) = self.send(
            "POST",
            path,
            Some(&self.token),
            Some(body.to_string().as_bytes()),
        );
        (status, value)
    }

    /// DELETE with the admin token: the status.
    pub fn delete(&self, path: &str) -> u16 {
        self.send("DELETE", path, Some(&self.token), None).0
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, value) = self.send("GET", path, Some(&self.token), None);
        (status, value)
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        let mut r = Self::agent()
            .get(&format!("{}/metrics", self.base))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.body_mut().read_to_string().unwrap()
    }

    /// The value of the counter `name` (a line `name N`), 0 when absent.
    pub fn counter(&self, name: &str) -> u64 {
        self.metrics()
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops a server started with its stderr piped
    /// ([`Server::spawn_with_stderr`]): all it wrote there.
    pub fn stop_and_read_stderr(mut self) -> String {
        let mut stderr = self.child.stderr.take().unwrap();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut log = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The data directory of the test `name`, emptied (it does not exist).
pub fn data_dir(name: &str) -> PathBuf {
    let dir = data_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Where [`data_dir`] puts the test `name`'s data, as it is now.
pub fn data_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "delivery-otp-service-{}-{name}",
        std::process::id()
    ))
}

/// `command` logging warnings and worse to the test's stderr.
pub fn warnings_to_stderr(mut command: Command) -> Command {
    command.env("RUST_LOG", "warn").stderr(Stdio::inherit());
    command
}

pub fn order(value_minor: u64) -> Value {
    json!({
        "value_minor": value_minor, "currency": "EUR", "method": "hand_to_customer",
        "categories": ["electronics"], "region_risk": 10, "customer_preference": "none",
        "first_delivery_to_address": false, "not_received_claims": 0
    })
}

pub fn issue_body(delivery: &str, courier: &str) -> Value {
    json!({
        "delivery_id": delivery, "courier_id": courier, "order": order(25_000),
        "contact": {"phone": "+441234567890"}, "locale": "en"
    })
}

/// The code, as the customer reads it from the message.
pub fn code_in(message: &Value) -> String {
    let text = message["text"].as_str().unwrap();
    let digits: String = text
        .split("code ")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ' ')
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(digits.len(), 6, "{text}");
    digits
}

pub fn receipt_json(
    device_key: &str,
    ticket: &str,
    code: &str,
    via: Verification,
    attempts: u32,
    decided_at: u64,
) -> String {
    let key = DeviceKey::from_json(device_key).unwrap();
    let ticket = Ticket::from_json(ticket).unwrap();
    let draft = ReceiptDraft::for_ticket(
        &ticket,
        ReceiptOutcome::Delivered {
            code: Zeroizing::new(code.to_string()),
            verified: via,
        },
        attempts,
        decided_at,
        "android/3.4.1",
    );
    key.sign(draft).unwrap().to_json().to_string()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One POST the receiver got: its headers (names in lower case) and body.
pub type Post = (std::collections::HashMap<String, String>, String);

/// A webhook receiver on a loopback port: records each POST (headers, body)
/// and answers 500 while `failing` is set, 200 otherwise.
pub struct Receiver {
    pub url: String,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Post>>>,
    pub failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    pub fn start() -> Receiver {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen2, failing2) = (seen.clone(), failing.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                // A sender killed mid-request leaves an incomplete one: not
                // a delivery, so not recorded (and not answered).
                let received = loop {
                    let n = stream.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if rest.len() >= length {
                            break Some((head.to_string(), rest[..length].to_string()));
                        }
                    }
                };
                let Some((headers, body)) = received else {
                    continue;
                };
                let headers = headers
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                seen2.lock().unwrap().push((headers, body));
                let status = if failing2.load(std::sync::atomic::Ordering::SeqCst) {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = stream.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Receiver { url, seen, failing }
    }

    /// Waits until `count` POSTs arrived (at most 15 s).
    pub fn wait_for(&self, count: usize) -> Vec<Post> {
        for _ in 0..150 {
            if self.seen.lock().unwrap().len() >= count {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        self.seen.lock().unwrap().clone()
    }
}

pub fn hmac_hex(secret: &str, text: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A PostgreSQL server of a test's own, to stop and start: in a temporary
/// folder owned by `postgres` (it will not run as root), on a free port.
pub struct PrivatePostgres {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    pub fn start(name: &str) -> PrivatePostgres {
        let dir =
            std::env::temp_dir().join(format!("delivery-otp-pg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let chown = Command::new("chown")
            .arg("postgres")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(chown.success());
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .map(|e| e.unwrap().path().join("bin"))
            .max()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let initdb = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args([
                "-D",
                dir.join("data").to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "app",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(initdb.success());
        let pg = PrivatePostgres { dir, port, bin };
        pg.up();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgresql://app@127.0.0.1:{}/postgres", self.port)
    }

    fn ctl(&self, args: &[&str]) {
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", self.dir.join("data").to_str().unwrap()])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl {args:?}");
    }

    pub fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        self.ctl(&["-l", log.to_str().unwrap(), "-o", &options, "-w", "start"]);
    }

    /// Stops it the way a crash would (`-m immediate`).
    pub fn crash(&self) {
        self.ctl(&["-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.dir.join("data").to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three (or `n`) servers on one PostgreSQL database, sharing a data
/// directory for the keys and the admin token.
pub fn cluster(name: &str, url: &str, n: usize, extra: &[&str]) -> Vec<Server> {
    cluster_on(name, Some(url), n, extra)
}

/// [`cluster`] on PostgreSQL at `url`, or with no URL on the one SQLite
/// database in the shared data directory. The servers are started all at
/// once, as an orchestrator starts replicas: each must come up on the fresh
/// data directory however their first starts interleave (one makes the
/// keys, the admin token and the database's tables, the others find them).
pub fn cluster_on(name: &str, url: Option<&str>, n: usize, extra: &[&str]) -> Vec<Server> {
    let data = data_dir(name);
    let launched: Vec<Child> = (0..n)
        .map(|_| {
            let mut command = serve_command(&data, url);
            command.args(extra);
            Server::launch(warnings_to_stderr(command))
        })
        .collect();
    // Every server is waited for (and those that failed are gone) before
    // any failure is reported, so that none outlives the test.
    let started: Vec<Result<Server, String>> =
        launched.into_iter().map(Server::try_ready).collect();
    let failed: Vec<&String> = started.iter().filter_map(|s| s.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {n} servers did not start: {failed:?}",
        failed.len()
    );
    started.into_iter().map(Result::unwrap).collect()
}

/// A POST that may meet a dead server: `None` when the connection fails.
pub fn try_post(server_base: &str, token: &str, path: &str, body: &Value) -> Option<(u16, Value)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(20)))
        .build()
        .into();
    let mut response = agent
        .post(&format!("{server_base}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A Redis server of a test's own, persisting every write, to kill and start
/// again on the same port and folder.
pub struct OwnRedis {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start(name: &str) -> OwnRedis {
        let dir =
            std::env::temp_dir().join(format!("delivery-otp-redis-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = OwnRedis {
            dir,
            port,
            child: None,
        };
        redis.up();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn up(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--dir", self.dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("redis-server did not start");
    }

    /// `kill -9`.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `command` run by another program: `wrapper` (a program and its first
/// arguments) followed by `command`'s program and arguments, with
/// `command`'s environment.
pub fn run_under(wrapper: &[&str], command: &Command) -> Command {
    let (program, first) = wrapper.split_first().unwrap();
    let mut outer = Command::new(program);
    outer
        .args(first)
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => outer.env(name, value),
            None => outer.env_remove(name),
        };
    }
    outer
}
