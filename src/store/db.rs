//! The SQLite side of the store: the schema, loading what the chat starts
//! from, committing a batch of messages in one transaction, answering
//! `HISTORY` reads, and pruning each room to its last `--history` messages.
//!
//! Ids are made safe across crashes by reservation: every commit also
//! records a mark `RESERVE_AHEAD` ids past its last message, the chat hands
//! out no id past the latest mark it heard of, and a restart starts above
//! the mark. An id a crashed server delivered but never stored is
//! therefore never given to another message.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::chat::history::{Message, Stored};
use crate::protocol::reply::MessageId;
use crate::protocol::{Anchor, HistoryQuery};

/// Ids the chat may hand out beyond the last commit: also the most
/// messages that can wait for the disk before `SAY` is refused.
pub const RESERVE_AHEAD: MessageId = 16_384;
/// How long a write waits for a lock another process holds before it
/// fails (and `SAY` gets `ERR storage-unavailable`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS rooms (
        id INTEGER PRIMARY KEY,
        folded TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        room INTEGER NOT NULL REFERENCES rooms (id),
        ms INTEGER NOT NULL,
        sender TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id);
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
";

/// One message to commit, with its room's spelling.
pub struct Append<'a> {
    pub room: &'a str,
    pub message: &'a Message,
}

