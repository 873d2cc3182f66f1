//! Room history as the chat keeps it: what it asks of the message store,
//! what the store answers, and the in-memory ring of recent committed
//! messages that answers most `HISTORY` requests without leaving the loop.
//!
//! Every room that ever had a stored message has a [`RoomLog`]: its
//! spelling and its recent messages. The ring of all logs together is held
//! under a byte budget by evicting the oldest message of the whole server,
//! so a busy room can push a quiet one's messages out, never the reverse of
//! memory bounds. Invariant: a log holds every committed message of its
//! room whose id is greater than its `floor`; a floor of 0 means the log
//! holds every message the room ever stored.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use slab::Slab;

use super::name::{Folded, NameKey};
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
}

/// What the store found when it opened: the state the chat starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Every room with stored messages: its spelling and its last id.
    pub rooms: Vec<(String, MessageId)>,
    /// The id the next message gets.
    pub next_id: MessageId,
    /// The highest id that may be handed out before the store confirms more.
    pub reserved: MessageId,
}

impl Stored {
    /// A store that holds nothing and lets every id be handed out: for
    /// tests of the chat alone.
    pub fn unlimited() -> Stored {
        Stored {
            rooms: Vec::new(),
            next_id: 1,
            reserved: MessageId::MAX,
        }
    }
}

/// One room's recent history.
#[derive(Debug)]
struct RoomLog {
    spelling: Box<str>,
    ring: VecDeque<Message>,
    /// Every committed message with a greater id is in `ring`.
    floor: MessageId,
}

/// Identifies a room's log; stable for the life of the process.
pub type LogId = usize;

/// The logs of every room that stored a message, under one byte budget.
#[derive(Debug)]
pub struct History {
    logs: Slab<RoomLog>,
    by_name: HashMap<NameKey, LogId>,
    /// Every message in a ring, oldest first: the eviction order.
    order: VecDeque<(MessageId, LogId)>,
    bytes: usize,
    budget: usize,
}

impl History {
    /// Empty logs that keep at most `budget` bytes of messages in memory.
    pub fn new(budget: usize) -> History {
        History {
            logs: Slab::new(),
            by_name: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    /// Registers a room the store already holds messages of, up to `last`:
    /// its ring starts empty, so requests for those go to the store.
    pub fn load(&mut self, spelling: &str, last: MessageId) {
        let log = self.log_of(spelling);
        self.logs[log].floor = last;
    }

    /// The spelling a room was first stored with, if it was.
    pub fn spelling(&self, room: &str) -> Option<&str> {
        let log = *self.by_name.get(Folded::new(room))?;
        Some(&self.logs[log].spelling)
    }

    /// The log of `room`, created (holding everything: nothing) if new.
    pub fn log_of(&mut self, room: &str) -> LogId {
        if let Some(&log) = self.by_name.get(Folded::new(room)) {
            return log;
        }
        let log = self.logs.insert(RoomLog {
            spelling: room.into(),
            ring: VecDeque::new(),
            floor: 0,
        });
        self.by_name.insert(NameKey::new(room), log);
        log
    }

    /// The room's spelling.
    pub fn room(&self, log: LogId) -> &str {
        &self.logs[log].spelling
    }

    /// The log of `room`, if it has one.
    pub fn find(&self, room: &str) -> Option<LogId> {
        self.by_name.get(Folded::new(room)).copied()
    }

    /// Adds a committed message, which has a greater id than any before
    /// it, and evicts the server's oldest messages while over budget.
    pub fn push(&mut self, log: LogId, message: Message) {
        self.bytes += message.weight();
        self.order.push_back((message.id, log));
        self.logs[log].ring.push_back(message);
        while self.bytes > self.budget {
            let Some((id, log)) = self.order.pop_front() else {
                break;
            };
            let log = &mut self.logs[log];
            if let Some(oldest) = log.ring.pop_front() {
                debug_assert_eq!(oldest.id, id, "eviction order");
                self.bytes -= oldest.weight();
                log.floor = oldest.id;
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
        let RoomLog { ring, floor, .. } = &self.logs[log];
        let range = answer_range(ring, *floor, query)?;
        Some(ring.range(range))
    }

    /// Bytes of messages held in memory.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
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
        let log = h.log_of("#Rust");
        assert_eq!(h.log_of("#rust"), log, "one log per folded name");
        assert_eq!(h.spelling("#RUST"), Some("#Rust"));
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
    }

    #[test]
    fn a_loaded_room_sends_what_memory_cannot_prove_to_the_store() {
        let mut h = History::new(1 << 20);
        h.load("#old", 7);
        let log = h.find("#OLD").unwrap();
        assert_eq!(ids(&h, log, q(Anchor::Latest, 1)), None);
        assert_eq!(ids(&h, log, q(Anchor::After(7), 5)), Some(vec![]));
        assert_eq!(ids(&h, log, q(Anchor::After(6), 5)), None);
        h.push(log, m(8, "x"));
        h.push(log, m(12, "y"));
        assert_eq!(ids(&h, log, q(Anchor::Latest, 2)), Some(vec![8, 12]));
        assert_eq!(ids(&h, log, q(Anchor::Latest, 3)), None);
        assert_eq!(ids(&h, log, q(Anchor::Before(12), 1)), Some(vec![8]));
        assert_eq!(ids(&h, log, q(Anchor::Before(12), 2)), None);
        assert_eq!(ids(&h, log, q(Anchor::After(7), 5)), Some(vec![8, 12]));
    }

    #[test]
    fn the_budget_evicts_the_oldest_message_of_the_server() {
        let mut h = History::new(3 * (96 + 2));
        let (a, b) = (h.log_of("#a"), h.log_of("#b"));
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
    }
}
