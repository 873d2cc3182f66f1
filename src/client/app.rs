//! The terminal app's state without a terminal: one buffer per conversation
//! (lobby, rooms, DMs) with unread counts and scrollback, the input line,
//! and what each key does. Keys arrive as crossterm events, which are plain
//! data, so every rule here is unit-tested with a real [`Session`].

use std::collections::VecDeque;
use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::input::Input;
use super::session::{Delivery, Effect, Kind, Line, Phase, Session, Target, JOIN_HISTORY};
use crate::protocol::reply::MessageId;

/// Lines a buffer keeps from live traffic; older ones are dropped (and can
/// be loaded again with `/history` in a room).
pub const MAX_LINES: usize = 5000;

/// A line as the screen draws it.
#[derive(Debug, Clone)]
pub struct Shown {
    pub line: Line,
    /// Unix ms: the server's for stored messages, arrival for live ones.
    pub at: u64,
    /// Set for the user's own messages in a resilient session.
    pub delivery: Option<Delivery>,
}

/// One conversation.
#[derive(Debug)]
pub struct Buffer {
    pub target: Target,
    pub lines: VecDeque<Shown>,
    /// Messages arrived since the user last looked.
    pub unread: usize,
    /// Among them, one for the user (a DM, or a message naming them).
    pub mentioned: bool,
    /// Lines scrolled up from the bottom; 0 follows new lines.
    pub scroll: usize,
}

impl Buffer {
    fn new(target: Target) -> Buffer {
        Buffer {
            target,
            lines: VecDeque::new(),
            unread: 0,
            mentioned: false,
            scroll: 0,
        }
    }

    /// Adds a line; room messages go in id order and a repeated id is dropped.
    fn add(&mut self, shown: Shown) {
        let Some(id) = shown.line.id else {
            return self.push(shown);
        };
        let mut at = self.lines.len();
        for (i, other) in self.lines.iter().enumerate().rev() {
            match other.line.id {
                Some(o) if o == id => return,
                Some(o) if o > id => at = i,
                Some(_) => break,
                None => {}
            }
        }
        if at == self.lines.len() {
            return self.push(shown);
        }
        // Older than what is shown (scrollback, or a late catch-up line).
        if self.lines.len() < 2 * MAX_LINES {
            self.lines.insert(at, shown);
            if self.scroll > 0 {
                self.scroll += 1;
            }
        }
    }

    fn push(&mut self, shown: Shown) {
        self.lines.push_back(shown);
        if self.scroll > 0 {
            // Keep the view still while the user reads back.
            self.scroll += 1;
        }
        while self.lines.len() > MAX_LINES {
            self.lines.pop_front();
        }
        self.scroll = self.scroll.min(self.lines.len().saturating_sub(1));
    }
}

/// What Tab is cycling through.
#[derive(Debug)]
struct Completion {
    /// The line with the word being completed cut out, and where it was.
    before: String,
    after: String,
    choices: Vec<String>,
    next: usize,
}

/// The whole screen's state.
#[derive(Debug)]
pub struct App {
    pub buffers: Vec<Buffer>,
    pub current: usize,
    pub input: Input,
    /// `host:port`, for the status line.
    pub server: String,
    /// Rows of messages on screen, which PageUp/PageDown move by.
    pub page: usize,
    completion: Option<Completion>,
    /// A DM or a mention came since the screen last rang the bell.
    pub bell: bool,
}

/// What a key asked of the shell beyond the app's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    None,
    /// Quit (Ctrl-C, or Ctrl-D on an empty line).
    Quit,
}

impl App {
    /// An app with the lobby buffer open.
    pub fn new(server: String) -> App {
        App {
            buffers: vec![Buffer::new(Target::Lobby)],
            current: 0,
            input: Input::default(),
            server,
            page: 10,
            completion: None,
            bell: false,
        }
    }

    /// The buffer being looked at.
    pub fn here(&self) -> &Buffer {
        &self.buffers[self.current]
    }

    fn find(&self, target: &Target) -> Option<usize> {
        self.buffers.iter().position(|b| &b.target == target)
    }

    fn open(&mut self, target: Target) -> usize {
        match self.find(&target) {
            Some(i) => i,
            None => {
                self.buffers.push(Buffer::new(target));
                self.buffers.len() - 1
            }
        }
    }

    /// Looks at buffer `i`, which counts as reading it.
    pub fn switch(&mut self, i: usize) {
        if i < self.buffers.len() {
            self.current = i;
            let b = &mut self.buffers[i];
            b.unread = 0;
            b.mentioned = false;
        }
    }

