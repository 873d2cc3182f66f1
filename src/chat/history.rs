//! Room history as the chat keeps it: what it asks of the message store,
//! what the store answers, and the in-memory ring of recent committed
//! messages that answers most `HISTORY` requests without leaving the loop.
//!
//! Only a room with members has a [`RoomLog`]: it is opened when the room
//! is created in memory and closed, ring and all, when its last member
//! leaves, so a room nobody is in costs no memory and a restart loads
//! none. The rings of all open logs are held under one byte budget by
//! evicting the oldest message of the whole server, so a busy room can
//! push a quiet one's messages out. Invariant: a log holds every committed
//! message of its room whose id is greater than its `floor`; a floor of 0
//! means the log holds every message the room ever stored.

use std::collections::VecDeque;
use std::ops::Range;

use slab::Slab;

use super::resume::{Tags, TokenHash};
use crate::auth::Secret;
use crate::protocol::reply::MessageId;
use crate::protocol::{Anchor, HistoryQuery};

/// One stored room message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ms: u64,
    pub from: Box<str>,
    pub text: Box<str>,
}

impl Message {
    /// Heap and bookkeeping bytes the ring counts for this message.
    fn weight(&self) -> usize {
        const OVERHEAD: usize = 96;
        self.from.len() + self.text.len() + OVERHEAD
    }
}

/// Work for the message store, in the order the chat asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Commit a message of `room` (its spelling).
    Append { room: Box<str>, message: Message },
    /// Read the messages of `room` that `query` names, answered under `ticket`.
    Fetch {
        ticket: u64,
        room: Box<str>,
        query: HistoryQuery,
    },
    /// Say how `room` was first spelled and its last stored id, answered
    /// under `ticket`: a room is looked up when it is created in memory.
    Lookup { ticket: u64, room: Box<str> },
    /// Keep `name`'s session for `RESUME` across a restart: its token's
    /// hash, its rooms (spellings, space-separated), and when it ended in
    /// Unix milliseconds (`None` while it is live).
    SaveSession {
        name: Box<str>,
        hash: TokenHash,
        rooms: Box<str>,
        /// Its tagged `SAY`s, as [`Tags::encode`] writes them.
        tags: Box<str>,
        ended_ms: Option<u64>,
    },
    /// `name`'s stored session, if any, is over.
    ForgetSession { name: Box<str> },
    /// `name` has read its conversation with `peer` up to message `id`
    /// (a mark only moves forward).
    Read {
        name: Box<str>,
        peer: Box<str>,
        id: MessageId,
    },
    /// `name` becomes (`member`) or stops being a member of the
    /// invite-only room `room`; `owner` for the one who made it.
    Member {
        room: Box<str>,
        name: Box<str>,
        owner: bool,
        member: bool,
    },
    /// Which of `name`'s conversations hold messages from the other side
    /// it has not read, answered under `ticket`.
    Unread { ticket: u64, name: Box<str> },
    /// Create `name`'s account, or change its password: `hash` is the PHC
    /// string. Answered under `ticket` once committed (or not).
    SaveAccount {
        ticket: u64,
        name: Box<str>,
        hash: Secret,
    },
    /// A cluster node applied its log's entry `seq` (an account, a read
    /// mark or a membership): a restart replays those only past it.
    Applied { seq: MessageId },
}

/// A session the store kept, as a restart restores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSession {
    pub name: Box<str>,
    pub hash: TokenHash,
    /// Its rooms, each by the spelling it was stored under and the id of
    /// its newest stored message.
    pub rooms: Vec<(Box<str>, MessageId)>,
    /// When it ended, in Unix milliseconds; `None` if it was live when the
    /// server stopped.
    pub ended_ms: Option<u64>,
    /// Its tagged `SAY`s.
    pub tags: Tags,
}

/// What the store holds of one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The room was stored with this spelling; `last` is the id of its
    /// newest stored message (0 if none is left).
    Stored { spelling: Box<str>, last: MessageId },
    /// The store never held the room (or evicted it).
    Unknown,
    /// The read failed.
    Failed,
}

