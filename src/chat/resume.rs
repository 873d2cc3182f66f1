//! Resume tokens and the sessions that ended recently enough to be taken
//! back with `RESUME`.
//!
//! A name's token lives with its user while logged in and with its ended
//! session afterwards. Ended sessions expire after the resume window, in
//! the order they ended, and their number is capped, so a reconnect loop
//! cannot grow this registry without limit.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::name::{Folded, NameKey};

/// A resume token: 128 bits from a [`TokenSource`] (in a server, the
/// operating system's CSPRNG).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Token([u8; 16]);

/// Where the chat's tokens come from. The chat makes no system call, so
/// the shell hands it one (as quinn-proto is handed its RNG); tests hand
/// it a predictable one.
pub trait TokenSource: Send + std::fmt::Debug {
    /// A fresh token, or `None` if there is no randomness to give.
    fn next_token(&mut self) -> Option<Token>;
}

/// Tokens from the operating system's CSPRNG: the server's source.
#[derive(Debug, Default)]
pub struct OsTokens;

impl TokenSource for OsTokens {
    fn next_token(&mut self) -> Option<Token> {
        let mut bytes = [0; 16];
        getrandom::fill(&mut bytes).ok()?;
        Some(Token(bytes))
    }
}

/// Tokens 1, 2, 3, ... in their last bytes: predictable, so for tests
/// and fuzzing only, never for a server.
#[derive(Debug, Default)]
pub struct CountingTokens(u128);

