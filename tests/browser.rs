//! The web page in a real headless Chromium, driven over the DevTools
//! protocol: two people log in from two pages, talk in the lobby, a room
//! and a DM with each other and with an `nc` user, an HTML payload stays
//! text, and one page's connection is cut and comes back by itself.
//!
//! Needs Chromium (`apt-get install chromium`; .ci/run installs it). Without
//! it the test says so and does not run.

mod common;

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use common::relay::Relay;
use common::{Server, TempDir, WAIT};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

const BROWSERS: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// The browser to run, or `None` after saying why the test is not run.
fn find_browser() -> Option<&'static str> {
    let found = BROWSERS.into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        eprintln!(
            "NOT RUN: the browser test needs Chromium (apt-get install chromium; .ci/run installs it)"
        );
    }
    found
}

/// Makes an account for each of `names`, whose password is the name
/// followed by `-password`.
fn register(s: &Server, names: &[&str]) {
    for name in names {
        let mut c = s.connect();
        c.send(&format!("REGISTER {name} {name}-password"));
        c.expect("OK");
        c.expect("END UNREAD");
        c.send("QUIT");
        c.drain_to_close();
    }
}

/// The Chromium process and its profile directory, both gone when dropped
/// (also when the test panics halfway through starting it).
struct Process {
    child: Child,
    profile: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A headless Chromium process and a DevTools connection to it.
struct Browser {
    _process: Process,
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

impl Browser {
    fn launch(binary: &str) -> Browser {
        // One profile per browser: tests run in parallel in one process,
        // and Chromium refuses a profile another instance holds.
        static LAUNCHED: AtomicUsize = AtomicUsize::new(0);
        let n = LAUNCHED.fetch_add(1, Ordering::Relaxed);
        let profile =
            std::env::temp_dir().join(format!("selectchat-chromium-{}-{n}", std::process::id()));
        let child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1100,700",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let mut process = Process { child, profile };
        // Chromium says where DevTools listens on stderr.
        let stderr = process.child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium announces its DevTools address");
        let addr: SocketAddr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(addr.ip().is_loopback());
        let sock = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        // The upgrade may take Chromium a while on a busy machine; after it,
        // reads wake often so `call` can check its own deadline.
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let (ws, _) = tungstenite::client::client(url.as_str(), sock).expect("DevTools socket");
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Browser {
            _process: process,
            ws,
            next_id: 0,
        }
    }

    /// Sends one DevTools command and waits (bounded) for its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.ws.send(Message::text(command.to_string())).unwrap();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let text = match self.ws.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(e) => panic!("DevTools connection failed: {e}"),
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
        panic!("{method}: no answer from chromium");
    }

    /// Opens `url` in a fresh browser context (its own cookies and storage).
    fn open(&mut self, url: &str) -> Page {
        let context = self.call(None, "Target.createBrowserContext", json!({}));
        let target = self.call(
            None,
            "Target.createTarget",
            json!({ "url": url, "browserContextId": context["browserContextId"] }),
        );
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        Page {
            session: attached["sessionId"].as_str().unwrap().to_owned(),
        }
    }

    /// Evaluates `js` in `page` and returns its value.
    fn eval(&mut self, page: &Page, js: &str) -> Value {
        let result = self.call(
            Some(&page.session),
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(result.get("exceptionDetails").is_none(), "{js}: {result}");
        result["result"]["value"].clone()
    }

    /// Waits (bounded) until `js` is true in `page`.
    fn wait_for(&mut self, page: &Page, js: &str) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.eval(page, js) == json!(true) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let shown = self.eval(page, "document.body.innerText");
        panic!("timed out waiting for {js}; the page shows:\n{shown}");
    }

