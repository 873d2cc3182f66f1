//! `selectchat bench` against a real server, and against a fake server that
//! loses a message, to prove the accounting catches it.

mod common;

use common::{Server, BIN};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;

fn bench(addr: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("bench")
        .arg(addr)
        .args(args)
        .arg("--json")
        .output()
        .expect("run selectchat bench");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// The number after `"key":` in a one-line JSON object.
fn field(json: &str, key: &str) -> String {
    let start = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key} missing in {json}"));
    let rest = &json[start + key.len() + 3..];
    rest[..rest.find([',', '}']).unwrap()].to_string()
}

#[test]
fn fanout_counts_every_delivery() {
    let s = Server::start(&["--rate", "0"]);
    let (code, json) = bench(
        &s.addr.to_string(),
        &["--clients", "20", "--messages", "50", "--timeout", "30"],
    );
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(field(&json, "scenario"), "\"fanout\"");
    assert_eq!(field(&json, "deliveries"), "1000");
    assert_eq!(field(&json, "lost"), "0");
    assert_eq!(field(&json, "duplicated"), "0");
    assert_eq!(field(&json, "reordered"), "0");
    assert_ne!(field(&json, "p99"), "0");
    assert_eq!(
        field(&json, "cpu_ns_per_delivery"),
        "null",
        "no pid, no CPU"
    );
    // Paced, the same count arrives; with the pid, the server's CPU is read.
    let pid = s.pid().to_string();
    let (code, json) = bench(
        &s.addr.to_string(),
        &[
            "--clients",
            "20",
            "--messages",
            "50",
            "--rate",
            "500",
            "--name-prefix",
            "paced",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(field(&json, "deliveries"), "1000");
    assert_eq!(field(&json, "lost"), "0");
    let cpu: f64 = field(&json, "cpu_ns_per_delivery")
        .parse()
        .expect("a CPU figure");
    assert!(cpu >= 0.0);
}

#[test]
fn every_scenario_runs_over_tls_and_websocket() {
    let s = Server::start(&[
        "--rate",
        "0",
        "--tls-port",
        "0",
        "--tls-self-signed",
        "--web-port",
        "0",
    ]);
    let tls = s.listener("tls").to_string();
    let web = s.listener("web-tls").to_string();
    for (addr, flags, transport) in [
        (&tls, &["--tls"][..], "tls"),
        (&web, &["--tls", "--ws"][..], "web-tls"),
    ] {
        let mut args = vec!["--clients", "20", "--messages", "50", "--timeout", "30"];
        args.extend(flags);
        let (code, json) = bench(addr, &args);
        assert_eq!(code, Some(0), "{json}");
        assert_eq!(field(&json, "transport"), format!("\"{transport}\""));
        assert_eq!(field(&json, "deliveries"), "1000");
        assert_eq!(field(&json, "lost"), "0");
        // A storm of full handshakes (more than the loop advances in a
        // turn): every login answered.
        let mut args = vec![
            "--scenario",
            "storm",
            "--clients",
            "100",
            "--name-prefix",
            "s",
        ];
        args.extend(flags);
        let (code, json) = bench(addr, &args);
        assert_eq!(code, Some(0), "{json}");
        assert_eq!(field(&json, "logins"), "100");
    }
}

#[test]
fn rooms_count_each_rooms_members_exactly() {
    let s = Server::start(&["--rate", "0", "--max-rooms", "10"]);
    // 10 rooms of 6 receivers, 20 receivers in 3 rooms each: 6 per message.
    let (code, json) = bench(
        &s.addr.to_string(),
        &[
            "--scenario",
            "rooms",
            "--rooms",
            "10",
            "--members",
            "6",
            "--per-user",
            "3",
            "--messages",
            "100",
            "--timeout",
            "30",
        ],
    );
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(field(&json, "clients"), "21");
    assert_eq!(field(&json, "deliveries"), "600");
    assert_eq!(field(&json, "lost"), "0");
    assert_eq!(field(&json, "reordered"), "0");
}

#[test]
fn a_storm_times_every_login_and_the_servers_cpu() {
    let s = Server::start(&[]);
    let pid = s.pid().to_string();
    let (code, json) = bench(
        &s.addr.to_string(),
        &[
            "--scenario",
            "storm",
            "--clients",
            "300",
            "--server-pid",
            &pid,
            "--timeout",
            "30",
        ],
    );
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(field(&json, "logins"), "300");
    assert_ne!(field(&json, "cpu_seconds"), "null");
    assert_eq!(field(&json, "error"), "null");
}

#[test]
fn mesh_delivers_everyone_to_everyone() {
    let s = Server::start(&["--rate", "0"]);
    let (code, json) = bench(
        &s.addr.to_string(),
        &[
            "--scenario",
            "mesh",
            "--clients",
            "6",
            "--rate",
            "300",
            "--duration",
            "0.5",
            "--timeout",
            "30",
        ],
    );
    assert_eq!(code, Some(0), "{json}");
    let messages: u64 = field(&json, "messages").parse().unwrap();
    let deliveries: u64 = field(&json, "deliveries").parse().unwrap();
    assert!(messages > 50, "{json}");
    assert_eq!(deliveries, messages * 5);
}

#[test]
fn idle_reports_server_memory_and_cpu() {
    let s = Server::start(&["--rate", "0"]);
    let pid = s.pid().to_string();
    let (code, json) = bench(
        &s.addr.to_string(),
        &[
            "--scenario",
            "idle",
            "--clients",
            "50",
            "--duration",
            "0.5",
            "--server-pid",
            &pid,
            "--timeout",
            "30",
        ],
    );
    assert_eq!(code, Some(0), "{json}");
    assert_ne!(field(&json, "rss_bytes_per_conn"), "null");
    assert_ne!(field(&json, "cpu_percent"), "null");
}

#[test]
fn a_server_that_loses_a_message_fails_the_run() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receivers: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let receivers = Arc::clone(&receivers);
            thread::spawn(move || lossy_client(stream, receivers));
        }
    });
    // A short timeout keeps the wait for the missing message short.
    let (code, json) = bench(
        &addr.to_string(),
        &["--clients", "1", "--messages", "10", "--timeout", "4"],
    );
    assert_eq!(field(&json, "lost"), "1", "{json}");
    assert_eq!(code, Some(1));
}