/// An open message database.
pub struct Db {
    conn: Connection,
    /// Room row ids by lower-cased name.
    rooms: HashMap<String, i64>,
    /// Messages per room to keep, at least.
    keep: u64,
    /// Messages added per room since it was last pruned.
    since_prune: HashMap<i64, u64>,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, or an in-memory
    /// one for `:memory:`, and reads what the chat starts from.
    pub fn open(path: &str, keep: u64) -> rusqlite::Result<(Db, Stored)> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer; FULL: a commit is on the
        // disk before its SENT goes out, so a power cut keeps it too.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        let mut db = Db {
            conn,
            rooms: HashMap::new(),
            keep,
            since_prune: HashMap::new(),
        };
        let stored = db.load()?;
        Ok((db, stored))
    }

    fn load(&mut self) -> rusqlite::Result<Stored> {
        let mut rooms = Vec::new();
        {
            let mut rows = self.conn.prepare(
                "SELECT r.id, r.folded, r.name, (SELECT MAX(id) FROM messages WHERE room = r.id)
                 FROM rooms r",
            )?;
            let mut rows = rows.query([])?;
            while let Some(row) = rows.next()? {
                let (id, folded, name): (i64, String, String) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
                let last: Option<i64> = row.get(3)?;
                self.rooms.insert(folded, id);
                if let Some(last) = last {
                    rooms.push((name, last as MessageId));
                }
            }
        }
        let last: Option<i64> = self
            .conn
            .query_row("SELECT MAX(id) FROM messages", [], |r| r.get(0))?;
        let reserved = self.reserved()?;
        let next_id = last.unwrap_or(0).max(reserved) as MessageId + 1;
        let reserved = next_id - 1 + RESERVE_AHEAD;
        self.set_reserved(reserved)?;
        Ok(Stored {
            rooms,
            next_id,
            reserved,
        })
    }

    fn reserved(&self) -> rusqlite::Result<i64> {
        let value: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'reserved'", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(value.unwrap_or(0))
    }

    fn set_reserved(&self, reserved: MessageId) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('reserved', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [reserved as i64],
        )?;
        Ok(())
    }

    /// Records, on a clean stop, that no id past `last` was handed out, so
    /// the next start continues without a gap.
    pub fn release_reservation(&self, last: MessageId) -> rusqlite::Result<()> {
        let stored: Option<i64> = self
            .conn
            .query_row("SELECT MAX(id) FROM messages", [], |r| r.get(0))?;
        self.set_reserved(last.max(stored.unwrap_or(0) as MessageId))
    }

    /// Commits `appends` in one transaction with a new reservation mark
    /// past the last of them, and returns that mark.
    pub fn commit(&mut self, appends: &[Append<'_>]) -> rusqlite::Result<MessageId> {
        let Some(last) = appends.last().map(|a| a.message.id) else {
            return Ok(0);
        };
        let tx = self.conn.transaction()?;
        let mut created = Vec::new();
        let mut added = Vec::new();
        {
            let mut insert_room = tx.prepare_cached(
                "INSERT INTO rooms (folded, name) VALUES (?1, ?2)
                 ON CONFLICT (folded) DO UPDATE SET name = name RETURNING id",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (id, room, ms, sender, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for Append { room, message } in appends {
                let folded = room.to_ascii_lowercase();
                let room_id = match self.rooms.get(&folded) {
                    Some(&id) => id,
                    None => {
                        let id: i64 = insert_room.query_row(params![folded, room], |r| r.get(0))?;
                        self.rooms.insert(folded.clone(), id);
                        created.push(folded);
                        id
                    }
                };
                insert.execute(params![
                    message.id as i64,
                    room_id,
                    message.ms as i64,
                    &*message.from,
                    &*message.text
                ])?;
                added.push(room_id);
            }
        }
        let reserved = last + RESERVE_AHEAD;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('reserved', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [reserved as i64],
        )?;
        if let Err(e) = tx.commit() {
            // The rooms created in it were rolled back with it.
            for folded in created {
                self.rooms.remove(&folded);
            }
            return Err(e);
        }
        for room in added {
            *self.since_prune.entry(room).or_default() += 1;
        }
        Ok(reserved)
    }

    /// The messages of `room` that `query` names, oldest first.
    pub fn fetch(&self, room: &str, query: HistoryQuery) -> rusqlite::Result<Vec<Message>> {
        let Some(&room) = self.rooms.get(&room.to_ascii_lowercase()) else {
            return Ok(Vec::new());
        };
        let limit = query.limit as i64;
        let (sql, at, newest_first) = match query.anchor {
            Anchor::Latest => (
                "SELECT id, ms, sender, body FROM messages WHERE room = ?1 AND id < ?2
                 ORDER BY id DESC LIMIT ?3",
                i64::MAX,
                true,
            ),
            Anchor::Before(id) => (
                "SELECT id, ms, sender, body FROM messages WHERE room = ?1 AND id < ?2
                 ORDER BY id DESC LIMIT ?3",
                clamp(id),
                true,
            ),
            Anchor::After(id) => (
                "SELECT id, ms, sender, body FROM messages WHERE room = ?1 AND id > ?2
                 ORDER BY id ASC LIMIT ?3",
                clamp(id),
                false,
            ),
        };
        let mut statement = self.conn.prepare_cached(sql)?;
        let rows = statement.query_map(params![room, at, limit], |r| {
            Ok(Message {
                id: r.get::<_, i64>(0)? as MessageId,
                ms: r.get::<_, i64>(1)? as u64,
                from: r.get::<_, String>(2)?.into(),
                text: r.get::<_, String>(3)?.into(),
            })
        })?;
        let mut messages = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        if newest_first {
            messages.reverse();
        }
        Ok(messages)
    }

    /// Deletes all but the last `keep` messages of each room that grew by
    /// an eighth of that since it was last pruned.
    pub fn prune(&mut self) -> rusqlite::Result<usize> {
        let due = (self.keep / 8).max(64);
        let rooms: Vec<i64> = self
            .since_prune
            .iter()
            .filter(|(_, &n)| n >= due)
            .map(|(&room, _)| room)
            .collect();
        let mut deleted = 0;
        for room in rooms {
            deleted += self.conn.execute(
                "DELETE FROM messages WHERE room = ?1 AND id <= (
                     SELECT id FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                params![room, self.keep as i64],
            )?;
            self.since_prune.remove(&room);
        }
        Ok(deleted)
    }
}