    fn screenshot(&mut self, page: &Page, path: &PathBuf) {
        let shot = self.call(
            Some(&page.session),
            "Page.captureScreenshot",
            json!({ "format": "png" }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

/// One tab, by its DevTools session.
struct Page {
    session: String,
}

/// Page helpers in the page's own terms: a guest logs in as `name`, with
/// `alert` trapped, so a script smuggled in a message would be caught.
fn log_in(b: &mut Browser, page: &Page, name: &str) {
    submit_login(b, page, name, "", "connect");
    b.eval(
        page,
        "window.__xss = false; window.alert = () => { window.__xss = true; }; true",
    );
    b.wait_for(page, CONNECTED);
}

/// Fills the login form once it is there and presses `button` (`connect`,
/// or `register` for "Create account").
fn submit_login(b: &mut Browser, page: &Page, name: &str, password: &str, button: &str) {
    b.wait_for(
        page,
        "document.readyState === 'complete' && !!document.getElementById('login')",
    );
    b.eval(
        page,
        &format!(
            "document.getElementById('name').value = '{name}';
             document.getElementById('password').value = '{password}';
             document.getElementById('login-error').textContent = '';
             document.getElementById('login').requestSubmit(document.getElementById('{button}'));
             true"
        ),
    );
}

/// True once the page says it is connected.
const CONNECTED: &str = "document.getElementById('status').textContent === 'connected'";

fn type_line(b: &mut Browser, page: &Page, text: &str) {
    let text = serde_json::to_string(text).unwrap();
    b.eval(
        page,
        &format!(
            "document.getElementById('input').value = {text};
             document.getElementById('say').requestSubmit(); true"
        ),
    );
}

fn shows(text: &str) -> String {
    let text = serde_json::to_string(text).unwrap();
    format!("document.getElementById('messages').textContent.includes({text})")
}

#[test]
fn two_people_chat_from_the_page_and_one_comes_back_after_a_drop() {
    let Some(binary) = find_browser() else {
        return;
    };
    let data = TempDir::new();
    let db = data.file("chat.db");
    let args = ["--web-port", "0", "--db", db.as_str(), "--rate", "0"];
    let mut s = Server::start(&args);
    let web = s.listener("web");
    let relay = Relay::start(web);
    let mut b = Browser::launch(binary);
    let alice = b.open(&format!("http://{}/", relay.addr));
    let bob = b.open(&format!("http://{web}/"));
    log_in(&mut b, &alice, "alice");
    log_in(&mut b, &bob, "bob");
    let mut nc = s.login("nina");

    // The lobby, with the nc user in it.
    type_line(&mut b, &bob, "hello alice");
    b.wait_for(&alice, &shows("hello alice"));
    nc.expect("MSG bob hello alice");
    nc.send("MSG hi from nc");
    b.wait_for(&alice, &shows("hi from nc"));
    b.wait_for(
        &alice,
        "[...document.querySelectorAll('#users li')].map(l => l.textContent).join() === 'alice,bob,nina'",
    );

    // Another user's HTML is shown as text and never runs.
    let payload = "<img src=x onerror=alert(1)>";
    type_line(&mut b, &bob, payload);
    b.wait_for(&alice, &shows(payload));
    assert_eq!(
        b.eval(&alice, "document.querySelectorAll('#messages img').length"),
        json!(0)
    );
    assert_eq!(b.eval(&alice, "window.__xss"), json!(false));

    // A room: both join, history loads, messages flow.
    type_line(&mut b, &alice, "/join #lounge");
    b.wait_for(
        &alice,
        "document.getElementById('buffer-name').textContent === '#lounge'",
    );
    type_line(&mut b, &alice, "first in the lounge");
    type_line(&mut b, &bob, "/join #lounge");
    b.wait_for(&bob, &shows("first in the lounge")); // from HISTORY
    type_line(&mut b, &bob, "room talk");
    b.wait_for(&alice, &shows("room talk"));

    // A line the server refuses is shown failed, with why and a retry; the
    // next one is marked sent, not the refused one.
    let long = "x".repeat(5000);
    type_line(&mut b, &alice, &long);
    type_line(&mut b, &alice, "short and fine");
    b.wait_for(&bob, &shows("short and fine"));
    b.wait_for(
        &alice,
        "(() => { const ls = window.selectchat.buffers.get('#lounge').lines;
                  const long = ls.find(l => l.text.length === 5000);
                  const fine = ls.find(l => l.text === 'short and fine');
                  return long.failed === 'line-too-long' && !fine.failed && fine.kind === ''; })()",
    );
    assert_eq!(
        b.eval(
            &alice,
            "document.querySelectorAll('#messages .failed button').length"
        ),
        json!(1)
    );
    // Links: http and https open apart from the page; nothing else links.
    type_line(
        &mut b,
        &bob,
        "see https://example.org/a?b=1 not javascript:alert(1)",
    );
    b.wait_for(&alice, &shows("not javascript:alert(1)"));
    assert_eq!(
        b.eval(
            &alice,
            "[...document.querySelectorAll('#messages a')].map(a => [a.href, a.rel, a.target])"
        ),
        json!([["https://example.org/a?b=1", "noopener noreferrer", "_blank"]])
    );
    // Every line keeps the time it came at.
    assert_eq!(
        b.eval(
            &alice,
            "[...window.selectchat.buffers.values()].every(b => b.lines.every(l => l.at > 0))"
        ),
        json!(true)
    );

    // A DM opens its own buffer, with an unread count.
    type_line(&mut b, &bob, "/dm alice psst");
    b.wait_for(
        &alice,
        "document.querySelector('[data-buffer=\"@bob\"] .unread')?.textContent === '1'",
    );
    assert_eq!(b.eval(&alice, "document.title"), json!("(1) selectchat"));
    // With the tab hidden, a DM and a mention notify; other lines do not.
    b.eval(
        &alice,
        "window.__notes = [];
         window.Notification = class { constructor(t, o) { window.__notes.push([t, o.body]); } };
         window.Notification.permission = 'granted';
         Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
         true",
    );
    // Sound turned on: a tone for each of those too.
    b.eval(&alice, "document.getElementById('sound').click(); true");
    type_line(&mut b, &bob, "/dm alice are you there?");
    b.eval(
        &bob,
        "document.querySelector('[data-buffer=\"#lounge\"]').click(); true",
    );
    type_line(&mut b, &bob, "nothing for anyone");
    type_line(&mut b, &bob, "alice: the build is green");
    b.wait_for(&alice, &shows("the build is green"));
    assert_eq!(
        b.eval(&alice, "window.__notes"),
        json!([
            ["bob", "are you there?"],
            ["bob in #lounge", "alice: the build is green"]
        ])
    );
    assert_eq!(b.eval(&alice, "window.selectchat.beeps"), json!(2));
    b.eval(
        &alice,
        "Object.defineProperty(document, 'hidden', { configurable: true, get: () => false }); true",
    );
    b.eval(
        &alice,
        "document.querySelector('[data-buffer=\"@bob\"]').click(); true",
    );
    b.wait_for(&alice, &shows("psst"));
    for page in [&alice, &bob] {
        b.eval(
            page,
            "document.querySelector('[data-buffer=\"#lounge\"]').click(); true",
        );
    }

    // The network drops under alice; bob talks on; alice comes back by herself.
    relay.cut();
    b.wait_for(
        &alice,
        "document.getElementById('status').textContent !== 'connected'",
    );
    type_line(&mut b, &bob, "while you were away");
    type_line(&mut b, &alice, "typed while offline");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(b.eval(&alice, &shows("while you were away")), json!(false));
    relay.restore();
    b.wait_for(
        &alice,
        "document.getElementById('status').textContent === 'connected'",
    );
    b.wait_for(&alice, &shows("while you were away"));
    // Taken back with RESUME, not a fresh LOGIN, and #lounge's missed
    // line came with it (the replay form), not from a HISTORY after it.
    assert_eq!(b.eval(&alice, "window.selectchat.resumes"), json!(1));
    assert_eq!(b.eval(&alice, "window.selectchat.replayed"), json!(1));
    // The line typed offline went out tagged once back, and arrived once.
    b.wait_for(&bob, &shows("typed while offline"));
    b.wait_for(&alice, "window.selectchat.unsent.length === 0");
    // Each once, in id order.
    let once = |text: &str| {
        format!(
            "window.selectchat.buffers.get('#lounge').lines.filter(l => l.text === '{text}').length"
        )
    };
    assert_eq!(b.eval(&alice, &once("while you were away")), json!(1));
    assert_eq!(b.eval(&bob, &once("typed while offline")), json!(1));
    assert_eq!(
        b.eval(
            &alice,
            "(() => { const ids = window.selectchat.buffers.get('#lounge').lines.map(l => l.id).filter(Boolean);
                      return ids.every((id, i) => i === 0 || ids[i - 1] < id); })()"
        ),
        json!(true)
    );
    assert_eq!(b.eval(&alice, "window.selectchat.tags"), json!(true));
    type_line(&mut b, &alice, "back again");
    b.wait_for(&bob, &shows("back again"));
    let seen = nc.sync();
    assert!(seen.contains(&"MSG bob <img src=x onerror=alert(1)>".to_owned()));
    nc.send("WHO");
    nc.expect("USER alice");