/// Answers LOGIN with OK and relays MSG like a chat server, except the
/// message with sequence number 3.
fn lossy_client(stream: TcpStream, receivers: Arc<Mutex<Vec<TcpStream>>>) {
    let mut out = stream.try_clone().unwrap();
    let mut name = String::new();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if let Some(n) = line.strip_prefix("LOGIN ") {
            name = n.to_string();
            if name != "load0" {
                receivers.lock().unwrap().push(out.try_clone().unwrap());
            }
            out.write_all(b"OK\n").unwrap();
        } else if let Some(text) = line.strip_prefix("MSG ") {
            if text.starts_with("3 ") {
                continue;
            }
            for r in receivers.lock().unwrap().iter_mut() {
                let _ = r.write_all(format!("MSG {name} {text}\n").as_bytes());
            }
        }
    }
}

/// A Redis or NATS server on a free loopback port, killed when dropped.
struct Other {
    child: std::process::Child,
    addr: String,
}

impl Other {
    /// Starts `binary` with `args` (where `{port}` is the port), or says
    /// why not and returns `None` when it is not installed.
    fn start(binary: &str, args: &[&str]) -> Option<Other> {
        if Command::new(binary).arg("--version").output().is_err() {
            eprintln!("NOT RUN: {binary} is not installed (apt-get install {binary}; .ci/run installs it)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let child = Command::new(binary)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        common::wait_until(common::WAIT, || TcpStream::connect(&addr).is_ok())
            .unwrap_or_else(|| panic!("{binary} did not start"));
        Some(Other { child, addr })
    }
}

impl Drop for Other {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_same_loads_run_against_redis_and_nats() {
    let servers = [
        (
            "redis",
            Other::start(
                "redis-server",
                &["--bind", "127.0.0.1", "--port", "{port}", "--save", ""],
            ),
        ),
        (
            "nats",
            Other::start("nats-server", &["-a", "127.0.0.1", "-p", "{port}"]),
        ),
    ];
    for (target, server) in servers {
        let Some(server) = server else { continue };
        let base = ["--target", target, "--timeout", "30"];
        let mut fanout = base.to_vec();
        fanout.extend(["--clients", "20", "--messages", "50"]);
        let (code, json) = bench(&server.addr, &fanout);
        assert_eq!(code, Some(0), "{json}");
        assert_eq!(field(&json, "target"), format!("\"{target}\""));
        assert_eq!(field(&json, "deliveries"), "1000");
        assert_eq!(field(&json, "lost"), "0");
        assert_eq!(field(&json, "reordered"), "0");
        let mut idle = base.to_vec();
        idle.extend(["--scenario", "idle", "--clients", "30", "--duration", "1"]);
        let (code, json) = bench(&server.addr, &idle);
        assert_eq!(code, Some(0), "{json}");
        assert_eq!(field(&json, "clients"), "30");
    }
    // Rooms are selectchat's; Redis cannot publish from a subscriber (mesh).
    let (code, _) = bench("127.0.0.1:9", &["--target", "redis", "--scenario", "mesh"]);
    assert_eq!(code, Some(2));
}