/// An id as SQLite's signed integer; ids past it cannot exist.
fn clamp(id: MessageId) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: MessageId, text: &str) -> Message {
        Message {
            id,
            ms: 1_700_000_000_000 + id,
            from: "bob".into(),
            text: text.into(),
        }
    }

    fn commit(db: &mut Db, room: &str, messages: &[Message]) -> MessageId {
        let appends: Vec<Append> = messages
            .iter()
            .map(|message| Append { room, message })
            .collect();
        db.commit(&appends).unwrap()
    }

    fn ids(db: &Db, room: &str, anchor: Anchor, limit: usize) -> Vec<MessageId> {
        let query = HistoryQuery { anchor, limit };
        db.fetch(room, query)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect()
    }

    #[test]
    fn reads_every_anchor_oldest_first() {
        let (mut db, stored) = Db::open(":memory:", 100).unwrap();
        assert_eq!((stored.next_id, stored.reserved), (1, RESERVE_AHEAD));
        let messages: Vec<Message> = (1..=10).map(|id| msg(id, &format!(" t {id} "))).collect();
        assert_eq!(commit(&mut db, "#Rust", &messages), 10 + RESERVE_AHEAD);
        commit(&mut db, "#other", &[msg(11, "x")]);
        assert_eq!(ids(&db, "#rust", Anchor::Latest, 3), [8, 9, 10]);
        assert_eq!(ids(&db, "#RUST", Anchor::After(0), 2), [1, 2]);
        assert_eq!(ids(&db, "#rust", Anchor::After(8), 50), [9, 10]);
        assert_eq!(ids(&db, "#rust", Anchor::Before(4), 50), [1, 2, 3]);
        assert_eq!(ids(&db, "#rust", Anchor::Before(u64::MAX), 1), [10]);
        assert!(ids(&db, "#nowhere", Anchor::Latest, 5).is_empty());
        let q = HistoryQuery {
            anchor: Anchor::After(4),
            limit: 1,
        };
        assert_eq!(
            db.fetch("#rust", q).unwrap(),
            [msg(5, " t 5 ")],
            "exact text"
        );
    }

    #[test]
    fn pruning_keeps_the_last_messages_of_each_room() {
        let (mut db, _) = Db::open(":memory:", 100).unwrap();
        let messages: Vec<Message> = (1..=300).map(|id| msg(id, "x")).collect();
        commit(&mut db, "#a", &messages);
        commit(&mut db, "#b", &[msg(301, "y")]);
        assert_eq!(db.prune().unwrap(), 200);
        assert_eq!(ids(&db, "#a", Anchor::After(0), 500).len(), 100);
        assert_eq!(ids(&db, "#a", Anchor::After(0), 1), [201]);
        assert_eq!(ids(&db, "#b", Anchor::Latest, 5), [301]);
        assert_eq!(db.prune().unwrap(), 0, "nothing new to prune");
    }

    #[test]
    fn a_reopened_database_keeps_rooms_and_never_reuses_an_id() {
        let dir = std::env::temp_dir().join(format!("selectchat-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("reopen.db");
        let path = path.to_str().unwrap();
        {
            let (mut db, _) = Db::open(path, 100).unwrap();
            commit(&mut db, "#Rust", &[msg(1, "a"), msg(2, "b")]);
            // A crash: no clean release of the reservation.
        }
        let (db, stored) = Db::open(path, 100).unwrap();
        assert_eq!(stored.rooms, [("#Rust".to_string(), 2)]);
        assert_eq!(stored.next_id, 2 + RESERVE_AHEAD + 1, "past the mark");
        db.release_reservation(stored.next_id + 4).unwrap();
        drop(db);
        let (_, stored2) = Db::open(path, 100).unwrap();
        assert_eq!(
            stored2.next_id,
            stored.next_id + 5,
            "a clean stop leaves no gap"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
