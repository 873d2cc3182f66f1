use super::*;

const MS: Duration = Duration::from_millis(1);

/// A session with a fake clock, and what it sent and showed.
struct Pair {
    session: Session,
    now: Instant,
}

fn config(name: Option<&str>, interactive: bool, resilient: bool) -> Config {
    Config {
        name: name.map(str::to_string),
        password: None,
        register: false,
        interactive,
        resilient,
        pace: FloodPolicy::OFF,
        heartbeat: HEARTBEAT,
        room: None,
        seed: 7,
        wait: Duration::from_secs(120),
    }
}

impl Pair {
    fn with(cfg: Config) -> Pair {
        let now = Instant::now();
        let mut session = Session::new(cfg, now);
        session.handle_connected(now);
        Pair { session, now }
    }

    /// A piped session (a script), logged in.
    fn piped(name: &str) -> Pair {
        let mut p = Pair::with(config(Some(name), false, false));
        p.server("OK");
        p.sent();
        p.effects();
        p
    }

    /// A terminal session, logged in, with its token and WHO answered.
    fn resilient(name: &str) -> Pair {
        let mut p = Pair::with(config(Some(name), true, true));
        p.server("OK");
        assert_eq!(p.sent(), format!("LOGIN {name}\nTOKEN\nWHO\nPING w1\n"));
        p.server("TOKEN 0123456789abcdef0123456789abcdef");
        p.server(&format!("USER {name}"));
        p.server("PONG w1");
        p.effects();
        p
    }

    fn sent(&mut self) -> String {
        String::from_utf8(std::mem::take(self.session.to_server())).unwrap()
    }

    fn effects(&mut self) -> Vec<Effect> {
        std::iter::from_fn(|| self.session.poll_effect()).collect()
    }

    /// What piped mode would print.
    fn shown(&mut self) -> Vec<String> {
        self.effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Show(to, line) => Some(line.plain(&to)),
                Effect::ShowAll(line) => Some(line.plain(&Target::Lobby)),
                _ => None,
            })
            .collect()
    }

    fn deliveries(&mut self) -> Vec<(u64, Delivery)> {
        self.effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Delivery { local, state, .. } => Some((local, state)),
                _ => None,
            })
            .collect()
    }

    fn server(&mut self, line: &str) {
        self.session.handle_line(line, self.now);
    }

    fn typed(&mut self, line: &str) {
        self.typed_in(line, &Target::Lobby);
    }

    fn typed_in(&mut self, line: &str, here: &Target) {
        self.session.handle_input(line, here, self.now);
    }

    fn later(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
    }

    /// Joins `room` and answers the JOIN, its history and its WHO.
    fn join(&mut self, room: &str) {
        self.typed(&format!("/join {room}"));
        assert_eq!(self.sent(), format!("JOIN {room}\n"));
        self.server(&format!("JOINED {room} 2"));
        let seq = self.session.seq;
        assert_eq!(
            self.sent(),
            format!("HISTORY {room} 50\nWHO {room}\n"),
            "history then members (seq {seq})"
        );
        self.server(&format!("END HISTORY {room}"));
        self.server(&format!("USER {}", self.session.name.clone()));
        self.server("USER bob");
        self.server(&format!("END WHO {room}"));
        self.effects();
    }

    /// Drops the connection and connects again; returns what was shown meanwhile.
    fn lose_connection(&mut self) -> Vec<Effect> {
        self.session.handle_closed(self.now);
        let mut seen = self.effects();
        let Link::Down(Some(retry)) = self.session.link() else {
            panic!("no retry scheduled: {:?}", self.session.link());
        };
        self.now = retry;
        self.session.handle_timeout(self.now);
        seen.extend(self.effects());
        assert!(seen.contains(&Effect::Connect));
        self.session.handle_connected(self.now);
        seen
    }

    /// The number the next client PING will carry.
    fn next_ping(&self) -> u64 {
        self.session.seq + 1
    }
}

fn room(name: &str) -> Target {
    Target::Room(name.into())
}