    // A busy room on a phone-sized screen: only the message list scrolls,
    // the input stays on screen, and the newest line is in view.
    nc.sync();
    nc.send("JOIN #lounge");
    nc.wait_line(|l| l.starts_with("JOINED #lounge "));
    let lines: String = (1..=200)
        .map(|i| format!("SAY #lounge busy {i}\n"))
        .collect();
    nc.send_raw(lines.as_bytes());
    b.wait_for(&alice, &shows("busy 200"));
    // Someone who joins later scrolls back past the 50 lines a join loads.
    let carol = b.open(&format!("http://{web}/"));
    log_in(&mut b, &carol, "carol");
    type_line(&mut b, &carol, "/join #lounge");
    b.wait_for(&carol, &shows("busy 200"));
    assert_eq!(b.eval(&carol, &shows("busy 150")), json!(false));
    for _ in 0..5 {
        b.eval(
            &carol,
            "(() => { const m = document.getElementById('messages'); m.scrollTop = 0;
                      m.dispatchEvent(new Event('scroll')); return true; })()",
        );
        thread::sleep(Duration::from_millis(100));
    }
    b.wait_for(&carol, &shows("first in the lounge"));
    b.wait_for(&carol, &shows("start of the room's history"));
    // The rooms list follows who is in them.
    b.wait_for(
        &alice,
        "[...document.querySelectorAll('#rooms li')].some(l => l.textContent === '#lounge (4)')",
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    b.screenshot(&alice, &dir.join("browser-chat.png"));
    b.call(
        Some(&alice.session),
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true }),
    );
    b.eval(
        &alice,
        "document.querySelector('[data-buffer=\"#lounge\"]').click(); true",
    );
    let geometry = b.eval(
        &alice,
        "(() => { const input = document.getElementById('input').getBoundingClientRect();
                  const box = document.getElementById('messages').getBoundingClientRect();
                  const last = document.querySelector('#messages .msg:last-child').getBoundingClientRect();
                  const list = document.getElementById('buffers').getBoundingClientRect();
                  return [input.bottom <= innerHeight, last.bottom <= box.bottom + 1,
                          document.scrollingElement.scrollHeight <= innerHeight + 1,
                          list.height >= 30]; })()",
    );
    assert_eq!(
        geometry,
        json!([true, true, true, true]),
        "input on screen, newest line in view, the page itself not scrolling, conversations visible"
    );
    b.screenshot(&alice, &dir.join("browser-chat-phone.png"));
    eprintln!("screenshots: {}/browser-chat*.png", dir.display());

    // The server restarts: the page comes back to it by itself, in the same
    // room, with what was said meanwhile, and nobody sees it leave or join.
    nc.send("QUIT");
    nc.wait_for("BYE");
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit().success());
    let s = Server::start(&args);
    relay.point_to(s.listener("web"));
    let mut nc = s.login("nina");
    nc.send("JOIN #lounge");
    assert!(nc.line().starts_with("JOINED #lounge "));
    nc.send("SAY #lounge said during the restart");
    nc.wait_line(|l| l.starts_with("SENT "));
    b.wait_for(&alice, &shows("said during the restart"));
    b.wait_for(
        &alice,
        "document.getElementById('status').textContent === 'connected'",
    );
    assert_eq!(b.eval(&alice, "window.selectchat.resumes"), json!(2));
    assert_eq!(nc.sync(), Vec::<String>::new(), "no join or leave line");

    // A server that lost everything: the session is gone, the page logs in
    // afresh, joins #lounge again, and only then sends what was typed.
    let mut s = s;
    s.signal(libc::SIGKILL);
    s.wait_exit();
    b.wait_for(
        &alice,
        "document.getElementById('status').textContent !== 'connected'",
    );
    type_line(&mut b, &alice, "typed while the server was gone");
    let fresh = Server::start(&["--web-port", "0"]);
    let mut ops = fresh.login("ops");
    ops.send("JOIN #lounge");
    assert!(ops.line().starts_with("JOINED #lounge "));
    relay.point_to(fresh.listener("web"));
    ops.wait_for("INFO #lounge alice joined");
    let said = ops.wait_line(|l| l.starts_with("SAY #lounge "));
    assert!(
        said.ends_with(" alice typed while the server was gone"),
        "{said}"
    );
    b.wait_for(&alice, "window.selectchat.unsent.length === 0");
}