/// What the store reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every message up to `through` is committed; ids up to `reserved`
    /// may be handed out (the store persisted that mark, so ids are never
    /// reused after a crash).
    Committed {
        through: MessageId,
        reserved: MessageId,
    },
    /// The messages up to `through` not yet committed could not be.
    Failed { through: MessageId },
    /// The answer to a `Fetch`, oldest first; `None` if the read failed.
    Fetched {
        ticket: u64,
        rows: Option<Vec<Message>>,
    },
    /// The answer to a `Lookup`.
    Looked { ticket: u64, found: Found },
    /// The answer to a `SaveAccount`: whether it is committed.
    AccountSaved { ticket: u64, saved: bool },
    /// The answer to an `Unread`: each conversation with unread messages,
    /// its peer's name, how many, and the read mark they follow; `None` if
    /// the read failed.
    Unread {
        ticket: u64,
        conversations: Option<Vec<(Box<str>, u64, MessageId)>>,
    },
}

/// The key a conversation between `a` and `b` is stored under, the same
/// from both sides: `@a@b`, the lower-cased names in order. A room name
/// starts with `#`, so no room can be one.
pub fn conversation(a: &str, b: &str) -> String {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    if a <= b {
        format!("@{a}@{b}")
    } else {
        format!("@{b}@{a}")
    }
}

/// The other side of conversation `key` for the lower-cased `name`, if
/// `name` is in it.
pub fn peer_in<'a>(key: &'a str, name: &str) -> Option<&'a str> {
    let (a, b) = key.strip_prefix('@')?.split_once('@')?;
    if a == name {
        Some(b)
    } else if b == name {
        Some(a)
    } else {
        None
    }
}

/// What the store found when it opened: the state the chat starts from.
/// Rooms are not part of it: each is looked up when someone joins it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// The id the next message gets.
    pub next_id: MessageId,
    /// The highest id that may be handed out before the store confirms more.
    pub reserved: MessageId,
    /// Sessions live when the server stopped or ended within the resume
    /// window, to be held for `RESUME`.
    pub sessions: Vec<SavedSession>,
    /// Every account: its name as registered and its password's hash.
    pub accounts: Vec<(Box<str>, Secret)>,
    /// The members of invite-only rooms: room, name, and whether owner.
    pub members: Vec<(Box<str>, Box<str>, bool)>,
}

impl Stored {
    /// A store that holds nothing and lets every id be handed out: for
    /// tests of the chat alone.
    pub fn unlimited() -> Stored {
        Stored {
            next_id: 1,
            reserved: MessageId::MAX,
            sessions: Vec::new(),
            accounts: Vec::new(),
            members: Vec::new(),
        }
    }
}

/// One room's recent history.
#[derive(Debug)]
struct RoomLog {
    ring: VecDeque<Message>,
    /// Every committed message with a greater id is in `ring`.
    floor: MessageId,
}

/// Identifies an open room log; reused once the log is closed.
pub type LogId = usize;

/// The logs of the rooms with members, under one byte budget.
#[derive(Debug)]
pub struct History {
    logs: Slab<RoomLog>,
    /// Every message in a ring, oldest first: the eviction order. Entries
    /// of closed logs stay until they reach the front or the queue is
    /// compacted; an entry is live while its log's ring holds its id.
    order: VecDeque<(MessageId, LogId)>,
    /// Messages held in rings: the live entries of `order`.
    held: usize,
    bytes: usize,
    budget: usize,
}

/// Dead entries `order` may carry, beyond as many as it has live ones,
/// before it is compacted.
const DEAD_ENTRIES: usize = 1024;

impl History {
    /// No logs; at most `budget` bytes of messages will be kept in memory.
    pub fn new(budget: usize) -> History {
        History {
            logs: Slab::new(),
            order: VecDeque::new(),
            held: 0,
            bytes: 0,
            budget,
        }
    }

    /// Opens a log for a room whose committed messages up to `floor` are
    /// in the store only (0: the room has none there).
    pub fn open(&mut self, floor: MessageId) -> LogId {
        self.logs.insert(RoomLog {
            ring: VecDeque::new(),
            floor,
        })
    }

    /// Closes a log: its messages leave memory (the store keeps them).
    pub fn close(&mut self, log: LogId) {
        let Some(closed) = self.logs.try_remove(log) else {
            debug_assert!(false, "closed log {log} twice");
            return;
        };
        self.held -= closed.ring.len();
        self.bytes -= closed.ring.iter().map(Message::weight).sum::<usize>();
        if self.order.len() > 2 * self.held + DEAD_ENTRIES {
            let logs = &self.logs;
            self.order.retain(|&(id, log)| is_live(logs, id, log));
        }
    }