#[test]
fn logs_in_with_the_given_name() {
    let mut p = Pair::with(config(Some("alice"), false, false));
    assert_eq!(p.sent(), "LOGIN alice\n");
    assert_eq!(p.session.phase(), Phase::LoggingIn);
    p.typed("too early");
    assert_eq!(p.shown(), ["! still logging in"]);
    assert_eq!(p.sent(), "", "nothing is sent before OK");
    p.server("OK");
    let effects = p.effects();
    assert_eq!(effects[0], Effect::LoggedIn);
    assert_eq!(p.session.phase(), Phase::Chatting);
    assert_eq!(p.session.prompt(), "> ");
    assert_eq!(p.sent(), "", "a script asks for no token and no roster");
}

#[test]
fn a_person_is_asked_again_when_the_name_is_refused() {
    let mut p = Pair::with(config(None, true, true));
    assert_eq!(p.session.prompt(), "name: ");
    p.typed("no spaces please");
    assert_eq!(p.shown(), ["! a name is 1 to 32 letters, digits, _ or -"]);
    assert_eq!(p.sent(), "");
    p.typed(" bob ");
    assert_eq!(p.sent(), "LOGIN bob\n");
    p.server("ERR username-taken");
    assert_eq!(p.shown(), ["! that name is taken: bob"]);
    assert_eq!(p.session.phase(), Phase::AskName);
    assert_eq!(p.session.prompt(), "name: ");
    assert_eq!(p.session.exit(), None);
    p.typed("bob2");
    assert_eq!(p.sent(), "LOGIN bob2\n");
    p.server("OK");
    assert!(p
        .shown()
        .contains(&"* logged in as bob2 (/help lists commands)".to_string()));
}

#[test]
fn a_person_is_asked_for_the_password_of_a_registered_name_and_again_if_wrong() {
    let mut p = Pair::with(config(None, true, true));
    p.typed("alice");
    assert_eq!(p.sent(), "LOGIN alice\n");
    p.server("ERR password-required");
    assert_eq!(p.shown(), ["* that name is registered: type its password"]);
    assert_eq!(p.session.phase(), Phase::AskPassword);
    assert_eq!(p.session.prompt(), "password: ");
    p.typed("wrong-one");
    assert_eq!(p.sent(), "LOGIN alice wrong-one\n");
    p.server("ERR bad-password");
    assert_eq!(p.shown(), ["* wrong password: type it again"]);
    p.typed("right-one");
    assert_eq!(p.sent(), "LOGIN alice right-one\n");
    p.server("OK");
    p.effects();
    p.sent();
    // A drop without a token logs in again with the password.
    p.session.handle_closed(p.now);
    p.session.handle_connected(p.now);
    assert!(p.sent().starts_with("LOGIN alice right-one\n"));
}

#[test]
fn register_asks_for_a_new_password_and_logs_in_with_it_after() {
    let mut p = Pair::with(config(None, true, true));
    p.typed("/register alice");
    assert_eq!(p.session.prompt(), "new password: ");
    assert_eq!(p.sent(), "");
    p.typed("short");
    assert_eq!(
        p.shown().last().unwrap(),
        "! a password needs at least 8 bytes and no spaces"
    );
    p.typed("long-enough");
    assert_eq!(p.sent(), "REGISTER alice long-enough\n");
    p.server("OK");
    p.effects();
    p.sent();
    p.session.handle_closed(p.now);
    p.session.handle_connected(p.now);
    assert!(
        p.sent().starts_with("LOGIN alice long-enough\n"),
        "registered once"
    );
}

#[test]
fn a_script_gives_its_password_and_exits_if_it_is_refused() {
    let mut cfg = config(Some("bob"), false, false);
    cfg.password = Some("bobs-password".into());
    let mut p = Pair::with(cfg);
    assert_eq!(p.sent(), "LOGIN bob bobs-password\n");
    p.server("ERR bad-password");
    assert_eq!(p.shown(), ["! wrong password: bob"]);
    assert_eq!(p.session.exit(), Some(EXIT_CLOSED));
    let mut cfg = config(Some("bob"), false, false);
    cfg.password = Some("bobs-password".into());
    cfg.register = true;
    let mut p = Pair::with(cfg);
    assert_eq!(p.sent(), "REGISTER bob bobs-password\n");
}

#[test]
fn a_script_exits_when_the_name_is_refused() {
    let mut p = Pair::with(config(Some("bob"), false, false));
    p.server("ERR username-taken");
    assert_eq!(p.shown(), ["! that name is taken: bob"]);
    assert_eq!(p.session.exit(), Some(EXIT_CLOSED));
}

