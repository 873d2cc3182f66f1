//! The command line: defaults, environment, and refusal of bad values.

mod common;

use common::{Client, BIN};
use std::process::{Command, Stdio};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CHAT_PORT")
        .stdin(Stdio::null())
        .output()
        .expect("run selectchat")
}

#[test]
fn bad_values_are_refused_with_exit_code_2() {
    for args in [
        &["--idle-timeout", "abc"][..],
        &["--idle-timeout", "0"],
        &["--ping-interval", "-1"],
        &["--login-timeout", "nan"],
        &["--max-line", "10"],
        &["--max-clients", "0"],
        &["--sendq", "12"],
        &["--host", "not-an-ip"],
        &["70000"],
        &["--log-level", "loud"],
        &["-v", "-q"],
        &["--rate", "-1"],
        &["--burst", "0"],
        &["--flood-timeout", "0"],
        &["--stats-interval", "x"],
        &["--history", "0"],
        &["--resume-window", "-1"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error"), "{args:?}: no message: {err}");
    }
}

#[test]
fn help_lists_every_flag() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--host",
        "--ping-interval",
        "--idle-timeout",
        "--login-timeout",
        "--max-line",
        "--max-clients",
        "--sendq",
        "--verbose",
        "--quiet",
        "--log-level",
        "CHAT_PORT",
        "--rate",
        "--burst",
        "--flood-timeout",
        "--stats-interval",
        "--db",
        "--history",
        "--history-days",
        "--max-stored-rooms",
        "--max-per-ip",
        "--resume-window",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn chat_port_environment_variable_sets_the_port() {
    // Find a free port, then hand it to the server through the
    // environment. Another process may take the port in between: then our
    // server exits without listening, and the test tries another port.
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let port_file = common::PortFile::new();
        let mut child = Command::new(BIN)
            .args(["--host", "127.0.0.1", "-q", "--db", ":memory:"])
            .arg("--port-file")
            .arg(&port_file.0)
            .env("CHAT_PORT", port.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let listening = common::wait_until(common::WAIT, || {
            port_file.0.exists() || child.try_wait().ok().flatten().is_some()
        });
        if listening.is_none() || !port_file.0.exists() {
            let _ = child.kill();
            let _ = child.wait();
            continue;
        }
        let addr = port_file.wait("plain", String::new);
        let mut c = Client::connect(addr);
        c.send("PING env");
        let pong = c.line();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(addr.port(), port, "the port came from CHAT_PORT");
        assert_eq!(pong, "PONG env");
        return;
    }
    panic!("no free port held long enough in five tries");
}

#[test]
fn every_server_flag_can_come_from_the_environment() {
    let out = run(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for env in [
        "SELECTCHAT_HOST",
        "SELECTCHAT_DB",
        "SELECTCHAT_MAX_LINE",
        "SELECTCHAT_TLS_CERT",
        "SELECTCHAT_CLUSTER",
        "SELECTCHAT_LOG_LEVEL",
    ] {
        assert!(help.contains(env), "--help lacks {env}");
    }
    // A value from the environment is used as the flag would be.
    let port_file = common::PortFile::new();
    let mut child = Command::new(BIN)
        .args(["--host", "127.0.0.1", "--db", ":memory:", "--port-file"])
        .arg(&port_file.0)
        .arg("0")
        .env_remove("CHAT_PORT")
        .env("SELECTCHAT_MAX_LINE", "64")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = port_file.wait("plain", String::new);
    let mut c = Client::connect(addr);
    c.send(&format!("PING {}", "x".repeat(100)));
    let answer = c.line();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer, "ERR line-too-long");
}

#[test]
fn a_busy_port_stops_the_start_before_the_database_is_touched() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = std::env::temp_dir().join(format!("selectchat-busy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("never.db");
    let out = run(&["--host", "127.0.0.1", "--db", db.to_str().unwrap(), &port]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let exists = db.exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen"), "{err}");
    assert!(!exists, "the database was created: {err}");
}