#[test]
fn the_login_screen_creates_accounts_and_asks_for_passwords() {
    let Some(binary) = find_browser() else {
        return;
    };
    let s = Server::start(&["--web-port", "0"]);
    let web = s.listener("web");
    let mut nc = s.connect();
    nc.send("REGISTER alice alices-password");
    nc.expect("OK");
    nc.send("QUIT");
    nc.drain_to_close();
    let mut b = Browser::launch(binary);
    let page = b.open(&format!("http://{web}/"));
    let says =
        |text: &str| format!("document.getElementById('login-error').textContent === {text:?}");
    submit_login(&mut b, &page, "alice", "", "connect");
    b.wait_for(&page, &says("That name is registered: enter its password."));
    submit_login(&mut b, &page, "alice", "not-hers-at-all", "connect");
    b.wait_for(&page, &says("Wrong password."));
    assert_eq!(
        b.eval(&page, "document.getElementById('password').value"),
        json!(""),
        "the field is cleared after each try"
    );
    submit_login(&mut b, &page, "alice", "alices-password", "connect");
    b.wait_for(&page, CONNECTED);

    // A second page creates bob's account; bob's name is his from then on.
    let second = b.open(&format!("http://{web}/"));
    submit_login(&mut b, &second, "bob", "short", "register");
    b.wait_for(
        &second,
        "document.getElementById('login-error').textContent.startsWith('A password needs at least 8')",
    );
    submit_login(&mut b, &second, "bob", "bobs-password", "register");
    b.wait_for(&second, CONNECTED);
    let mut mallory = s.connect();
    mallory.send("REGISTER bob another-password");
    mallory.expect("ERR username-taken");
    assert!(!s.log().contains("bobs-password"));
}

