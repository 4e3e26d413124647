//! The `delivery-otp` binary as a user runs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_delivery-otp"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// RFC 4226 and RFC 6238 secrets in base32.
const SHA1_SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const SHA512_SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNA";

#[test]
fn totp_and_hotp_print_the_code_alone() {
    let o = run(&[
        "totp", "--secret", SHA1_SEED, "--time", "59", "--digits", "8",
    ]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "94287082\n");
    assert_eq!(stderr(&o), "");
    let o = run(&[
        "totp",
        "--secret",
        SHA512_SEED,
        "--time",
        "20000000000",
        "--digits",
        "8",
        "--algorithm",
        "sha512",
    ]);
    assert_eq!(stdout(&o), "47863826\n");
    let o = run(&["hotp", "--secret", SHA1_SEED, "--counter", "9"]);
    assert_eq!(stdout(&o), "520489\n");
    let o = run(&[
        "hotp",
        "--secret",
        "gezd gnbv-gy3t qojq gezd gnbv gy3t qojq",
        "--counter",
        "0",
        "--digits",
        "10",
    ]);
    assert_eq!(stdout(&o), "1284755224\n");
}

#[test]
fn totp_defaults_to_now() {
    let o = run(&["totp", "--secret", SHA1_SEED]);
    assert!(o.status.success());
    let code = stdout(&o);
    assert_eq!(code.trim().len(), 6);
    assert!(code.trim().bytes().all(|b| b.is_ascii_digit()));
}

#[test]
fn bad_input_is_status_2_one_line_and_no_stdout() {
    let cases: &[&[&str]] = &[
        &["totp", "--secret", "JBSW1Y3D"],
        &["totp", "--secret", SHA1_SEED, "--digits", "5"],
        &["totp", "--secret", SHA1_SEED, "--digits", "11"],
        &["totp", "--secret", SHA1_SEED, "--period", "0"],
        &["totp", "--secret", SHA1_SEED, "--time", "-1"],
        &["totp", "--secret", SHA1_SEED, "--algorithm", "md5"],
        &["totp", "--secret", ""],
        &["hotp", "--secret", SHA1_SEED],
        &[
            "hotp",
            "--secret",
            SHA1_SEED,
            "--counter",
            "18446744073709551616",
        ],
        &["uri", "parse", "https://example.com"],
        &["uri", "parse", "otpauth://hotp/x?secret=MZXW6YTBOI"],
        &["uri", "new", "--account", ""],
        &["uri", "new", "--account", "a", "--issuer", "a:b"],
        &["uri", "new", "--account", "a", "--digits", "4"],
        &["frobnicate"],
        &[],
        &[
            "issue",
            "--keys",
            "/nonexistent/keys.json",
            "--delivery",
            "PKG-1",
        ],
        &["verify", "--ticket", "{}", "--code", "123456", "--offline"],
        &[
            "verify",
            "--ticket",
            "{\"v\":9}",
            "--code",
            "123456",
            "--offline",
        ],
        &["verify", "--ticket", "x", "--code", "123456"],
        &["keys", "new", "--id", "bad id"],
    ];
    for args in cases {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&o), "", "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(
            !err.contains("JBSW") && !err.contains("GEZD"),
            "{args:?}: secret in message"
        );
    }
    assert!(stderr(&run(&["totp", "--secret", "JBSW1Y3D"])).contains("position 5"));
}

#[test]
fn uri_parse_hides_the_secret_unless_asked() {
    let uri = "otpauth://totp/Acme:bob?secret=MZXW6YTBOI&digits=8&algorithm=SHA256";
    let o = run(&["uri", "parse", uri]);
    assert!(o.status.success());
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["type"], "totp");
    assert_eq!(json["issuer"], "Acme");
    assert_eq!(json["account"], "bob");
    assert_eq!(json["algorithm"], "SHA256");
    assert_eq!(json["digits"], 8);
    assert_eq!(json["period"], 30);
    assert_eq!(json["secret_bits"], 48);
    assert!(json.get("secret").is_none());
    assert!(!stdout(&o).contains("MZXW"));
    let o = run(&["uri", "parse", uri, "--show-secret"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["secret"], "MZXW6YTBOI");
}