    /// Number of open logs.
    pub fn len(&self) -> usize {
        self.logs.len()
    }

    /// True when no log is open.
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }

    /// Adds a committed message, which has a greater id than any before
    /// it in this log, and evicts the server's oldest messages while over
    /// budget. A message the floor already covers (committed while the
    /// room was away from memory) is the store's alone.
    pub fn push(&mut self, log: LogId, message: Message) {
        let Some(room) = self.logs.get_mut(log) else {
            debug_assert!(false, "pushed to closed log {log}");
            return;
        };
        if message.id <= room.floor {
            return;
        }
        self.bytes += message.weight();
        self.held += 1;
        self.order.push_back((message.id, log));
        room.ring.push_back(message);
        while self.bytes > self.budget {
            let Some((id, log)) = self.order.pop_front() else {
                break;
            };
            if !is_live(&self.logs, id, log) {
                continue;
            }
            let room = &mut self.logs[log];
            if let Some(oldest) = room.ring.pop_front() {
                self.bytes -= oldest.weight();
                self.held -= 1;
                room.floor = oldest.id;
            }
        }
    }

    /// The messages of `log` that `query` names, oldest first, when the
    /// ring alone can answer; `None` when the store must.
    pub fn answer(
        &self,
        log: LogId,
        query: HistoryQuery,
    ) -> Option<impl Iterator<Item = &Message>> {
        let RoomLog { ring, floor } = self.logs.get(log)?;
        let range = answer_range(ring, *floor, query)?;
        Some(ring.range(range))
    }

    /// Bytes of messages held in memory.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Checks the bookkeeping; for tests and fuzzing.
    pub fn check_invariants(&self) {
        let held: usize = self.logs.iter().map(|(_, l)| l.ring.len()).sum();
        assert_eq!(held, self.held);
        let live = self
            .order
            .iter()
            .filter(|&&(id, log)| is_live(&self.logs, id, log));
        assert_eq!(live.count(), held, "every ring message has one live entry");
        assert!(self.order.len() <= 2 * self.held + DEAD_ENTRIES + 1);
    }
}

/// True when `log` is open and its ring holds message `id` (the oldest
/// first, so the eviction order finds it at the front).
fn is_live(logs: &Slab<RoomLog>, id: MessageId, log: LogId) -> bool {
    logs.get(log)
        .is_some_and(|l| l.ring.binary_search_by_key(&id, |m| m.id).is_ok())
}