impl TokenSource for CountingTokens {
    fn next_token(&mut self) -> Option<Token> {
        self.0 += 1;
        Some(Token(self.0.to_be_bytes()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret: never in a log line.
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads the 32 lower-case hex characters a client sends back.
    pub fn parse(hex: &str) -> Option<Token> {
        let hex = hex.as_bytes();
        if hex.len() != 32 {
            return None;
        }
        let mut bytes = [0; 16];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Some(Token(bytes))
    }

    /// The wire form: 32 lower-case hex characters.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Compares in time that does not depend on where the tokens differ,
    /// so a guesser learns nothing from how long a wrong one took.
    pub fn matches(&self, other: &Token) -> bool {
        same(&self.0, &other.0)
    }

    /// What the store keeps instead of the token: its SHA-256. A copy of
    /// the database then gives nobody a session.
    pub fn hash(&self) -> TokenHash {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let mut hash = [0; 32];
        hash.copy_from_slice(digest.as_ref());
        TokenHash(hash)
    }
}

/// A token's SHA-256: a stored session's proof.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl TokenHash {
    /// True when `token` hashes to this, in time that does not depend on
    /// where they differ.
    pub fn proves(&self, token: &Token) -> bool {
        same(&self.0, &token.hash().0)
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0 && a.len() == b.len()
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Tags a session's most recent `SAY`s carried, most this many.
pub const MAX_TAGS: usize = 64;

/// The tags of a session's recent tagged `SAY`s, each with the room (its
/// spelling) and the id the message got, oldest first: a `SAY` resent
/// with a tag found here was said already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(VecDeque<(Box<str>, Box<str>, u64)>);

impl Tags {
    /// The room and id of the message tagged `tag`, if it was said.
    pub fn find(&self, tag: &str) -> Option<(&str, u64)> {
        self.0
            .iter()
            .find(|(t, _, _)| **t == *tag)
            .map(|(_, room, id)| (&**room, *id))
    }

    /// Remembers that `tag` was said in `room` as message `id`, forgetting
    /// the oldest past [`MAX_TAGS`].
    pub fn push(&mut self, tag: &str, room: &str, id: u64) {
        if self.0.len() == MAX_TAGS {
            self.0.pop_front();
        }
        self.0.push_back((tag.into(), room.into(), id));
    }

    /// The form the store keeps: `tag:room:id`, space-separated (tags and
    /// rooms hold neither).
    pub fn encode(&self) -> String {
        let items: Vec<String> = self
            .0
            .iter()
            .map(|(tag, room, id)| format!("{tag}:{room}:{id}"))
            .collect();
        items.join(" ")
    }

    /// Reads what [`Tags::encode`] wrote, skipping anything malformed.
    pub fn decode(text: &str) -> Tags {
        let mut tags = Tags::default();
        for item in text.split_whitespace() {
            let mut parts = item.splitn(3, ':');
            if let (Some(tag), Some(room), Some(Ok(id))) =
                (parts.next(), parts.next(), parts.next().map(str::parse))
            {
                tags.push(tag, room, id);
            }
        }
        tags
    }
}

/// A session that ended with a token: what `RESUME` gives back.
#[derive(Debug)]
pub struct Ended {
    pub name: Box<str>,
    pub token: Token,
    /// The rooms it was in, by spelling.
    pub rooms: Vec<Box<str>>,
    /// Its tagged `SAY`s.
    pub tags: Tags,
    until: Instant,
}

impl Ended {
    /// A session another node handed over, to be resumed here at once.
    pub fn handed_over(name: &str, token: Token, rooms: Vec<Box<str>>, now: Instant) -> Ended {
        Ended {
            name: name.into(),
            token,
            rooms,
            tags: Tags::default(),
            until: now,
        }
    }
}

/// Sessions that ended within the resume window, by name.
#[derive(Debug)]
pub struct EndedSessions {
    by_name: HashMap<NameKey, Ended>,
    /// (expiry, name) in the order sessions ended; an entry whose expiry
    /// no longer matches its name's session is stale and skipped.
    order: VecDeque<(Instant, NameKey)>,
    window: Duration,
    cap: usize,
}

impl EndedSessions {
    /// Keeps at most `cap` sessions, each for `window`.
    pub fn new(window: Duration, cap: usize) -> EndedSessions {
        EndedSessions {
            by_name: HashMap::new(),
            order: VecDeque::new(),
            window,
            cap,
        }
    }

    /// Number of sessions that can still be resumed.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no session can be resumed.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Remembers a session that ended at `now`.
    pub fn record(
        &mut self,
        name: &str,
        token: Token,
        (rooms, tags): (Vec<Box<str>>, Tags),
        now: Instant,
    ) {
        if self.window.is_zero() || self.cap == 0 {
            return;
        }
        while self.by_name.len() >= self.cap || self.order.len() >= 2 * self.cap {
            self.pop_oldest();
        }
        let until = now + self.window;
        self.order.push_back((until, NameKey::new(name)));
        let ended = Ended {
            name: name.into(),
            token,
            rooms,
            tags,
            until,
        };
        self.by_name.insert(NameKey::new(name), ended);
    }

    /// Takes the session of `name` back if `token` is its token and it has
    /// not expired at `now`. A wrong token leaves the session in place.
    pub fn take(&mut self, name: &str, token: &Token, now: Instant) -> Option<Ended> {
        let ended = self.by_name.get(Folded::new(name))?;
        if now >= ended.until || !ended.token.matches(token) {
            return None;
        }
        self.by_name.remove(Folded::new(name))
    }

    /// Remembers, in the ended session of `name` if there is one, that it
    /// said `tag` in `room` as message `id`.
    pub fn tag(&mut self, name: &str, tag: &str, room: &str, id: u64) {
        if let Some(ended) = self.by_name.get_mut(Folded::new(name)) {
            ended.tags.push(tag, room, id);
        }
    }

    /// Drops the session of `name`: the name was taken by a new login.
    /// Returns whether there was one.
    pub fn forget(&mut self, name: &str) -> bool {
        self.by_name.remove(Folded::new(name)).is_some()
    }

    /// Drops every session whose window has passed at `now`.
    pub fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(until, _)| *until <= now) {
            self.pop_oldest();
        }
    }

    /// When the next session expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(until, _)| *until)
    }

    fn pop_oldest(&mut self) {
        let Some((until, name)) = self.order.pop_front() else {
            return;
        };
        if self.by_name.get(&name).is_some_and(|e| e.until == until) {
            self.by_name.remove(&name);
        }
    }
}

/// Sessions a restart restored from the store: held by name (the name
/// taken, the room seats kept) until `RESUME` takes them back or their
/// resume window passes, as a ghost is until its connection is purged.
#[derive(Debug, Default)]
pub struct HeldSessions {
    by_name: HashMap<NameKey, (TokenHash, Instant, Tags)>,
    /// (expiry, name), soonest first.
    order: VecDeque<(Instant, NameKey)>,
}

impl HeldSessions {
    /// Holds each of `sessions` (name, proof, expiry, tags).
    pub fn new(mut sessions: Vec<(Box<str>, TokenHash, Instant, Tags)>) -> HeldSessions {
        sessions.sort_by_key(|(_, _, until, _)| *until);
        let mut held = HeldSessions::default();
        for (name, hash, until, tags) in sessions {
            held.order.push_back((until, NameKey::new(&name)));
            held.by_name
                .insert(NameKey::new(&name), (hash, until, tags));
        }
        held
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Lets go of `name`'s session if `token` proves it, and it has not
    /// expired at `now`; returns its tags if so. A wrong token leaves it held.
    pub fn take(&mut self, name: &str, token: &Token, now: Instant) -> Option<Tags> {
        let (hash, until, _) = self.by_name.get(Folded::new(name))?;
        if now >= *until || !hash.proves(token) {
            return None;
        }
        self.by_name
            .remove(Folded::new(name))
            .map(|(_, _, tags)| tags)
    }

    /// Lets go of `name`'s session, whatever its token; returns its
    /// spelling if one was held.
    pub fn drop_held(&mut self, name: &str) -> Option<Box<str>> {
        let (key, _) = self.by_name.remove_entry(Folded::new(name))?;
        Some(key.as_str().into())
    }

    /// True if a session of `name` is held.
    pub fn holds(&self, name: &str) -> bool {
        self.by_name.contains_key(Folded::new(name))
    }

    /// The names held, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(NameKey::as_str)
    }

    /// Lets go of every session whose window has passed at `now`; returns
    /// their names, to depart.
    pub fn expire(&mut self, now: Instant) -> Vec<Box<str>> {
        let mut gone = Vec::new();
        while self.order.front().is_some_and(|(until, _)| *until <= now) {
            let Some((_, name)) = self.order.pop_front() else {
                break;
            };
            if self.by_name.remove(&name).is_some() {
                gone.push(name.as_str().into());
            }
        }
        gone
    }