    /// Applies one effect for the screen; returns it if it is the shell's.
    pub fn apply(&mut self, effect: Effect, me: &str, now_ms: u64) -> Option<Effect> {
        match effect {
            Effect::Show(target, line) => {
                let i = self.open(target);
                let counts = matches!(line.kind, Kind::Chat) && !line.history;
                let calls = counts
                    && (matches!(self.buffers[i].target, Target::Dm(_))
                        || mentions(&line.text, me));
                // The terminal's bell (or its urgency hint) for a DM or a
                // mention: the one thing worth interrupting someone for.
                self.bell |= calls;
                if i != self.current && counts {
                    let b = &mut self.buffers[i];
                    b.unread += 1;
                    b.mentioned |= calls;
                }
                let delivery = line.local.map(|_| Delivery::Pending);
                let at = line.at.unwrap_or(now_ms);
                self.buffers[i].add(Shown { line, at, delivery });
            }
            Effect::ShowAll(line) => {
                for b in &mut self.buffers {
                    b.add(Shown {
                        line: line.clone(),
                        at: now_ms,
                        delivery: None,
                    });
                }
            }
            Effect::Delivery { local, state, id } => self.delivered(local, state, id),
            Effect::Joined { room, focus } => {
                let i = self.open(room);
                if focus {
                    self.switch(i);
                }
            }
            Effect::Parted(room) => {
                if let Some(i) = self.find(&room) {
                    self.buffers.remove(i);
                    if self.current >= i {
                        self.current = self.current.saturating_sub(1);
                    }
                    self.switch(self.current);
                }
            }
            other => return Some(other),
        }
        None
    }

    fn delivered(&mut self, local: u64, state: Delivery, id: Option<MessageId>) {
        for b in &mut self.buffers {
            if let Some(s) = b
                .lines
                .iter_mut()
                .rev()
                .find(|s| s.line.local == Some(local))
            {
                s.delivery = Some(state);
                s.line.id = s.line.id.or(id);
                return;
            }
        }
    }

    /// One key press.
    pub fn on_key(&mut self, key: KeyEvent, session: &mut Session, now: Instant) -> Request {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if key.code != KeyCode::Tab {
            self.completion = None;
        }
        // Ctrl-J is a line feed: what Enter sends to a terminal in cooked mode.
        if key.code == KeyCode::Enter || (ctrl && key.code == KeyCode::Char('j')) {
            let line = if session.phase() == Phase::AskPassword {
                self.input.take_secret()
            } else {
                self.input.take()
            };
            let here = self.here().target.clone();
            self.buffers[self.current].scroll = 0;
            session.handle_input(&line, &here, now);
            return Request::None;
        }
        let input = &mut self.input;
        match key.code {
            KeyCode::Char('c') if ctrl => return Request::Quit,
            KeyCode::Char('d') if ctrl && input.text().is_empty() => return Request::Quit,
            KeyCode::Char('d') if ctrl => input.delete(),
            KeyCode::Char('a') if ctrl => input.home(),
            KeyCode::Char('e') if ctrl => input.end(),
            KeyCode::Char('b') if ctrl => input.left(),
            KeyCode::Char('f') if ctrl => input.right(),
            KeyCode::Char('b') if alt => input.word_left(),
            KeyCode::Char('f') if alt => input.word_right(),
            KeyCode::Char('w') if ctrl => input.delete_word(),
            KeyCode::Char('u') if ctrl => input.delete_to_start(),
            KeyCode::Char('n') if ctrl => self.switch((self.current + 1) % self.buffers.len()),
            KeyCode::Char('p') if ctrl => {
                let n = self.buffers.len();
                self.switch((self.current + n - 1) % n)
            }
            KeyCode::Char(c @ '1'..='9') if alt => self.switch(c as usize - '1' as usize),
            KeyCode::Char(_) if ctrl || alt => {}
            KeyCode::Char(c) => input.insert(c.encode_utf8(&mut [0; 4])),
            KeyCode::Backspace if ctrl || alt => input.delete_word(),
            KeyCode::Backspace => input.backspace(),
            KeyCode::Delete => input.delete(),
            KeyCode::Left if ctrl || alt => input.word_left(),
            KeyCode::Right if ctrl || alt => input.word_right(),
            KeyCode::Left => input.left(),
            KeyCode::Right => input.right(),
            KeyCode::Home => input.home(),
            KeyCode::End => input.end(),
            KeyCode::Up => input.older(),
            KeyCode::Down => input.newer(),
            KeyCode::Tab => self.complete(session),
            KeyCode::PageUp => self.page_up(session, now),
            KeyCode::PageDown => {
                let b = &mut self.buffers[self.current];
                b.scroll = b.scroll.saturating_sub(self.page.max(1));
            }
            _ => {}
        }
        Request::None
    }