#[test]
fn a_stored_conversation_reaches_someone_who_was_away_and_is_read_there() {
    let Some(binary) = find_browser() else {
        return;
    };
    let s = Server::start(&["--web-port", "0", "--rate", "0"]);
    let web = s.listener("web");
    register(&s, &["alice", "bob"]);
    let mut b = Browser::launch(binary);
    let log_in_with_password = |b: &mut Browser, page: &Page, name: &str| {
        submit_login(b, page, name, &format!("{name}-password"), "connect");
        b.wait_for(page, CONNECTED);
    };
    let alice = b.open(&format!("http://{web}/"));
    log_in_with_password(&mut b, &alice, "alice");
    type_line(&mut b, &alice, "/dm bob while you were out");
    b.wait_for(
        &alice,
        "(() => { const b = window.selectchat.buffers.get('@bob');
                  return !!b && b.lines.some(l => l.text === 'while you were out' && l.kind === ''); })()",
    );
    let mut nc = s.connect();
    nc.send("LOGIN bob bob-password");
    nc.expect("OK");
    nc.expect("UNREAD @alice 1 0");
    nc.send("QUIT");
    nc.drain_to_close();

    let bob = b.open(&format!("http://{web}/"));
    log_in_with_password(&mut b, &bob, "bob");
    b.wait_for(
        &bob,
        "(() => { const b = window.selectchat.buffers.get('@alice'); return !!b && b.unread === 1; })()",
    );
    b.eval(&bob, "show('@alice'); true");
    b.wait_for(&bob, &shows("while you were out"));
    // Read there: told nothing at the next login. The page's READ and its
    // QUIT are read in order, so once the name is free the mark is in.
    b.eval(&bob, "send('QUIT'); true");
    let mut later = s.connect();
    let mut answer = String::new();
    for _ in 0..100 {
        later.send("LOGIN bob bob-password");
        answer = later.line();
        if answer != "ERR username-taken" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(answer, "OK");
    assert_eq!(later.line(), "END UNREAD", "nothing unread any more");
}