#[test]
fn who_collects_names_until_its_ping_comes_back() {
    let mut p = Pair::piped("alice");
    p.typed("/who");
    assert_eq!(p.sent(), "WHO\nPING w1\n");
    p.server("USER alice");
    p.server("USER bob");
    p.server("PONG p1");
    assert_eq!(p.shown(), Vec::<String>::new(), "not the WHO's token");
    p.server("PONG w1");
    assert_eq!(p.shown(), ["* online (2): alice, bob"]);
    p.server("USER carol");
    assert_eq!(p.shown(), ["* online: carol"], "a USER outside a WHO");
}

#[test]
fn ping_reports_the_round_trip_on_its_own_token() {
    let mut p = Pair::piped("alice");
    p.typed("/ping");
    p.typed("/ping");
    assert_eq!(p.sent(), "PING p1\nPING p2\n");
    p.now += 12 * MS;
    p.server("PONG p2");
    assert_eq!(p.shown(), ["* pong from server in 12.00 ms"]);
    p.server("PONG p1");
    assert_eq!(p.shown(), Vec::<String>::new(), "p1 was passed over");
    p.server("PONG garbage");
    p.server("PONG");
    assert_eq!(p.shown(), Vec::<String>::new());
}

#[test]
fn the_servers_heartbeat_is_answered() {
    let mut p = Pair::piped("alice");
    p.server("PING");
    assert_eq!(p.sent(), "PONG\n");
    assert_eq!(p.shown(), Vec::<String>::new());
}

#[test]
fn chat_is_sent_and_echoed_locally_and_events_shown() {
    let mut p = Pair::piped("alice");
    p.typed("hello");
    p.typed("/dm bob hi \u{1b}[2J");
    assert_eq!(
        p.sent(),
        "MSG hello\nPING c1\nDM bob hi \u{1b}[2J\nPING c2\n",
        "each confirmed by the PONG behind it"
    );
    p.server("MSG bob hey");
    p.server("INFO carol joined");
    p.server("something odd \u{7}");
    p.server("SAY #rust 4 bob \u{9b}31m");
    assert_eq!(
        p.shown(),
        [
            "alice: hello",
            "[dm to bob] alice: hi \u{fffd}[2J",
            "bob: hey",
            "* carol joined",
            "* something odd \u{fffd}",
            "[#rust] bob: \u{fffd}31m",
        ]
    );
}

#[test]
fn a_piped_room_is_joined_and_lines_are_said_there() {
    let mut cfg = config(Some("alice"), false, false);
    cfg.room = Some("#ops".into());
    let mut p = Pair::with(cfg);
    p.server("OK");
    assert_eq!(p.sent(), "LOGIN alice\nJOIN #ops\n");
    assert_eq!(p.shown(), ["* logged in as alice"]);
    p.server("JOINED #ops 1");
    assert_eq!(p.sent(), "HISTORY #ops 50\n");
    p.server("HIST #ops 3 1700000000000 bob earlier");
    p.server("END HISTORY #ops");
    p.typed_in("deploying", &room("#ops"));
    assert_eq!(p.sent(), "SAY #ops/l1 deploying\n");
    p.server("SENT #ops 4");
    assert_eq!(
        p.shown(),
        [
            "* [#ops] joined #ops (1 here)",
            "[#ops] (bob): earlier",
            "[#ops] alice: deploying"
        ]
    );
}

#[test]
fn quit_waits_for_the_close_then_exits_cleanly() {
    let mut p = Pair::piped("alice");
    p.typed("/quit");
    assert_eq!(p.sent(), "QUIT\n");
    assert_eq!(p.effects(), [Effect::StopInput]);
    p.session.quit(p.now);
    assert_eq!(p.sent(), "", "one QUIT only");
    p.typed("ignored");
    assert_eq!(p.sent(), "");
    p.server("BYE");
    p.session.handle_closed(p.now);
    assert_eq!(p.session.exit(), Some(EXIT_OK));
    assert_eq!(p.shown(), Vec::<String>::new());
}

#[test]
fn quit_gives_up_on_a_silent_server_after_the_grace() {
    let mut p = Pair::piped("alice");
    p.session.quit(p.now);
    let deadline = p.session.poll_timeout().unwrap();
    assert_eq!(deadline, p.now + QUIT_GRACE);
    p.session.handle_timeout(deadline - MS);
    assert_eq!(p.session.exit(), None);
    p.session.handle_timeout(deadline);
    assert_eq!(p.session.exit(), Some(EXIT_OK));
}