    /// A bracketed paste: every finished line is sent, the rest stays typed.
    pub fn on_paste(&mut self, text: &str, session: &mut Session, now: Instant) {
        self.completion = None;
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let mut lines = text.split('\n');
        let Some(first) = lines.next() else { return };
        self.input.insert(first);
        let mut finished = Vec::new();
        for next in lines {
            finished.push(self.input.take());
            self.input.insert(next);
        }
        let here = self.here().target.clone();
        session.handle_paste(&finished, &here, now);
    }

    fn page_up(&mut self, session: &mut Session, now: Instant) {
        let page = self.page.max(1);
        let b = &mut self.buffers[self.current];
        // Scrolled as far as a full screen of lines goes.
        let top = b.lines.len().saturating_sub(page);
        if b.scroll >= top {
            // At the top: load older messages of a room.
            if let Target::Room(room) = &b.target {
                if b.lines.len() < 2 * MAX_LINES {
                    let room = room.clone();
                    session.older(&room, JOIN_HISTORY, now);
                }
            }
        }
        b.scroll = (b.scroll + page).min(top);
    }

    /// Tab: completes the word before the cursor from names and rooms;
    /// again cycles through the choices.
    fn complete(&mut self, session: &Session) {
        if self.completion.is_none() {
            let text = self.input.text();
            let cursor = self.input.cursor();
            let start = text[..cursor]
                .rfind(char::is_whitespace)
                .map_or(0, |i| i + 1);
            let word = &text[start..cursor];
            if word.is_empty() {
                return;
            }
            let mut pool: Vec<String> = session.rooms().map(str::to_string).collect();
            pool.extend(session.online().iter().cloned());
            if let Target::Room(room) = &self.here().target {
                pool.extend(session.members(room).iter().cloned());
            }
            for b in &self.buffers {
                if let Target::Dm(name) = &b.target {
                    pool.push(name.clone());
                }
            }
            let lower = word.to_lowercase();
            let mut choices: Vec<String> = pool
                .into_iter()
                .filter(|c| c.to_lowercase().starts_with(&lower) && c != session.name())
                .collect();
            choices.sort_by_key(|c| c.to_lowercase());
            choices.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
            if choices.is_empty() {
                return;
            }
            self.completion = Some(Completion {
                before: text[..start].to_string(),
                after: text[cursor..].to_string(),
                choices,
                next: 0,
            });
        }
        let Some(c) = &mut self.completion else {
            return;
        };
        let choice = &c.choices[c.next % c.choices.len()];
        c.next += 1;
        // A name first on the line is addressed: "bob: ".
        let suffix = match () {
            _ if c.before.is_empty() && !choice.starts_with('#') => ": ",
            _ if c.after.starts_with(' ') => "",
            _ => " ",
        };
        let line = format!("{}{choice}{suffix}{}", c.before, c.after);
        let cursor = c.before.len() + choice.len() + suffix.len();
        self.input.set(&line, cursor);
    }

    /// What the status line says about the buffer: its members or online count.
    pub fn users_here(&self, session: &Session) -> usize {
        match &self.here().target {
            Target::Lobby => session.online().len(),
            Target::Room(room) => session.members(room).len(),
            // The one you write to, and you.
            Target::Dm(_) => 2,
        }
    }
}