#[test]
fn uri_new_makes_a_fresh_working_key() {
    let a = run(&[
        "uri",
        "new",
        "--issuer",
        "Acme Deliveries",
        "--account",
        "courier-17",
    ]);
    let b = run(&[
        "uri",
        "new",
        "--issuer",
        "Acme Deliveries",
        "--account",
        "courier-17",
    ]);
    assert!(a.status.success());
    let a = stdout(&a);
    assert!(
        a.starts_with("otpauth://totp/Acme%20Deliveries:courier-17?secret="),
        "{a}"
    );
    assert_ne!(a, stdout(&b), "two new keys share a secret");
    let parsed = run(&["uri", "parse", a.trim(), "--show-secret"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&parsed)).unwrap();
    assert_eq!(json["secret_bits"], 160);
    let h = run(&[
        "uri",
        "new",
        "--account",
        "x",
        "--counter",
        "5",
        "--digits",
        "8",
    ]);
    assert!(stdout(&h).starts_with("otpauth://hotp/x?secret="));
    assert!(stdout(&h).trim_end().ends_with("&digits=8&counter=5"));
}

#[test]
fn demo_runs_a_handover() {
    let o = run(&["demo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("SMS to the customer (1"));
    assert!(out.contains("12.50 GBP of books to the doorstep: no_code (no rule asked for a code)"));
    assert!(out.contains(
        "149.99 GBP of books into the customer's hands: code (the order value 149.99 GBP"
    ));
    assert!(out.contains("code sent to +44 ••• ••• 0123; 6 digits"));
    assert!(out.contains("Never by phone."));
    assert!(out.contains("rejected, 4 attempt(s) left"));
    assert!(out.contains("(last digit full-width): accepted provisionally after 2 attempt(s)"));
    assert!(out.contains("confirmed: delivered: the code on the receipt is the one issued"));
    assert!(out.contains("the same receipt sent again (a retry): confirmed, as before"));
    assert!(out.contains("the backend reconciles the receipt: code_mismatch: suspected fraud"));
    assert!(out.contains("on the next parcel the courier sends a candidate online instead: refused: a wrong code that matches the ticket's hash"));
    assert!(out.contains("the first code on the phone: refused: replaced by the resend"));
    // The ticket line never holds the code from the SMS line.
    let code: String = out
        .split("AcmeParcels: code ")
        .nth(1)
        .unwrap()
        .chars()
        .take(7)
        .filter(|c| c.is_ascii_digit())
        .collect();
    assert_eq!(code.len(), 6, "{out}");
    let ticket_line = out
        .lines()
        .find(|l| l.contains("ticket to the courier"))
        .unwrap();
    assert!(!ticket_line.contains(&code));
}

#[test]
fn demo_login_runs_the_enrolment_and_refuses_the_replay() {
    let o = run(&["demo", "--login"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("otpauth://totp/Acme%20Deliveries:courier-17%40acme.example?secret="));
    assert!(out.contains("code accepted at time step"));
    assert!(out.contains("the same code again: refused"));
    assert!(out.contains("a wrong code: refused"));
}

#[test]
fn help_is_status_0() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("demo"));
}

#[test]
fn issue_and_verify_online_and_offline() {
    let dir = std::env::temp_dir().join(format!("delivery-otp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys.json");
    let o = run(&["keys", "new", "--id", "ops-1"]);
    assert!(o.status.success());
    std::fs::write(&keys, stdout(&o)).unwrap();
    let keys = keys.to_str().unwrap();

    let o = run(&[
        "issue",
        "--keys",
        keys,
        "--delivery",
        "PKG-9",
        "--courier",
        "courier-1",
        "--time",
        "1764000000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let issued: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let code = issued["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 6);
    assert_eq!(issued["key_id"], "ops-1");
    assert_eq!(issued["expires_at"], 1764086400u64);
    assert_eq!(issued["ticket"]["attempts"], 5);
    assert_eq!(issued["ticket"]["courier"], "courier-1");
    let ticket = issued["ticket_json"].as_str().unwrap().to_string();
    let ticket_file = dir.join("ticket.json");
    std::fs::write(&ticket_file, &ticket).unwrap();
    let at_file = format!("@{}", ticket_file.display());

    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "--ticket", &at_file, "--time", "1764000100"];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let out = verify(&["--keys", keys, "--code", &spaced]);
    assert_eq!(out["outcome"], "confirmed");
    assert_eq!(out["mode"], "online");
    let out = verify(&["--offline", "--code", &code]);
    assert_eq!(out["outcome"], "accepted_provisionally");
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let out = verify(&["--keys", keys, "--code", wrong]);
    assert_eq!(out["outcome"], "rejected");
    assert_eq!(out["attempts_left"], 4);

    // A changed ticket is refused online with status 2.
    let tampered = ticket.replace("\"attempts\":5", "\"attempts\":50");
    let o = run(&[
        "verify", "--ticket", &tampered, "--code", &code, "--keys", keys,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("MAC does not match"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(&code));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes `text` to a file of this test run in the temp folder (not in the
/// folder another test removes) and returns its path.
fn temp_file(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("delivery-otp-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn run_with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_delivery-otp"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn receipt_vectors() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/delivery-receipts.json"
        ))
        .unwrap(),
    )
    .unwrap()
}

fn receipt_case<'a>(vectors: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    vectors["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

#[test]
fn reconcile_prints_one_decision_per_receipt_line() {
    let vectors = receipt_vectors();
    let keys = temp_file("receipt-keys.json", vectors["key_set"].as_str().unwrap());
    let first = receipt_case(
        &vectors,
        "delivered offline at the first try, with location and photo",
    );
    let crockford = receipt_case(
        &vectors,
        "crockford code typed in lower case with a dash is stored normalized",
    );
    let tickets = temp_file(
        "tickets.jsonl",
        &format!(
            "{}\n{}\n",
            vectors["ticket"].as_str().unwrap(),
            crockford["ticket"].as_str().unwrap()
        ),
    );
    let receipt = |c: &serde_json::Value| c["receipt"].as_str().unwrap().to_string();
    let tampered = vectors["tampered"][0]["receipt"].as_str().unwrap();
    // A receipt, the same again, another delivery's receipt, a blank line, a
    // tampered copy and a line that is not a receipt.
    let input = format!(
        "{}\n{}\n{}\n\n{}\nnot a receipt\n",
        receipt(first),
        receipt(first),
        receipt(crockford),
        tampered
    );
    let o = run_with_stdin(
        &[
            "reconcile",
            "--keys",
            &keys,
            "--tickets",
            &tickets,
            "--time",
            "1764100000",
        ],
        &input,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decisions: Vec<(&str, u64, bool)> = lines
        .iter()
        .map(|l| {
            (
                l["decision"].as_str().unwrap(),
                l["line"].as_u64().unwrap(),
                l["repeated"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("confirmed", 1, false),
            ("confirmed", 2, true),
            ("confirmed", 3, false),
            ("tampered", 5, false),
            ("invalid", 6, false)
        ]
    );
    assert_eq!(lines[4]["error"], "invalid_receipt");
    // With the resend's ticket as the current one: stale.
    let resend = receipt_case(&vectors, "a resend replaced the ticket: stale");
    let current = temp_file(
        "tickets-resend.jsonl",
        &format!(
            "{}\n{}\n",
            vectors["ticket"].as_str().unwrap(),
            resend["reconcile"]["ticket"].as_str().unwrap()
        ),
    );
    let file = temp_file("receipts.jsonl", &format!("{}\n", receipt(first)));
    let o = run(&[
        "reconcile",
        "--keys",
        &keys,
        "--input",
        &file,
        "--tickets",
        &current,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(r#""decision":"stale""#),
        "{}",
        stdout(&o)
    );
}

/// Issue 11, D13 and D14: 20 MB of bad input (short lines and one 10 MB
/// line) is read a line at a time and answered as it goes, in bounded memory.
#[test]
fn reconcile_streams_twenty_megabytes_in_bounded_memory() {
    use std::io::{BufRead, BufReader, Write};
    let vectors = receipt_vectors();
    let keys = temp_file("stream-keys.json", vectors["key_set"].as_str().unwrap());
    let tickets = temp_file(
        "stream-tickets.jsonl",
        &format!("{}\n", vectors["ticket"].as_str().unwrap()),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_delivery-otp"))
        .args(["reconcile", "--keys", &keys, "--tickets", &tickets])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let short = "{\"v\":1,\"not\":\"a receipt\"}\n".repeat(10_000); // 290 KB
    let writer = std::thread::spawn(move || {
        for _ in 0..34 {
            stdin.write_all(short.as_bytes()).unwrap();
        }
        stdin.write_all(&vec![b'x'; 10 * 1024 * 1024]).unwrap();
        stdin.write_all(b"\nlast\n").unwrap();
        done_rx.recv().unwrap();
        drop(stdin);
    });
    let total = 34 * 10_000 + 2;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut count = 0;
    let mut long_line = None;
    while count < total {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "output ended early");
        count += 1;
        if count == total - 1 {
            long_line = Some(line.clone());
        }
    }
    // Peak memory while the process is still reading its input.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    done_tx.send(()).unwrap();
    writer.join().unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let long_line: serde_json::Value = serde_json::from_str(&long_line.unwrap()).unwrap();
    assert_eq!(long_line["decision"], "invalid");
    assert!(long_line["explanation"]
        .as_str()
        .unwrap()
        .contains("over 64 KiB"));
    eprintln!("reconcile of 20 MB of bad input: peak resident memory {peak_kb} kB");
    assert!(peak_kb < 32 * 1024, "peak {peak_kb} kB");
}

#[test]
fn keys_device_prints_a_device_key_the_library_reads() {
    let o = run(&["keys", "new", "--id", "ops-1"]);
    let keys = temp_file("device-keys.json", &stdout(&o));
    let o = run(&[
        "keys",
        "device",
        "--keys",
        &keys,
        "--courier",
        "courier-1",
        "--device",
        "phone-1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let key = delivery_otp::DeviceKey::from_json(stdout(&o).trim()).unwrap();
    assert_eq!(
        (key.courier_id(), key.device_id(), key.key_id()),
        ("courier-1", "phone-1", "ops-1")
    );
    let o = run(&[
        "keys",
        "device",
        "--keys",
        &keys,
        "--courier",
        "",
        "--device",
        "phone-1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("courier id is empty"), "{}", stderr(&o));
}

#[test]
fn policy_check_prints_the_decision_and_names_bad_fields() {
    let o = run(&[
        "policy",
        "check",
        "--order",
        r#"{"value_minor":2000,"currency":"EUR","method":"doorstep","categories":["age_restricted"]}"#,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(d["requirement"], "code");
    assert_eq!(d["verification"], "online");
    assert_eq!(d["settings"]["max_attempts"], 3);
    assert_eq!(d["reasons"][0]["code"], "restricted_item");
    // A rules file from the defaults, changed to need a code from 50 EUR.
    let o = run(&["policy", "defaults"]);
    let mut rules: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    rules["value_thresholds"]["EUR"] = 5000.into();
    let file = temp_file("rules.json", &rules.to_string());
    let order = temp_file(
        "order.json",
        r#"{"value_minor":6000,"currency":"EUR","method":"locker"}"#,
    );
    let o = run(&[
        "policy",
        "check",
        "--rules",
        &file,
        "--order",
        &format!("@{order}"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(r#""code": "method_has_own_check""#),
        "{}",
        stdout(&o)
    );
    rules["strict"]["hash_bits"] = 20.into();
    let file = temp_file("bad-rules.json", &rules.to_string());
    let o = run(&[
        "policy",
        "check",
        "--rules",
        &file,
        "--order",
        &format!("@{order}"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: invalid policy rules at strict.hash_bits: "),
        "{}",
        stderr(&o)
    );
}

/// Runs `args` and checks the failure contract: status 2, nothing on
/// stdout, one short line on stderr; returns that line.
fn one_error_line(args: &[&str]) -> String {
    let o = run(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    assert_eq!(stdout(&o), "", "{args:?}");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(
        err.len() <= 1100,
        "{args:?}: a {}-byte error line",
        err.len()
    );
    err
}

#[test]
fn file_reads_are_bounded_and_labelled_by_what_they_read() {
    // /dev/zero never ends: each read stops at its documented limit.
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "verify",
                "--ticket",
                "@/dev/zero",
                "--code",
                "1",
                "--offline",
            ],
            "invalid ticket: the ticket file \"/dev/zero\" is over 64 KiB",
        ),
        (
            &[
                "issue",
                "--keys",
                "/dev/zero",
                "--delivery",
                "d",
                "--courier",
                "c",
            ],
            "invalid key set: the key set file \"/dev/zero\" is over 1024 KiB",
        ),
        (
            &[
                "keys",
                "device",
                "--keys",
                "/dev/zero",
                "--courier",
                "c",
                "--device",
                "d",
            ],
            "is over 1024 KiB",
        ),
        (
            &["policy", "check", "--order", "@/dev/zero"],
            "invalid order at (file): the order file \"/dev/zero\" is over 64 KiB",
        ),
        (
            &["policy", "check", "--rules", "/dev/zero", "--order", "{}"],
            "invalid policy rules at (file): the rules file \"/dev/zero\" is over 1024 KiB",
        ),
    ];
    for (args, want) in cases {
        let err = one_error_line(args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // A missing ticket or receipts file is named as what it is, not as a key set.
    let keys = temp_file(
        "bounded-keys.json",
        &stdout(&run(&["keys", "new", "--id", "k1"])),
    );
    let err = one_error_line(&[
        "verify",
        "--ticket",
        "@/nonexistent/t.json",
        "--code",
        "1",
        "--keys",
        &keys,
    ]);
    assert!(
        err.starts_with("error: invalid ticket: cannot read the ticket file"),
        "{err}"
    );
    let err = one_error_line(&[
        "reconcile",
        "--keys",
        &keys,
        "--tickets",
        "/nonexistent/t",
        "--input",
        "/dev/null",
    ]);
    assert!(
        err.starts_with("error: invalid ticket: cannot read the tickets file"),
        "{err}"
    );
    let tickets = temp_file("bounded-tickets.txt", "");
    let err = one_error_line(&[
        "reconcile",
        "--keys",
        &keys,
        "--tickets",
        &tickets,
        "--input",
        "/nonexistent/r",
    ]);
    assert!(
        err.starts_with("error: invalid receipt: cannot read the receipts file"),
        "{err}"
    );
    // Invalid UTF-8 is a clear error too.
    let latin1 =
        std::env::temp_dir().join(format!("delivery-otp-cli-{}-latin1", std::process::id()));
    std::fs::write(&latin1, b"{\"v\":\xe9}").unwrap();
    let err = one_error_line(&[
        "verify",
        "--ticket",
        &format!("@{}", latin1.display()),
        "--code",
        "1",
        "--offline",
    ]);
    assert!(err.contains("is not UTF-8"), "{err}");
}

#[test]
fn echoed_input_is_bounded() {
    // A megabyte JSON key or id in a file the tool reads.
    let huge = "A".repeat(1 << 20);
    let rules = temp_file("huge-key-rules.json", &format!("{{\"{huge}\":1}}"));
    one_error_line(&["policy", "check", "--rules", &rules, "--order", "{}"]);
    let keys = temp_file(
        "huge-id-keys.json",
        &format!("{{\"version\":1,\"current\":\"{huge}\",\"keys\":[]}}"),
    );
    one_error_line(&[
        "issue",
        "--keys",
        &keys,
        "--delivery",
        "d",
        "--courier",
        "c",
    ]);
    let order = format!("{{\"{}\":1}}", "B".repeat(60_000));
    one_error_line(&["policy", "check", "--order", &order]);
    // A path of 10,000 characters.
    let long_path = format!("/nonexistent/{}", "p".repeat(10_000));
    let err = one_error_line(&[
        "issue",
        "--keys",
        &long_path,
        "--delivery",
        "d",
        "--courier",
        "c",
    ]);
    assert!(err.len() < 400, "{err}");
}

#[test]
fn a_newline_in_a_path_or_input_stays_on_one_line() {
    let err = one_error_line(&[
        "issue",
        "--keys",
        "/nonexistent/a\nb",
        "--delivery",
        "d",
        "--courier",
        "c",
    ]);
    assert!(err.contains("\"/nonexistent/a\\nb\""), "{err}");
    let err = one_error_line(&[
        "policy",
        "check",
        "--order",
        "{\"method\":\"x\\n\\u001b[31mDECISION\"}",
    ]);
    assert!(!err.contains('\u{1b}'), "{err}");
    let err = one_error_line(&[
        "uri",
        "parse",
        "otpauth://totp/Acme%0Aforged:c?secret=JBSWY3DPEHPK3PXP",
    ]);
    assert!(err.contains("control"), "{err}");
}

#[test]
fn values_starting_with_a_dash_are_taken_and_never_echoed() {
    // A code or a secret may start with '-': it is the value, not an option.
    let o = run(&[
        "totp",
        "--secret",
        "-GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
        "--time",
        "59",
    ]);
    assert_eq!(stdout(&o), "287082\n", "{}", stderr(&o));
    let vectors = receipt_vectors();
    let ticket = vectors["cases"][0]["ticket"].as_str().unwrap().to_string();
    let o = run(&[
        "verify",
        "--ticket",
        &ticket,
        "--code",
        "-1234",
        "--offline",
        "--time",
        "0",
    ]);
    assert!(
        !stderr(&o).contains("unexpected argument"),
        "{}",
        stderr(&o)
    );
    // Stray words that may be part of a code or a secret are not repeated.
    for args in [
        &[
            "verify",
            "--ticket",
            "x",
            "--code",
            "123",
            "456",
            "--offline",
        ][..],
        &["totp", "--secret", "GEZDGNBV", "GY3TQOJQ"][..],
        &["totp", "--secret", SHA1_SEED, "--digits", "GY3TQOJQ"][..],
        &["totp", "--secret", SHA1_SEED, "-G"][..],
    ] {
        let err = one_error_line(args);
        assert!(
            !err.contains("456") && !err.contains("GY3T") && !err.contains("-G"),
            "{args:?}: {err}"
        );
    }
    // Option names stay readable.
    let err = one_error_line(&["totp", "--secret", SHA1_SEED, "--cod", "1"]);
    assert!(err.contains("'--cod'"), "{err}");
    let err = one_error_line(&["totp", "--secret", SHA1_SEED, "--digits", "x"]);
    assert!(err.contains("'--digits <DIGITS>'"), "{err}");
}

/// `delivery-otp serve` (the test build has the `serve` feature) starts the
/// service on the embedded default: it prints where it listens and where
/// the admin token is, and answers `/healthz`.
#[test]
fn serve_starts_the_service_on_a_fresh_data_directory() {
    use std::io::{BufRead, BufReader, Read, Write};
    let data = std::env::temp_dir().join(format!("delivery-otp-cli-{}-serve", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut child = Command::new(env!("CARGO_BIN_EXE_delivery-otp"))
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = lines.next().unwrap().unwrap();
    let token_line = lines.next().unwrap().unwrap();
    let address = listening.rsplit("http://").next().unwrap().to_string();
    let token_path = token_line.rsplit(' ').next().unwrap();
    let token = std::fs::read_to_string(token_path).unwrap();
    assert!(
        token.starts_with("dotp_") && token.trim().len() == 57,
        "{token}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(token_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let keys_mode = std::fs::metadata(data.join("keys.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(keys_mode, 0o600);
    }
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("{\"status\":\"ok\"}"), "{response}");
}