#[test]
fn a_line_whose_sent_was_lost_is_looked_for_then_sent_again_only_if_missing() {
    let Some(binary) = find_browser() else {
        return;
    };
    // A short resume window: after the drop the page must log in afresh,
    // a new session that knows none of its tags.
    let s = Server::start(&["--web-port", "0", "--rate", "0", "--resume-window", "0.2"]);
    register(&s, &["alice", "bob"]);
    let relay = Relay::start(s.listener("web"));
    let mut b = Browser::launch(binary);
    let page = b.open(&format!("http://{}/", relay.addr));
    submit_login(&mut b, &page, "alice", "alice-password", "connect");
    b.wait_for(&page, CONNECTED);
    let mut bob = s.connect();
    bob.send("LOGIN bob bob-password");
    bob.expect("OK");
    bob.expect("END UNREAD");
    type_line(&mut b, &page, "/join #lounge");
    b.wait_for(
        &page,
        "document.getElementById('buffer-name').textContent === '#lounge'",
    );
    bob.send("JOIN #lounge");
    bob.wait_line(|l| l.starts_with("JOINED #lounge "));

    // The server's answers are lost: the line is stored, its SENT is not seen.
    relay.deafen();
    type_line(&mut b, &page, "/dm bob reached you");
    bob.wait_line(|l| l.ends_with(" alice reached you"));
    // Everything is lost: this line never reaches the server.
    relay.blackhole();
    b.eval(&page, "show('#lounge'); true");
    type_line(&mut b, &page, "lost on the way");
    relay.cut();
    b.wait_for(
        &page,
        "document.getElementById('status').textContent !== 'connected'",
    );
    type_line(&mut b, &page, "typed while offline");
    thread::sleep(Duration::from_millis(600));
    relay.restore();
    b.wait_for(&page, CONNECTED);
    b.wait_for(
        &page,
        "window.selectchat.unsure.length === 0 && window.selectchat.unsent.length === 0",
    );
    assert_eq!(
        b.eval(&page, "window.selectchat.resumes"),
        json!(0),
        "a fresh login"
    );
    // The line found in the conversation is not sent again; the one
    // missing from the room is, once, and before the line typed after it.
    bob.wait_line(|l| l.ends_with(" alice lost on the way"));
    let next = bob.line();
    assert!(next.ends_with(" alice typed while offline"), "{next}");
    bob.send("PING done");
    let rest = bob.wait_line(|l| l == "PONG done" || l.contains("reached you"));
    assert_eq!(rest, "PONG done", "reached bob twice");
    let once = |key: &str, text: &str| {
        format!(
            "window.selectchat.buffers.get('{key}').lines
               .filter(l => l.text === '{text}' && l.kind === '' && !l.failed).length"
        )
    };
    assert_eq!(b.eval(&page, &once("@bob", "reached you")), json!(1));
    assert_eq!(b.eval(&page, &once("#lounge", "lost on the way")), json!(1));
}