    /// When the next held session expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order
            .iter()
            .find(|(_, name)| self.by_name.contains_key(name))
            .map(|(until, _)| *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_parse_back() {
        let a = OsTokens.next_token().unwrap();
        let b = OsTokens.next_token().unwrap();
        assert!(!a.matches(&b));
        let hex = a.to_hex();
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        assert!(Token::parse(&hex).unwrap().matches(&a));
        assert_eq!(Token::parse(&"A".repeat(32)), None, "lower case only");
        assert_eq!(Token::parse(&hex[1..]), None);
        assert_eq!(Token::parse(&format!("{hex}0")), None);
        assert_eq!(Token::parse("zz000000000000000000000000000000"), None);
        assert_eq!(format!("{a:?}"), "Token(..)");
    }

    #[test]
    fn sessions_expire_in_order_and_wrong_tokens_keep_them() {
        let t0 = Instant::now();
        let mut s = EndedSessions::new(Duration::from_secs(10), 100);
        let (ta, tb) = (
            OsTokens.next_token().unwrap(),
            OsTokens.next_token().unwrap(),
        );
        s.record("Alice", ta, (vec!["#x".into()], Tags::default()), t0);
        s.record(
            "bob",
            tb,
            (vec![], Tags::default()),
            t0 + Duration::from_secs(5),
        );
        assert!(s.take("alice", &tb, t0).is_none(), "wrong token");
        assert_eq!(s.len(), 2);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(10)));
        s.expire(t0 + Duration::from_secs(10));
        assert_eq!(s.len(), 1, "alice expired");
        assert!(s.take("alice", &ta, t0).is_none());
        let bob = s.take("BOB", &tb, t0 + Duration::from_secs(14)).unwrap();
        assert_eq!(&*bob.name, "bob");
        assert!(s.is_empty());
    }

    #[test]
    fn held_sessions_are_proved_by_the_token_and_expire_in_order() {
        let t0 = Instant::now();
        let (ta, tb) = (
            OsTokens.next_token().unwrap(),
            OsTokens.next_token().unwrap(),
        );
        let mut held = HeldSessions::new(vec![
            (
                "bob".into(),
                tb.hash(),
                t0 + Duration::from_secs(20),
                Tags::default(),
            ),
            (
                "Alice".into(),
                ta.hash(),
                t0 + Duration::from_secs(10),
                Tags::decode("t1:#x:7"),
            ),
        ]);
        assert_eq!(held.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(held.take("alice", &tb, t0), None, "wrong token");
        let tags = held.take("ALICE", &ta, t0).expect("the token proves it");
        assert_eq!(tags.find("t1"), Some(("#x", 7)));
        assert_eq!(held.take("alice", &ta, t0), None, "taken once");
        assert_eq!(held.next_deadline(), Some(t0 + Duration::from_secs(20)));
        assert_eq!(
            held.expire(t0 + Duration::from_secs(19)),
            Vec::<Box<str>>::new()
        );
        assert_eq!(
            held.expire(t0 + Duration::from_secs(20)),
            vec![Box::from("bob")]
        );
        assert!(held.is_empty());
        assert!(!format!("{:?}", ta.hash()).contains(&ta.to_hex()[..8]));
    }

    #[test]
    fn tags_remember_the_latest_and_survive_their_stored_form() {
        let mut tags = Tags::default();
        for i in 0..MAX_TAGS as u64 + 2 {
            tags.push(&format!("t{i}"), "#r", i + 100);
        }
        assert_eq!(tags.find("t0"), None, "the oldest forgotten");
        assert_eq!(tags.find("t2"), Some(("#r", 102)));
        let stored = tags.encode();
        assert_eq!(Tags::decode(&stored), tags);
        assert_eq!(
            Tags::decode("a:#r:1 junk b:#s:x c:#t:3").encode(),
            "a:#r:1 c:#t:3"
        );
    }

    #[test]
    fn the_cap_drops_the_oldest_and_stale_entries_are_skipped() {
        let t0 = Instant::now();
        let mut s = EndedSessions::new(Duration::from_secs(10), 2);
        let t = OsTokens.next_token().unwrap();
        for (i, name) in ["a", "b", "a", "c"].into_iter().enumerate() {
            s.record(
                name,
                t,
                (vec![], Tags::default()),
                t0 + Duration::from_secs(i as u64),
            );
        }
        assert_eq!(s.len(), 2);
        assert!(s.take("c", &t, t0).is_some());
        assert!(s.take("a", &t, t0).is_some(), "a's later session survived");
        assert!(s.take("b", &t, t0).is_none(), "b was the oldest");
        s.record("d", t, (vec![], Tags::default()), t0);
        s.forget("D");
        assert!(s.is_empty());
        let mut off = EndedSessions::new(Duration::ZERO, 10);
        off.record("a", t, (vec![], Tags::default()), t0);
        assert!(off.is_empty(), "a window of 0 keeps nothing");
    }
}