/// Where in `ring` the answer lies, if all of it is there.
fn answer_range(
    ring: &VecDeque<Message>,
    floor: MessageId,
    query: HistoryQuery,
) -> Option<Range<usize>> {
    let limit = query.limit;
    // Everything before `end` qualifies; take the last `limit` of it, if
    // the ring holds that many or holds the room's whole history.
    let last_before =
        |end: usize| (end >= limit || floor == 0).then(|| end.saturating_sub(limit)..end);
    match query.anchor {
        Anchor::Latest => last_before(ring.len()),
        Anchor::Before(id) => last_before(ring.partition_point(|m| m.id < id)),
        Anchor::After(id) if id >= floor => {
            let start = ring.partition_point(|m| m.id <= id);
            Some(start..ring.len().min(start + limit))
        }
        Anchor::After(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: MessageId, text: &str) -> Message {
        Message {
            id,
            ms: 1000 + id,
            from: "a".into(),
            text: text.into(),
        }
    }

    fn q(anchor: Anchor, limit: usize) -> HistoryQuery {
        HistoryQuery { anchor, limit }
    }

    fn ids(h: &History, log: LogId, query: HistoryQuery) -> Option<Vec<MessageId>> {
        Some(h.answer(log, query)?.map(|m| m.id).collect())
    }

    #[test]
    fn a_new_room_answers_everything_from_memory() {
        let mut h = History::new(1 << 20);
        let log = h.open(0);
        assert_eq!(ids(&h, log, q(Anchor::Latest, 50)), Some(vec![]));
        for id in [2, 5, 9, 10] {
            h.push(log, m(id, "x"));
        }
        assert_eq!(ids(&h, log, q(Anchor::Latest, 2)), Some(vec![9, 10]));
        assert_eq!(ids(&h, log, q(Anchor::Latest, 50)), Some(vec![2, 5, 9, 10]));
        assert_eq!(ids(&h, log, q(Anchor::After(0), 3)), Some(vec![2, 5, 9]));
        assert_eq!(ids(&h, log, q(Anchor::After(5), 9)), Some(vec![9, 10]));
        assert_eq!(ids(&h, log, q(Anchor::After(10), 9)), Some(vec![]));
        assert_eq!(ids(&h, log, q(Anchor::Before(9), 1)), Some(vec![5]));
        assert_eq!(ids(&h, log, q(Anchor::Before(9), 5)), Some(vec![2, 5]));
        assert_eq!(ids(&h, log, q(Anchor::Before(1), 5)), Some(vec![]));
        h.check_invariants();
    }

    #[test]
    fn a_room_with_stored_messages_sends_what_memory_cannot_prove_to_the_store() {
        let mut h = History::new(1 << 20);
        let log = h.open(7);
        assert_eq!(ids(&h, log, q(Anchor::Latest, 1)), None);
        assert_eq!(ids(&h, log, q(Anchor::After(7), 5)), Some(vec![]));
        assert_eq!(ids(&h, log, q(Anchor::After(6), 5)), None);
        h.push(log, m(6, "committed while the room was away"));
        h.push(log, m(8, "x"));
        h.push(log, m(12, "y"));
        assert_eq!(ids(&h, log, q(Anchor::Latest, 2)), Some(vec![8, 12]));
        assert_eq!(ids(&h, log, q(Anchor::Latest, 3)), None);
        assert_eq!(ids(&h, log, q(Anchor::Before(12), 1)), Some(vec![8]));
        assert_eq!(ids(&h, log, q(Anchor::Before(12), 2)), None);
        assert_eq!(ids(&h, log, q(Anchor::After(7), 5)), Some(vec![8, 12]));
        h.check_invariants();
    }

    #[test]
    fn the_budget_evicts_the_oldest_message_of_the_server() {
        let mut h = History::new(3 * (96 + 2));
        let (a, b) = (h.open(0), h.open(0));
        h.push(a, m(1, "x"));
        h.push(b, m(2, "x"));
        h.push(a, m(3, "x"));
        assert_eq!(h.bytes(), 3 * 98);
        h.push(b, m(4, "x"));
        assert_eq!(h.bytes(), 3 * 98, "one in, one out");
        assert_eq!(ids(&h, a, q(Anchor::Latest, 1)), Some(vec![3]));
        assert_eq!(
            ids(&h, a, q(Anchor::Latest, 2)),
            None,
            "#a lost 1: the store has it"
        );
        assert_eq!(ids(&h, a, q(Anchor::After(1), 5)), Some(vec![3]));
        assert_eq!(ids(&h, b, q(Anchor::Latest, 2)), Some(vec![2, 4]));
        h.check_invariants();
    }

    #[test]
    fn a_closed_log_frees_its_messages_and_its_slot_is_reused_safely() {
        let mut h = History::new(3 * (96 + 2));
        let a = h.open(0);
        h.push(a, m(1, "x"));
        h.push(a, m(2, "x"));
        h.close(a);
        assert_eq!((h.bytes(), h.len()), (0, 0));
        let b = h.open(2);
        assert_eq!(b, a, "the slot is reused");
        for id in 3..=6 {
            h.push(b, m(id, "x"));
        }
        // The dead entries of the closed log were skipped, not counted.
        assert_eq!(ids(&h, b, q(Anchor::After(3), 5)), Some(vec![4, 5, 6]));
        assert_eq!(h.bytes(), 3 * 98);
        h.check_invariants();
    }

    #[test]
    fn churn_of_rooms_leaves_nothing_behind() {
        let mut h = History::new(1 << 20);
        let keep = h.open(0);
        for id in 1..=20_000 {
            let log = h.open(0);
            h.push(log, m(2 * id, "one line"));
            h.push(keep, m(2 * id + 1, "steady"));
            h.close(log);
        }
        assert_eq!(h.len(), 1);
        h.check_invariants();
        assert!(h.order.len() <= 2 * h.held + DEAD_ENTRIES + 1);
    }
}
