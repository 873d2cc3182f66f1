//! `selectchat echo`: RFC 862 over TCP.

mod common;

use common::{wait_until, PortFile, BIN, WAIT};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

struct Echo {
    child: Child,
    addr: SocketAddr,
}

impl Echo {
    fn start() -> Echo {
        let port_file = PortFile::new();
        let child = Command::new(BIN)
            .args(["echo", "--host", "127.0.0.1", "--port-file"])
            .arg(&port_file.0)
            .arg("0")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = port_file.wait("plain", || "the echo server did not start".into());
        Echo { child, addr }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `data` from one thread while reading the echo on this one.
fn round_trip(mut s: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let mut writer = s.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    back
}

#[test]
fn echoes_text() {
    let e = Echo::start();
    let back = round_trip(e.connect(), b"hello\r\nworld\n".to_vec());
    assert_eq!(back, b"hello\r\nworld\n");
}

#[test]
fn echoes_every_byte_value() {
    let e = Echo::start();
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    assert_eq!(round_trip(e.connect(), data.clone()), data);
}

#[test]
fn echoes_several_megabytes_exactly() {
    let e = Echo::start();
    let data: Vec<u8> = (0..8 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let back = round_trip(e.connect(), data.clone());
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echo differs");
}

#[test]
fn serves_many_clients_at_once() {
    let e = Echo::start();
    let handles: Vec<_> = (0..50u8)
        .map(|n| {
            let s = e.connect();
            thread::spawn(move || {
                let data: Vec<u8> = (0..200_000u32).map(|i| (i as u8) ^ n).collect();
                assert!(
                    round_trip(s, data.clone()) == data,
                    "client {n} got a different echo"
                );
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn a_client_that_never_reads_costs_a_bounded_buffer() {
    let e = Echo::start();
    let rss_before = e.rss_kib();
    let mut stuck = e.connect();
    stuck.set_nonblocking(true).unwrap();
    let chunk = [7u8; 65536];
    let mut sent = 0usize;
    // Write until TCP pushes back: the server must have stopped reading.
    let pushed_back = wait_until(WAIT, || {
        match stuck.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(50));
                return stuck.write(&chunk).is_err();
            }
            Err(e) => panic!("{e}"),
        }
        false
    });
    assert!(
        pushed_back.is_some(),
        "server kept reading: {sent} bytes accepted"
    );
    assert!(
        sent < 64 << 20,
        "{sent} bytes accepted before back-pressure"
    );
    let grown = e.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 4 * 1024,
        "server grew {grown} KiB for one stuck client"
    );
    // Others are still served.
    assert_eq!(round_trip(e.connect(), b"ping\n".to_vec()), b"ping\n");
    // Once the stuck client reads, its data flows again.
    stuck.set_nonblocking(false).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let n = stuck.read(&mut buf).unwrap();
    assert!(n > 0 && buf[..n].iter().all(|&b| b == 7));
}