/// True when `text` names `me` as a word.
fn mentions(text: &str, me: &str) -> bool {
    !me.is_empty()
        && text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .any(|w| w.eq_ignore_ascii_case(me))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::session::{Config, HEARTBEAT};
    use crate::flood::FloodPolicy;
    use ratatui::crossterm::event::KeyEvent;

    /// An app with a logged-in session and a fake clock.
    struct Rig {
        app: App,
        session: Session,
        now: Instant,
    }

    impl Rig {
        /// Logged in as alice, with bob and Bella online.
        fn new() -> Rig {
            let mut rig = Rig::connected();
            for line in ["OK", "USER alice", "USER bob", "USER Bella"] {
                rig.server(line);
            }
            let seq = rig.sent().lines().last().unwrap().to_string();
            rig.server(&seq.replace("PING", "PONG"));
            rig
        }

        /// Connected as alice, `LOGIN` sent and not answered.
        fn connected() -> Rig {
            let now = Instant::now();
            let cfg = Config {
                name: Some("alice".into()),
                password: None,
                register: false,
                interactive: true,
                resilient: true,
                pace: FloodPolicy::OFF,
                heartbeat: HEARTBEAT,
                room: None,
                seed: 1,
                wait: std::time::Duration::from_secs(120),
            };
            let mut session = Session::new(cfg, now);
            session.handle_connected(now);
            Rig {
                app: App::new("test:7007".into()),
                session,
                now,
            }
        }

        fn server(&mut self, line: &str) {
            self.session.handle_line(line, self.now);
            self.apply();
        }

        fn apply(&mut self) {
            while let Some(e) = self.session.poll_effect() {
                self.app.apply(e, "alice", 1_700_000_000_000);
            }
        }

        fn sent(&mut self) -> String {
            String::from_utf8(std::mem::take(self.session.to_server())).unwrap()
        }

        fn key(&mut self, code: KeyCode, modifiers: KeyModifiers) -> Request {
            let r = self
                .app
                .on_key(KeyEvent::new(code, modifiers), &mut self.session, self.now);
            self.apply();
            r
        }

        fn typed(&mut self, text: &str) {
            for c in text.chars() {
                self.key(KeyCode::Char(c), KeyModifiers::NONE);
            }
            self.key(KeyCode::Enter, KeyModifiers::NONE);
        }

        fn titles(&self) -> Vec<(String, usize)> {
            self.app
                .buffers
                .iter()
                .map(|b| (b.target.title().to_string(), b.unread))
                .collect()
        }

        fn texts(&self, i: usize) -> Vec<String> {
            self.app.buffers[i]
                .lines
                .iter()
                .map(|s| s.line.text.clone())
                .collect()
        }
    }

    #[test]
    fn a_typed_password_is_not_kept_for_up() {
        let mut r = Rig::connected();
        r.server("ERR password-required");
        r.typed("hunter2-secret");
        assert_eq!(r.sent(), "LOGIN alice\nLOGIN alice hunter2-secret\n");
        r.key(KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(r.app.input.text(), "", "nothing to recall");
        assert!(!r.texts(0).iter().any(|t| t.contains("hunter2")));
    }

    #[test]
    fn buffers_open_for_rooms_and_dms_and_count_what_was_missed() {
        let mut r = Rig::new();
        r.typed("/join #rust");
        r.server("JOINED #rust 2");
        assert_eq!(r.app.current, 1, "a room the user joined is shown");
        r.server("DM bob psst");
        r.server("SAY #rust 5 bob not for alice");
        r.server("SAY #rust 6 bob ALICE look");
        assert_eq!(
            r.titles(),
            [("lobby".into(), 0), ("#rust".into(), 0), ("bob".into(), 1)]
        );
        assert!(r.app.buffers[2].mentioned, "a DM is for the user");
        r.key(KeyCode::Char('1'), KeyModifiers::ALT);
        r.server("SAY #rust 7 bob alice?");
        assert_eq!(r.app.buffers[1].unread, 1);
        assert!(r.app.buffers[1].mentioned, "named as a word, any case");
        r.key(KeyCode::Char('n'), KeyModifiers::CONTROL);
        assert_eq!(
            (r.app.current, r.app.buffers[1].unread),
            (1, 0),
            "looking reads it"
        );
        r.key(KeyCode::Char('p'), KeyModifiers::CONTROL);
        r.key(KeyCode::Char('p'), KeyModifiers::CONTROL);
        assert_eq!(r.app.current, 2, "Ctrl-P wraps around");
        r.typed("hi back");
        assert!(r.sent().ends_with("DM bob hi back\nPING c1\n"));
        r.typed("/part #rust");
        r.server("PARTED #rust");
        assert_eq!(r.titles(), [("lobby".into(), 0), ("bob".into(), 0)]);
        assert_eq!(r.app.current, 1, "still looking at bob");
    }

    #[test]
    fn a_dm_or_a_mention_rings_the_bell_and_nothing_else_does() {
        let mut r = Rig::new();
        r.typed("/join #rust");
        r.server("JOINED #rust 2");
        r.server("END HISTORY #rust");
        r.app.bell = false;
        r.server("SAY #rust 5 bob just talk");
        r.server("MSG bob lobby talk");
        assert!(!r.app.bell);
        r.server("SAY #rust 6 bob ping Alice, review?");
        assert!(std::mem::take(&mut r.app.bell), "a mention");
        r.server("DM bob psst");
        assert!(std::mem::take(&mut r.app.bell), "a DM");
        r.typed("/dm bob back");
        assert!(!r.app.bell, "not for your own lines");
    }

    #[test]
    fn the_start_of_a_rooms_history_is_marked_above_its_first_line() {
        let mut r = Rig::new();
        r.typed("/join #rust");
        r.server("JOINED #rust 2");
        r.server("HIST #rust 3 1700000000000 bob first");
        r.server("END HISTORY #rust");
        r.server("SAY #rust 4 bob later");
        r.app.current = 1;
        r.typed("/history");
        r.typed("/history");
        let texts = r.texts(1);
        let said: Vec<&str> = texts.iter().map(String::as_str).skip(1).collect();
        assert_eq!(said, ["start of the room's history", "first", "later"]);
    }

    #[test]
    fn room_lines_stay_in_id_order_without_repeats() {
        let mut r = Rig::new();
        r.typed("/join #rust");
        r.server("JOINED #rust 2");
        r.server("SAY #rust 10 bob ten");
        // Recent history answered after a live line: in order, ten only once.
        for (id, text) in [(8, "eight"), (9, "nine"), (10, "ten")] {
            r.server(&format!("HIST #rust {id} 1700000000000 bob {text}"));
        }
        r.server("END HISTORY #rust");
        let texts = r.texts(1);
        let said: Vec<&str> = texts.iter().map(String::as_str).skip(1).collect();
        assert_eq!(said, ["eight", "nine", "ten"]);
    }

    #[test]
    fn own_lines_show_pending_until_delivered() {
        let mut r = Rig::new();
        r.typed("/join #rust");
        r.server("JOINED #rust 2");
        r.typed("hello room");
        let mine = |r: &Rig| r.app.buffers[1].lines.back().unwrap().clone();
        assert_eq!(mine(&r).delivery, Some(Delivery::Pending));
        r.server("SENT #rust 12");
        assert_eq!(mine(&r).delivery, Some(Delivery::Delivered));
        assert_eq!(mine(&r).line.id, Some(12));
        // Its own copy from history later is the same line, not a second one.
        r.server("HIST #rust 12 1700000000000 alice hello room");
        assert_eq!(r.texts(1).iter().filter(|t| *t == "hello room").count(), 1);
    }

    #[test]
    fn a_paste_sends_each_finished_line_and_keeps_the_rest_typed() {
        let mut r = Rig::new();
        r.sent();
        r.app.input.insert("first: ");
        r.app.on_paste("one\r\ntwo\nthree", &mut r.session, r.now);
        assert_eq!(r.sent(), "MSG first: one\nMSG two\nPING c1\n");
        assert_eq!(r.app.input.text(), "three");
    }

    #[test]
    fn tab_completes_names_then_rooms_and_cycles() {
        let mut r = Rig::new();
        r.typed("/join #rust");
        r.server("JOINED #rust 2");
        r.app.input.insert("b");
        r.key(KeyCode::Tab, KeyModifiers::NONE);
        assert_eq!(
            r.app.input.text(),
            "Bella: ",
            "first on the line: addressed"
        );
        r.key(KeyCode::Tab, KeyModifiers::NONE);
        assert_eq!(r.app.input.text(), "bob: ");
        r.key(KeyCode::Tab, KeyModifiers::NONE);
        assert_eq!(r.app.input.text(), "Bella: ", "cycles");
        r.key(KeyCode::End, KeyModifiers::NONE);
        r.app.input.set("see #r and", 6);
        r.key(KeyCode::Tab, KeyModifiers::NONE);
        assert_eq!(r.app.input.text(), "see #rust and");
        r.key(KeyCode::End, KeyModifiers::NONE);
        r.app.input.set("al", 2);
        r.key(KeyCode::Tab, KeyModifiers::NONE);
        assert_eq!(r.app.input.text(), "al", "not the user's own name");
    }

    #[test]
    fn page_up_at_the_top_of_a_room_loads_older_messages() {
        let mut r = Rig::new();
        r.app.page = 5;
        r.typed("/join #rust");
        r.server("JOINED #rust 2");
        r.sent();
        for id in 51..=100 {
            r.server(&format!("HIST #rust {id} 1700000000000 bob m{id}"));
        }
        r.server("END HISTORY #rust");
        let mut asked = String::new();
        for _ in 0..20 {
            r.key(KeyCode::PageUp, KeyModifiers::NONE);
            asked.push_str(&r.sent());
        }
        assert_eq!(
            asked, "HISTORY #rust BEFORE 51 50\n",
            "once, until it answers"
        );
        assert!(r.app.here().scroll > 0);
        r.key(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(r.app.here().scroll, 0, "sending returns to the newest line");
        assert_eq!(
            r.key(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Request::Quit
        );
    }
}