#[test]
fn a_script_waits_at_the_end_for_every_line_to_be_confirmed() {
    let mut cfg = config(Some("alice"), false, false);
    cfg.room = Some("#ops".into());
    cfg.wait = Duration::from_secs(5);
    let mut p = Pair::with(cfg);
    p.server("OK");
    p.server("JOINED #ops 1");
    p.server("END HISTORY #ops");
    p.sent();
    p.typed_in("one", &room("#ops"));
    p.typed("two");
    p.session.end_of_input(p.now);
    assert_eq!(
        p.sent(),
        "SAY #ops/l1 one\nMSG two\nPING c1\n",
        "no QUIT yet"
    );
    p.server("SENT #ops 7");
    assert_eq!(p.sent(), "");
    p.server("PONG c1");
    assert_eq!(p.sent(), "QUIT\n", "all confirmed: now it quits");

    // A line the server never confirms: it gives up, with a count.
    let mut p = Pair::piped("bob");
    p.typed("lost in the void");
    p.session.end_of_input(p.now);
    p.later(Duration::from_secs(121));
    assert_eq!(p.session.exit(), Some(EXIT_UNCONFIRMED));
    assert_eq!(
        p.session.farewell(),
        Some("gave up: 1 line not confirmed by the server")
    );
}

#[test]
fn a_script_does_not_print_its_own_lines_twice_when_the_history_comes_late() {
    let mut cfg = config(Some("ci"), false, false);
    cfg.room = Some("#ops".into());
    let mut p = Pair::with(cfg);
    p.server("OK");
    p.typed_in("one", &room("#ops"));
    // The server answers in order: the JOIN, then the SAY, then the
    // HISTORY asked for on JOINED.
    p.server("JOINED #ops 1");
    p.server("SENT #ops 1");
    p.server("HIST #ops 1 1700000000000 ci one");
    p.server("HIST #ops 2 1700000000000 bob two");
    p.server("END HISTORY #ops");
    assert_eq!(
        p.shown(),
        [
            "* logged in as ci",
            "[#ops] ci: one",
            "* [#ops] joined #ops (1 here)",
            "[#ops] (bob): two"
        ],
        "its own line was printed when it was sent, once"
    );
}

#[test]
fn a_dm_closes_and_reconnect_skips_the_backoff() {
    let mut p = Pair::resilient("alice");
    let bob = Target::Dm("bob".into());
    p.typed_in("/close", &bob);
    assert_eq!(p.effects(), [Effect::Parted(bob.clone())]);
    p.typed_in("/part", &bob);
    assert_eq!(p.effects(), [Effect::Parted(bob)]);
    p.typed_in("/close", &room("#rust"));
    assert_eq!(p.shown(), ["! [#rust] only a DM closes (in a room: /part)"]);

    p.session.handle_closed(p.now);
    p.effects();
    assert!(matches!(p.session.link(), Link::Down(Some(at)) if at > p.now));
    p.typed("/reconnect");
    assert_eq!(p.session.link(), Link::Down(Some(p.now)));
    p.session.handle_timeout(p.now);
    assert!(p.effects().contains(&Effect::Connect), "at once");
}

#[test]
fn a_ping_is_answered_where_it_was_typed() {
    let mut p = Pair::resilient("alice");
    p.join("#rust");
    p.typed_in("/ping", &room("#rust"));
    let seq = p.session.seq;
    assert_eq!(p.sent(), format!("PING p{seq}\n"));
    p.server(&format!("PONG p{seq}"));
    let shown: Vec<Target> = p
        .effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Show(to, line) if line.text.starts_with("pong from server") => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(shown, [room("#rust")]);
}

#[test]
fn a_script_ends_when_the_server_closes_and_says_why() {
    let mut p = Pair::piped("alice");
    p.server("BYE idle-timeout");
    p.typed("unsent");
    p.session.handle_closed(p.now);
    assert_eq!(p.session.exit(), Some(EXIT_CLOSED));
    assert_eq!(
        p.shown(),
        [
            "alice: unsent",
            "* disconnected: idle timeout; 1 line not confirmed by the server"
        ]
    );
    assert_eq!(p.sent(), "", "nothing is left to send");
    let mut lost = Pair::piped("bob");
    lost.session.handle_closed(lost.now);
    assert_eq!(lost.shown(), ["* disconnected: connection lost"]);
}

#[test]
fn a_paste_is_paced_under_the_servers_flood_limit() {
    let mut cfg = config(Some("alice"), true, true);
    cfg.pace = FloodPolicy::new(10.0, 20, Duration::MAX);
    let mut p = Pair::with(cfg);
    p.server("OK");
    p.server("PONG w1");
    let paste: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    p.session.handle_paste(&paste, &Target::Lobby, p.now);
    let at_once = p.sent();
    assert_eq!(
        at_once.lines().count(),
        20,
        "the bucket's burst, login lines included:\n{at_once}"
    );
    let mut lines = at_once.lines().count();
    let mut said = at_once.lines().filter(|l| l.starts_with("MSG")).count();
    let start = p.now;
    while said < 50 {
        let next = p.session.poll_timeout().expect("a paced line is due");
        assert!(next > p.now, "no busy loop");
        p.now = next;
        p.session.handle_timeout(p.now);
        let out = p.sent();
        lines += out.lines().count();
        said += out.lines().filter(|l| l.starts_with("MSG")).count();
    }
    let took = (p.now - start).as_secs_f64();
    let paced = (lines - 20) as f64 / 10.0;
    assert!(took >= paced - 0.11, "{lines} lines in {took} s");
    assert!(p.session.pending() > 0, "awaiting confirmation");
}

#[test]
fn lobby_lines_are_confirmed_by_the_ping_behind_them() {
    let mut p = Pair::resilient("alice");
    p.typed("one");
    p.typed("two");
    assert_eq!(p.sent(), "MSG one\nPING c1\nMSG two\nPING c2\n");
    assert_eq!(p.session.pending(), 2);
    p.server("PONG c1");
    assert_eq!(p.deliveries(), [(1, Delivery::Delivered)]);
    p.server("PONG c2");
    assert_eq!(p.deliveries(), [(2, Delivery::Delivered)]);
    assert_eq!(p.session.pending(), 0);
    // A DM to nobody is marked as refused.
    p.typed("/dm nobody hi");
    p.sent();
    p.server("ERR no-such-user");
    assert_eq!(p.deliveries(), [(3, Delivery::Failed)]);
}

#[test]
fn a_silent_server_is_probed_then_left_and_reconnected_with_backoff() {
    let mut p = Pair::resilient("alice");
    p.later(HEARTBEAT - MS);
    assert_eq!(p.sent(), "");
    p.later(MS);
    assert_eq!(p.sent(), "PING k\n");
    p.server("PONG k");
    p.later(HEARTBEAT * 2 - MS);
    assert_eq!(p.sent(), "PING k\n", "any line counts as an answer");
    p.later(HEARTBEAT);
    let effects = p.effects();
    assert!(effects.contains(&Effect::Disconnect), "{effects:?}");
    // Each failed attempt waits longer, within the jitter's half range, up to the cap.
    let mut ceiling = RETRY_FIRST;
    for _ in 0..12 {
        let Link::Down(Some(retry)) = p.session.link() else {
            panic!("no retry: {:?}", p.session.link())
        };
        let wait = retry - p.now;
        assert!(
            wait >= ceiling / 2 && wait <= ceiling,
            "{wait:?} vs {ceiling:?}"
        );
        p.now = retry;
        p.session.handle_timeout(p.now);
        assert!(p.effects().contains(&Effect::Connect));
        assert!(matches!(p.session.link(), Link::Connecting(_)));
        p.session.handle_closed(p.now);
        ceiling = (ceiling * 2).min(RETRY_CAP);
    }
    assert_eq!(ceiling, RETRY_CAP);
    assert_eq!(p.session.exit(), None, "a person's client keeps trying");
}

#[test]
fn a_connect_that_hangs_is_given_up_at_its_deadline() {
    let mut p = Pair::resilient("alice");
    p.session.handle_closed(p.now);
    let Link::Down(Some(retry)) = p.session.link() else {
        panic!()
    };
    p.now = retry;
    p.session.handle_timeout(p.now);
    p.effects();
    p.later(CONNECT_TIMEOUT);
    assert!(p.effects().contains(&Effect::Disconnect));
    assert!(matches!(p.session.link(), Link::Down(Some(_))));
}

#[test]
fn resume_takes_the_session_back_and_sends_each_room_line_once() {
    let mut p = Pair::resilient("alice");
    p.join("#rust");
    p.join("#go");
    p.server("SAY #rust 10 bob before");
    p.typed_in("landed", &room("#rust"));
    p.typed_in("in flight", &room("#rust"));
    p.typed_in("also lost", &room("#go"));
    assert_eq!(
        p.sent(),
        "SAY #rust/l1 landed\nSAY #rust/l2 in flight\nSAY #go/l3 also lost\n"
    );
    p.server("SENT #rust 11");
    assert_eq!(p.deliveries(), [(1, Delivery::Delivered)]);

    // The connection drops before the other two SENTs arrive.
    let r = p.next_ping();
    p.lose_connection();
    p.typed_in("typed while away", &room("#rust"));
    assert_eq!(p.session.pending(), 3);
    assert_eq!(
        p.sent(),
        format!("RESUME alice 0123456789abcdef0123456789abcdef #rust:11\nPING r{r}\n"),
        "what #rust missed comes with the resume; #go showed nothing yet"
    );
    p.server("OK");
    p.server("JOINED #go 2");
    p.server("JOINED #rust 2");
    // #rust: "in flight" was stored; bob said something meanwhile.
    p.server("HIST #rust 12 1700000000000 alice in flight");
    p.server("HIST #rust 13 1700000000001 bob missed");
    p.server("END HISTORY #rust");
    p.server(&format!("PONG r{r}"));
    assert_eq!(
        p.sent(),
        format!("WHO\nPING w{}\nHISTORY #go 50\n", r + 1),
        "no TOKEN (a resumed session keeps it); nothing typed goes before the catch-up"
    );
    // #go: "also lost" never got there.
    p.server("END HISTORY #go");
    assert_eq!(
        p.sent(),
        "SAY #go/l3 also lost\nSAY #rust/l4 typed while away\n",
        "a line resent keeps its tag"
    );
    let effects = p.effects();
    assert!(effects.contains(&Effect::Delivery {
        local: 2,
        state: Delivery::Delivered,
        id: Some(12)
    }));
    let missed: Vec<&Line> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Show(to, line) if *to == room("#rust") && line.kind == Kind::Chat => Some(line),
            _ => None,
        })
        .collect();
    assert_eq!(missed.len(), 1, "only bob's line is new: {missed:?}");
    assert_eq!((missed[0].from.as_str(), missed[0].id), ("bob", Some(13)));
    p.server("SENT #go 14");
    p.server("SENT #rust 15");
    assert_eq!(p.session.pending(), 0);
}

#[test]
fn a_restarted_server_gets_a_login_and_the_rooms_joined_again() {
    let mut p = Pair::resilient("alice");
    p.join("#rust");
    p.server("SAY #rust 7 bob before");
    p.typed("in the lobby");
    p.sent();
    let seen = p.lose_connection();
    assert!(
        seen.contains(&Effect::Delivery {
            local: 1,
            state: Delivery::Unconfirmed,
            id: None
        }),
        "a lobby line in flight is not sent twice: {seen:?}"
    );
    p.sent();
    p.server("ERR bad-token");
    let r = p.session.seq;
    assert_eq!(
        p.sent(),
        format!("RESUME alice 0123456789abcdef0123456789abcdef\nPING r{r}\n"),
        "once more in the bare form, for a server before the replay"
    );
    p.server(&format!("PONG r{}", r - 1));
    p.server("ERR bad-token");
    assert_eq!(p.sent(), "LOGIN alice\n");
    let w = p.next_ping();
    p.server("OK");
    assert_eq!(p.sent(), format!("TOKEN\nWHO\nPING w{w}\nJOIN #rust\n"));
    p.typed_in("queued", &room("#rust"));
    p.server("JOINED #Rust 1");
    assert_eq!(p.sent(), "HISTORY #Rust AFTER 7 500\nWHO #Rust\n");
    p.server("END HISTORY #Rust");
    assert_eq!(p.sent(), "SAY #rust/l2 queued\n");
    let shown = p.shown();
    assert!(
        shown.contains(&"* reconnected: logged in again as alice".to_string()),
        "{shown:?}"
    );
}

#[test]
fn a_long_outage_is_caught_up_page_by_page() {
    let mut p = Pair::resilient("alice");
    p.join("#busy");
    p.server("SAY #busy 1 bob first");
    p.lose_connection();
    assert!(p.sent().contains(" #busy:1\n"));
    p.server("OK");
    p.server("JOINED #busy 2");
    for id in 2..502 {
        p.server(&format!("HIST #busy {id} 1700000000000 bob m{id}"));
    }
    p.server("END HISTORY #busy MORE");
    assert_eq!(p.sent(), "HISTORY #busy AFTER 501 500\n");
    p.server(&format!("PONG r{}", p.session.seq));
    p.server("END HISTORY #busy");
    assert!(!p.sent().contains("HISTORY"), "caught up");
}

#[test]
fn a_server_without_tags_gets_the_line_again_untagged() {
    let mut p = Pair::resilient("alice");
    p.join("#rust");
    p.typed_in("one", &room("#rust"));
    p.typed_in("two", &room("#rust"));
    assert_eq!(p.sent(), "SAY #rust/l1 one\nSAY #rust/l2 two\n");
    p.server("ERR invalid-room");
    assert_eq!(p.sent(), "SAY #rust one\n");
    p.server("ERR invalid-room");
    assert_eq!(p.sent(), "SAY #rust two\n");
    p.server("SENT #rust 1");
    p.server("SENT #rust 2");
    assert_eq!(p.session.pending(), 0);
    p.typed_in("three", &room("#rust"));
    assert_eq!(p.sent(), "SAY #rust three\n", "no tags from then on");
}

#[test]
fn a_session_resumed_elsewhere_is_not_fought_over() {
    let mut p = Pair::resilient("alice");
    p.server("BYE replaced");
    p.session.handle_closed(p.now);
    assert_eq!(p.session.exit(), Some(EXIT_CLOSED));
    assert_eq!(p.session.link(), Link::Down(None));
    assert_eq!(
        p.session.farewell(),
        Some("disconnected: the session was resumed elsewhere")
    );
}

#[test]
fn a_kicked_session_stops_and_a_restarting_one_comes_back() {
    let mut p = Pair::resilient("alice");
    p.server("NOTICE spamming the lobby");
    assert_eq!(p.shown(), ["* notice: spamming the lobby"]);
    p.server("BYE kicked");
    p.session.handle_closed(p.now);
    assert_eq!(p.session.exit(), Some(EXIT_CLOSED));
    assert_eq!(
        p.session.farewell(),
        Some("disconnected: an operator ended the connection")
    );

    let mut p = Pair::resilient("alice");
    p.server("BYE restarting");
    p.session.handle_closed(p.now);
    assert_eq!(p.session.exit(), None, "it reconnects");
    assert!(matches!(p.session.link(), Link::Down(Some(_))));
}

#[test]
fn the_offline_queue_is_bounded() {
    let mut p = Pair::resilient("alice");
    p.session.handle_closed(p.now);
    for i in 0..MAX_QUEUED + 3 {
        p.typed(&format!("line {i}"));
    }
    assert_eq!(p.session.pending(), MAX_QUEUED);
    let Some(retry) = p.session.poll_timeout() else {
        panic!("a retry is due")
    };
    assert!(
        retry > p.now,
        "a queue while offline does not spin the loop"
    );
    let refused = p.shown().iter().filter(|l| l.contains("not sent")).count();
    assert_eq!(refused, 3);
    p.typed("/join #x");
    assert!(p.shown().iter().any(|l| l.contains("not connected")));
}

#[test]
fn scrollback_asks_before_the_oldest_id_until_the_start() {
    let mut p = Pair::resilient("alice");
    p.typed("/join #rust");
    p.server("JOINED #rust 2");
    for id in 41..=90 {
        p.server(&format!("HIST #rust {id} 1700000000000 bob m{id}"));
    }
    p.server("END HISTORY #rust");
    p.sent();
    p.typed_in("/history 20", &room("#rust"));
    assert_eq!(p.sent(), "HISTORY #rust BEFORE 41 20\n");
    p.session.older("#rust", 20, p.now);
    assert_eq!(p.sent(), "", "one scrollback request at a time");
    for id in 21..41 {
        p.server(&format!("HIST #rust {id} 1700000000000 bob m{id}"));
    }
    p.server("END HISTORY #rust");
    p.session.older("#rust", 50, p.now);
    assert_eq!(p.sent(), "HISTORY #rust BEFORE 21 50\n");
    p.server("HIST #rust 3 1700000000000 bob first");
    p.server("END HISTORY #rust");
    assert!(p
        .shown()
        .iter()
        .any(|l| l.contains("start of the room's history")));
    p.session.older("#rust", 50, p.now);
    assert_eq!(p.sent(), "", "nothing older to ask for");
    p.typed_in("/history", &room("#rust"));
    assert_eq!(p.shown(), ["* [#rust] start of the room's history"]);
    p.typed("/history");
    assert!(p.shown()[0].contains("rooms only"));
}

/// A piped session logged in with a password (an account), and what it sent.
fn with_account(name: &str) -> Pair {
    let mut cfg = config(Some(name), false, false);
    cfg.password = Some("the-password".into());
    let mut p = Pair::with(cfg);
    p.server("OK");
    p.sent();
    p.effects();
    p
}

#[test]
fn an_account_talks_in_stored_conversations_and_reads_what_waited() {
    let mut p = with_account("alice");
    let bob = Target::Dm("bob".into());
    p.typed_in("hi bob", &bob);
    assert_eq!(p.sent(), "SAY @bob/l1 hi bob\n");
    assert_eq!(p.session.pending(), 1);
    p.server("SENT @bob 7");
    assert_eq!(p.session.pending(), 0, "confirmed by its SENT");
    assert_eq!(p.shown(), ["[dm to bob] alice: hi bob"]);

    p.server("SAY @carol 9 carol yo");
    assert_eq!(p.shown(), ["[dm] carol: yo"]);
    assert_eq!(p.sent(), "READ @carol 9\n", "shown: read");

    p.server("UNREAD @dave 2 5");
    assert_eq!(p.shown(), ["* 2 unread messages from dave"]);
    assert_eq!(p.sent(), "HISTORY @dave AFTER 5 500\n");
    p.server("HIST @dave 6 1700000000000 dave one");
    p.server("HIST @dave 8 1700000000001 dave two");
    p.server("END HISTORY @dave");
    assert_eq!(p.shown(), ["[dm] dave: one", "[dm] dave: two"]);
    assert_eq!(p.sent(), "READ @dave 8\n");
}

#[test]
fn a_peer_without_an_account_gets_v1_dms() {
    let mut p = with_account("alice");
    let guest = Target::Dm("guest".into());
    p.typed_in("hello", &guest);
    assert_eq!(p.sent(), "SAY @guest/l1 hello\n");
    p.server("ERR no-such-user");
    assert_eq!(
        p.sent(),
        "DM guest hello\nPING c1\n",
        "the same line, as a v1 DM"
    );
    p.typed_in("again", &guest);
    assert_eq!(p.sent(), "DM guest again\nPING c2\n");
}

#[test]
fn a_guest_keeps_v1_dms() {
    let mut p = Pair::piped("alice");
    p.typed_in("hi", &Target::Dm("bob".into()));
    assert_eq!(p.sent(), "DM bob hi\nPING c1\n");
}

#[test]
fn a_direct_line_whose_sent_was_lost_is_looked_for_before_it_goes_again() {
    let mut cfg = config(Some("alice"), true, true);
    cfg.password = Some("the-password".into());
    let mut p = Pair::with(cfg);
    p.server("OK");
    p.server("END UNREAD");
    p.sent();
    p.server("TOKEN 0123456789abcdef0123456789abcdef");
    p.effects();
    let bob = Target::Dm("bob".into());
    p.server("SAY @bob 7 bob hi alice");
    p.typed_in("landed", &bob);
    p.typed_in("lost", &bob);
    p.sent();
    // The connection drops before either SENT; the session cannot be
    // resumed (a restart, or another node), so the server knows no tag.
    p.lose_connection();
    p.sent();
    p.server("ERR bad-token");
    p.server("ERR bad-token");
    assert!(p.sent().ends_with("LOGIN alice the-password\n"));
    p.server("OK");
    p.server("END UNREAD");
    let sent = p.sent();
    assert!(
        sent.ends_with("HISTORY @bob AFTER 7 500\n") && !sent.contains("SAY"),
        "the conversation is looked at first: {sent:?}"
    );
    p.server("HIST @bob 8 1700000000000 alice landed");
    p.server("END HISTORY @bob");
    assert_eq!(
        p.sent(),
        "READ @bob 8\nSAY @bob/l2 lost\n",
        "only the line not there goes again"
    );
    p.server("SENT @bob 9");
    assert_eq!(p.session.pending(), 0);
}
