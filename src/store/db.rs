//! The SQLite side of the store: the schema and its migrations, committing
//! a batch of messages in one transaction, answering `HISTORY` reads and
//! room lookups, and retention: each room pruned to its last `--history`
//! messages, messages older than `--history-days` deleted, and the least
//! recently active rooms evicted past `--max-stored-rooms`.
//!
//! Ids are made safe across crashes by reservation: every commit also
//! records a mark `RESERVE_AHEAD` ids past its last message, the chat hands
//! out no id past the latest mark it heard of, and a restart starts above
//! the mark. An id a crashed server delivered but never stored is
//! therefore never given to another message.
//!
//! Nothing here grows with the number of rooms ever stored: rooms are
//! found through the `folded` index, one batch at a time.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::auth::Secret;
use crate::chat::history::{Found, Message, Request, SavedSession, Stored};
use crate::chat::resume::{Tags, TokenHash};
use crate::protocol::reply::MessageId;
use crate::protocol::{Anchor, HistoryQuery};

/// Ids the chat may hand out beyond the last commit: also the most
/// messages that can wait for the disk before `SAY` is refused.
pub const RESERVE_AHEAD: MessageId = 16_384;
/// How long a write waits for a lock another process holds before it
/// fails (and `SAY` gets `ERR storage-unavailable`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// Marks a database as selectchat's (`PRAGMA application_id`): "SCHT".
const APPLICATION_ID: i32 = 0x5343_4854;
/// The schema this build writes (`PRAGMA user_version`). Version 0 is the
/// first release's, which set no version; version 1 had no sessions, and
/// version 2 no accounts. All are migrated on open.
const SCHEMA_VERSION: i32 = 3;
/// Rooms evicted, or batches of old messages deleted, per pruning pass,
/// so one pass never holds the writer long.
const PRUNE_BATCH: i64 = 1000;
/// How often messages past `--history-days` are looked for.
const AGE_CHECK: Duration = Duration::from_secs(60);

/// Version 1's schema; a fresh database is made from it, then migrated.
const SCHEMA: &str = "
    CREATE TABLE rooms (
        id INTEGER PRIMARY KEY,
        folded TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        -- The room's newest message id: eviction goes oldest first.
        last_id INTEGER NOT NULL DEFAULT 0,
        -- Messages added since the room was last pruned.
        unpruned INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX rooms_by_activity ON rooms (last_id);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        room INTEGER NOT NULL REFERENCES rooms (id),
        ms INTEGER NOT NULL,
        sender TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX messages_by_room ON messages (room, id);
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
";

/// From version 1: sessions kept for `RESUME` across restarts, by the
/// SHA-256 of their token (never the token).
const MIGRATE_FROM_1: &str = "
    CREATE TABLE sessions (
        folded TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        token_hash BLOB NOT NULL,
        -- Room spellings, space-separated.
        rooms TEXT NOT NULL,
        -- Its recent tagged SAYs: tag:room:id, space-separated.
        tags TEXT NOT NULL DEFAULT '',
        -- When the session ended (Unix ms); NULL while it is live.
        ended_ms INTEGER
    );
";

/// From version 2: accounts, by the Argon2id PHC string of their password
/// (never the password); and how far each has read each one-to-one
/// conversation (stored as a room keyed `@a@b`, see `conversation`).
const MIGRATE_FROM_2: &str = "
    CREATE TABLE accounts (
        folded TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        -- When it was registered (Unix ms).
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE members (
        -- An invite-only room (lower-cased) and one of its members.
        room TEXT NOT NULL,
        folded TEXT NOT NULL,
        name TEXT NOT NULL,
        room_name TEXT NOT NULL,
        owner INTEGER NOT NULL,
        PRIMARY KEY (room, folded)
    );
    CREATE TABLE reads (
        folded TEXT NOT NULL,
        peer TEXT NOT NULL,
        last_id INTEGER NOT NULL,
        PRIMARY KEY (folded, peer)
    );
";

/// From version 0 (the first release: no version, no activity columns).
const MIGRATE_FROM_0: &str = "
    ALTER TABLE rooms ADD COLUMN last_id INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rooms ADD COLUMN unpruned INTEGER NOT NULL DEFAULT 0;
    UPDATE rooms SET
        last_id = COALESCE((SELECT MAX(id) FROM messages WHERE room = rooms.id), 0),
        unpruned = (SELECT COUNT(*) FROM messages WHERE room = rooms.id);
    CREATE INDEX rooms_by_activity ON rooms (last_id);
";

/// How long history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Messages per room to keep, at least.
    pub per_room: u64,
    /// Messages older than this are deleted; `None` keeps them.
    pub max_age: Option<Duration>,
    /// Most rooms stored; the least recently active go first.
    pub max_rooms: u64,
    /// How long an ended session is kept for `RESUME` (`--resume-window`).
    pub sessions: Duration,
    /// Most sessions a restart restores, the most recent first.
    pub max_sessions: usize,
}

/// Why a database could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// The file is not a database this build may use.
    Refused(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Sqlite(e) => write!(f, "{e}"),
            OpenError::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> OpenError {
        OpenError::Sqlite(e)
    }
}

/// One message to commit, with its room's spelling.
pub struct Append<'a> {
    pub room: &'a str,
    pub message: &'a Message,
}

/// An open message database.
pub struct Db {
    conn: Connection,
    retention: Retention,
    /// Rooms stored, counted at open and kept up to date.
    rooms: u64,
    /// Rooms whose unpruned count passed the mark in a commit.
    due: Vec<i64>,
    /// When messages past `--history-days` were last looked for.
    aged: Option<SystemTime>,
    /// When sessions past the resume window were last looked for.
    sessions_aged: Option<SystemTime>,
}

impl Db {
    /// Opens (creating if needed, migrating an older schema) the database
    /// at `path`, or an in-memory one for `:memory:`, and reads what the
    /// chat starts from. A database another program wrote, or a newer
    /// selectchat, is refused with a sentence saying so.
    pub fn open(path: &str, retention: Retention) -> Result<(Db, Stored), OpenError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer; FULL: a commit is on the
        // disk before its SENT goes out, so a power cut keeps it too.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrate(&conn, path)?;
        let rooms: i64 = conn.query_row("SELECT COUNT(*) FROM rooms", [], |r| r.get(0))?;
        // Rooms over their limit when the last run stopped.
        let due = {
            let mut rows = conn.prepare("SELECT id FROM rooms WHERE unpruned > ?1")?;
            let rows = rows.query_map([retention.per_room as i64], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<i64>>>()?
        };
        let mut db = Db {
            conn,
            retention,
            rooms: rooms as u64,
            due,
            aged: None,
            sessions_aged: None,
        };
        let stored = db.load()?;
        Ok((db, stored))
    }

    fn load(&mut self) -> rusqlite::Result<Stored> {
        let last: Option<i64> = self
            .conn
            .query_row("SELECT MAX(id) FROM messages", [], |r| r.get(0))?;
        let reserved = self.reserved()?;
        let next_id = last.unwrap_or(0).max(reserved) as MessageId + 1;
        let reserved = next_id - 1 + RESERVE_AHEAD;
        self.set_reserved(reserved)?;
        let sessions = self.sessions(SystemTime::now())?;
        let accounts = {
            let mut rows = self.conn.prepare("SELECT name, hash FROM accounts")?;
            let rows = rows.query_map([], |r| {
                let (name, hash): (String, String) = (r.get(0)?, r.get(1)?);
                Ok((name.into_boxed_str(), Secret::new(&hash)))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let members = {
            let mut rows = self
                .conn
                .prepare("SELECT room_name, name, owner FROM members ORDER BY room, owner DESC")?;
            let rows = rows.query_map([], |r| {
                let (room, name, owner): (String, String, bool) = (r.get(0)?, r.get(1)?, r.get(2)?);
                Ok((room.into_boxed_str(), name.into_boxed_str(), owner))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        Ok(Stored {
            next_id,
            reserved,
            sessions,
            accounts,
            members,
        })
    }

    /// The sessions to hold at a start at `now`: live when the server
    /// stopped, or ended within the resume window; the most recent first,
    /// at most `max_sessions`. Older ones are deleted.
    fn sessions(&self, now: SystemTime) -> rusqlite::Result<Vec<SavedSession>> {
        self.delete_old_sessions(now)?;
        let mut rows = self.conn.prepare(
            "SELECT name, token_hash, rooms, ended_ms, tags FROM sessions
             ORDER BY ended_ms IS NULL DESC, ended_ms DESC LIMIT ?1",
        )?;
        let rows = rows.query_map([self.retention.max_sessions as i64], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?),
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut rooms: HashMap<String, (Box<str>, MessageId)> = HashMap::new();
        let mut sessions = Vec::new();
        for row in rows {
            let ((name, hash), spellings, ended_ms, tags) = row?;
            let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
                log::warn!("store: the session of {name} has a malformed token hash; dropped");
                continue;
            };
            let mut held = Vec::new();
            for spelling in spellings.split_whitespace() {
                let folded = spelling.to_ascii_lowercase();
                if !rooms.contains_key(&folded) {
                    let room = match self.lookup(spelling)? {
                        Found::Stored { spelling, last } => (spelling, last),
                        Found::Unknown | Found::Failed => (spelling.into(), 0),
                    };
                    rooms.insert(folded.clone(), room);
                }
                held.push(rooms[&folded].clone());
            }
            sessions.push(SavedSession {
                name: name.into(),
                hash: TokenHash(hash),
                rooms: held,
                ended_ms: ended_ms.map(|ms| ms as u64),
                tags: Tags::decode(&tags),
            });
        }
        Ok(sessions)
    }

    /// Deletes the sessions that ended before the resume window at `now`.
    fn delete_old_sessions(&self, now: SystemTime) -> rusqlite::Result<usize> {
        let horizon = now
            .checked_sub(self.retention.sessions)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        self.conn.execute(
            "DELETE FROM sessions WHERE ended_ms IS NOT NULL AND ended_ms < ?1",
            [horizon],
        )
    }

    /// Rooms stored.
    pub fn rooms(&self) -> u64 {
        self.rooms
    }

    /// The newest stored message's id, or the last entry of a cluster's
    /// log applied, whichever is later (0 if none): in a cluster, every
    /// entry of the log up to it has been stored.
    pub fn last_stored(&self) -> rusqlite::Result<MessageId> {
        let last: Option<i64> = self.conn.query_row(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM messages), 0),
                        COALESCE((SELECT value FROM meta WHERE key = 'applied'), 0))",
            [],
            |r| r.get(0),
        )?;
        Ok(last.unwrap_or(0) as MessageId)
    }

    /// The cluster log this database follows (its stream's identity), if
    /// it belongs to a cluster node.
    pub fn stream(&self) -> rusqlite::Result<Option<i64>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'stream'", [], |r| {
                r.get(0)
            })
            .optional()
    }

    /// Binds this database to the cluster log `stream`: message ids are
    /// that log's sequence numbers from now on.
    pub fn bind_stream(&self, stream: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('stream', ?1)",
            [stream],
        )?;
        Ok(())
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

    /// The row id of the room whose folded name is `folded`.
    fn room_id(&self, folded: &str) -> rusqlite::Result<Option<i64>> {
        self.conn
            .prepare_cached("SELECT id FROM rooms WHERE folded = ?1")?
            .query_row([folded], |r| r.get(0))
            .optional()
    }

    /// Commits `appends`, and the session writes among `sessions`, in one
    /// transaction; with messages, a new reservation mark past the last of
    /// them goes too, and is returned.
    pub fn commit(
        &mut self,
        appends: &[Append<'_>],
        sessions: &[&Request],
    ) -> rusqlite::Result<Option<MessageId>> {
        if appends.is_empty() && sessions.is_empty() {
            return Ok(None);
        }
        let mark = self.prune_mark();
        // Immediate: the write lock is taken (or waited for) at the start;
        // a read first and a write later cannot wait for a lock at all.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        save_sessions(&tx, sessions)?;
        let Some(last) = appends.last().map(|a| a.message.id) else {
            tx.commit()?;
            return Ok(None);
        };
        // This batch's rooms: row id, newest message, messages added.
        let mut touched: HashMap<String, (i64, MessageId, u64)> = HashMap::new();
        let mut created = 0;
        {
            let mut find = tx.prepare_cached("SELECT id FROM rooms WHERE folded = ?1")?;
            let mut insert_room =
                tx.prepare_cached("INSERT INTO rooms (folded, name) VALUES (?1, ?2)")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (id, room, ms, sender, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for Append { room, message } in appends {
                let folded = room.to_ascii_lowercase();
                let entry = match touched.get_mut(&folded) {
                    Some(entry) => entry,
                    None => {
                        let found: Option<i64> =
                            find.query_row([&folded], |r| r.get(0)).optional()?;
                        let id = match found {
                            Some(id) => id,
                            None => {
                                insert_room.execute(params![folded, room])?;
                                created += 1;
                                tx.last_insert_rowid()
                            }
                        };
                        touched.entry(folded).or_insert((id, 0, 0))
                    }
                };
                insert.execute(params![
                    message.id as i64,
                    entry.0,
                    message.ms as i64,
                    &*message.from,
                    &*message.text
                ])?;
                entry.1 = message.id;
                entry.2 += 1;
            }
        }
        let mut due = Vec::new();
        {
            let mut update = tx.prepare_cached(
                "UPDATE rooms SET last_id = ?2, unpruned = unpruned + ?3 WHERE id = ?1
                 RETURNING unpruned",
            )?;
            for &(room, newest, added) in touched.values() {
                let unpruned: i64 =
                    update.query_row(params![room, newest as i64, added as i64], |r| r.get(0))?;
                if unpruned as u64 >= mark {
                    due.push(room);
                }
            }
        }
        let reserved = last + RESERVE_AHEAD;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('reserved', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [reserved as i64],
        )?;
        tx.commit()?;
        self.rooms += created;
        self.due.extend(due);
        Ok(Some(reserved))
    }

    /// Messages a room may gain past its limit before it is pruned: an
    /// eighth of the limit, so pruning is amortised.
    fn prune_mark(&self) -> u64 {
        self.retention.per_room + (self.retention.per_room / 8).max(64)
    }

    /// How `room` was first stored, and its newest stored message.
    pub fn lookup(&self, room: &str) -> rusqlite::Result<Found> {
        let found = self
            .conn
            .prepare_cached(
                "SELECT name, (SELECT MAX(id) FROM messages WHERE room = rooms.id)
                 FROM rooms WHERE folded = ?1",
            )?
            .query_row([room.to_ascii_lowercase()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .optional()?;
        Ok(match found {
            Some((spelling, last)) => Found::Stored {
                spelling: spelling.into(),
                last: last.unwrap_or(0) as MessageId,
            },
            None => Found::Unknown,
        })
    }

    /// `name`'s conversations holding messages from the other side after
    /// its read mark: each peer (lower-cased), how many, and the mark.
    pub fn unread(&self, name: &str) -> rusqlite::Result<Vec<(Box<str>, u64, MessageId)>> {
        let name = name.to_ascii_lowercase();
        let mut rooms = self.conn.prepare_cached(
            "SELECT id, folded FROM rooms WHERE folded GLOB '@' || ?1 || '@*'
                 OR folded GLOB '@*@' || ?1",
        )?;
        let rooms = rooms
            .query_map([&name], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut mark = self
            .conn
            .prepare_cached("SELECT last_id FROM reads WHERE folded = ?1 AND peer = ?2")?;
        let mut count = self.conn.prepare_cached(
            "SELECT COUNT(*) FROM messages WHERE room = ?1 AND id > ?2 AND lower(sender) != ?3",
        )?;
        let mut unread = Vec::new();
        for (room, key) in rooms {
            let Some(peer) = crate::chat::history::peer_in(&key, &name) else {
                continue;
            };
            let read: i64 = mark
                .query_row([&name, peer], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let n: i64 = count.query_row(params![room, read, name], |r| r.get(0))?;
            if n > 0 {
                unread.push((peer.into(), n as u64, read as MessageId));
            }
        }
        unread.sort();
        Ok(unread)
    }

    /// The messages of `room` that `query` names, oldest first.
    pub fn fetch(&self, room: &str, query: HistoryQuery) -> rusqlite::Result<Vec<Message>> {
        let Some(room) = self.room_id(&room.to_ascii_lowercase())? else {
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

    /// One pruning pass, at `now`: rooms over their limit cut to their last
    /// `--history` messages, messages past `--history-days` deleted (looked
    /// for once a minute), and the least recently active rooms past
    /// `--max-stored-rooms` evicted, a batch at a time. Returns the
    /// messages deleted.
    pub fn prune(&mut self, now: SystemTime) -> rusqlite::Result<usize> {
        let mut deleted = 0;
        while let Some(&room) = self.due.last() {
            deleted += self.conn.execute(
                "DELETE FROM messages WHERE room = ?1 AND id <= (
                     SELECT id FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                params![room, self.retention.per_room as i64],
            )?;
            self.conn
                .execute("UPDATE rooms SET unpruned = 0 WHERE id = ?1", [room])?;
            self.due.pop();
        }
        if let Some(max_age) = self.retention.max_age {
            let checked = self.aged.and_then(|t| now.duration_since(t).ok());
            if checked.is_none_or(|since| since >= AGE_CHECK) {
                self.aged = Some(now);
                deleted +=
                    self.delete_older_than(now.checked_sub(max_age).unwrap_or(UNIX_EPOCH))?;
            }
        }
        if self.rooms > self.retention.max_rooms {
            deleted += self.evict(self.rooms - self.retention.max_rooms)?;
        }
        let checked = self.sessions_aged.and_then(|t| now.duration_since(t).ok());
        if checked.is_none_or(|since| since >= AGE_CHECK) {
            self.sessions_aged = Some(now);
            self.delete_old_sessions(now)?;
        }
        Ok(deleted)
    }

    /// Deletes messages accepted before `cutoff`, oldest id first. Ids
    /// follow acceptance, so the scan stops at the first batch holding a
    /// younger message (one stamped before a clock step back waits for it).
    fn delete_older_than(&mut self, cutoff: SystemTime) -> rusqlite::Result<usize> {
        let cutoff = cutoff
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()) as i64;
        let mut deleted = 0;
        loop {
            let n = self.conn.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?1)
                 AND ms < ?2",
                params![PRUNE_BATCH, cutoff],
            )?;
            deleted += n;
            if n < PRUNE_BATCH as usize {
                return Ok(deleted);
            }
        }
    }

    /// Deletes up to `count` (at most a batch) of the least recently
    /// active rooms with their messages.
    fn evict(&mut self, count: u64) -> rusqlite::Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rooms: Vec<i64> = {
            let mut oldest = tx.prepare_cached("SELECT id FROM rooms ORDER BY last_id LIMIT ?1")?;
            let rows = oldest.query_map([count.min(PRUNE_BATCH as u64) as i64], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut deleted = 0;
        for &room in &rooms {
            deleted += tx.execute("DELETE FROM messages WHERE room = ?1", [room])?;
            tx.execute("DELETE FROM rooms WHERE id = ?1", [room])?;
        }
        tx.commit()?;
        self.rooms -= rooms.len() as u64;
        self.due.retain(|room| !rooms.contains(room));
        Ok(deleted)
    }
}

/// Brings the database at `conn` to `SCHEMA_VERSION`, or says why it
/// will not: another program's file, or a newer selectchat's.
fn migrate(conn: &Connection, path: &str) -> Result<(), OpenError> {
    let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let app: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let tables: Vec<String> = {
        let mut rows = conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             ORDER BY name",
        )?;
        let rows = rows.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let foreign = |what: String| {
        OpenError::Refused(format!(
            "{path} is not a selectchat database ({what}); give --db another path"
        ))
    };
    if app != 0 && app != APPLICATION_ID {
        return Err(foreign(format!("its application id is {app:#x}")));
    }
    if app == 0 && !tables.is_empty() && (version != 0 || tables != ["messages", "meta", "rooms"]) {
        return Err(foreign(format!("it holds tables {}", tables.join(", "))));
    }
    if version > SCHEMA_VERSION {
        return Err(OpenError::Refused(format!(
            "{path} was written by a newer selectchat (schema version {version}; this one \
             reads versions up to {SCHEMA_VERSION}); upgrade selectchat or give --db another path"
        )));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let steps = match version {
        _ if tables.is_empty() => [SCHEMA, MIGRATE_FROM_1, MIGRATE_FROM_2].concat(),
        0 => [MIGRATE_FROM_0, MIGRATE_FROM_1, MIGRATE_FROM_2].concat(),
        1 => [MIGRATE_FROM_1, MIGRATE_FROM_2].concat(),
        _ => MIGRATE_FROM_2.to_string(),
    };
    if !tables.is_empty() {
        log::info!("database {path}: migrating from schema version {version} to {SCHEMA_VERSION}");
    }
    conn.execute_batch(&format!(
        "BEGIN; {steps}
         PRAGMA user_version = {SCHEMA_VERSION};
         PRAGMA application_id = {APPLICATION_ID};
         COMMIT;"
    ))?;
    Ok(())
}

/// Carries out the session writes among `requests` in `tx`.
fn save_sessions(tx: &rusqlite::Transaction<'_>, requests: &[&Request]) -> rusqlite::Result<()> {
    let mut save = tx.prepare_cached(
        "INSERT INTO sessions (folded, name, token_hash, rooms, ended_ms, tags)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (folded) DO UPDATE SET name = excluded.name,
             token_hash = excluded.token_hash, rooms = excluded.rooms,
             ended_ms = excluded.ended_ms, tags = excluded.tags",
    )?;
    let mut forget = tx.prepare_cached("DELETE FROM sessions WHERE folded = ?1")?;
    let mut member = tx.prepare_cached(
        "INSERT OR REPLACE INTO members (room, folded, name, room_name, owner)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut unmember = tx.prepare_cached("DELETE FROM members WHERE room = ?1 AND folded = ?2")?;
    let mut read = tx.prepare_cached(
        "INSERT INTO reads (folded, peer, last_id) VALUES (?1, ?2, ?3)
         ON CONFLICT (folded, peer) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)",
    )?;
    let mut account = tx.prepare_cached(
        "INSERT INTO accounts (folded, name, hash, created_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (folded) DO UPDATE SET hash = excluded.hash",
    )?;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for request in requests {
        match request {
            Request::SaveSession {
                name,
                hash,
                rooms,
                tags,
                ended_ms,
            } => {
                save.execute(params![
                    name.to_ascii_lowercase(),
                    &**name,
                    &hash.0[..],
                    &**rooms,
                    ended_ms.map(|ms| ms as i64),
                    &**tags
                ])?;
            }
            Request::ForgetSession { name } => {
                forget.execute([name.to_ascii_lowercase()])?;
            }
            Request::Member {
                room,
                name,
                owner,
                member: true,
            } => {
                member.execute(params![
                    room.to_ascii_lowercase(),
                    name.to_ascii_lowercase(),
                    &**name,
                    &**room,
                    owner
                ])?;
            }
            Request::Member { room, name, .. } => {
                unmember.execute([room.to_ascii_lowercase(), name.to_ascii_lowercase()])?;
            }
            Request::Read { name, peer, id } => {
                read.execute(params![
                    name.to_ascii_lowercase(),
                    peer.to_ascii_lowercase(),
                    clamp(*id)
                ])?;
            }
            Request::SaveAccount { name, hash, .. } => {
                account.execute(params![
                    name.to_ascii_lowercase(),
                    &**name,
                    hash.expose(),
                    now_ms
                ])?;
            }
            Request::Applied { seq } => {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('applied', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
                    [clamp(*seq)],
                )?;
            }
            _ => {}
        }
    }
    Ok(())
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
        db.commit(&appends, &[]).unwrap().unwrap()
    }

    fn keep(per_room: u64) -> Retention {
        Retention {
            per_room,
            max_age: None,
            max_rooms: 1000,
            sessions: Duration::from_secs(120),
            max_sessions: 100,
        }
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
        let (mut db, stored) = Db::open(":memory:", keep(100)).unwrap();
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
    fn a_cluster_node_stores_through_its_last_message_or_record() {
        let (mut db, _) = Db::open(":memory:", keep(100)).unwrap();
        assert_eq!(db.last_stored().unwrap(), 0);
        commit(&mut db, "#a", &[msg(5, "x")]);
        assert_eq!(db.last_stored().unwrap(), 5);
        // An account, a read mark or a membership past the last message.
        let applied = |seq| Request::Applied { seq };
        db.commit(&[], &[&applied(9), &applied(7)]).unwrap();
        assert_eq!(db.last_stored().unwrap(), 9, "never moves back");
        commit(&mut db, "#a", &[msg(12, "y")]);
        assert_eq!(db.last_stored().unwrap(), 12);
    }

    #[test]
    fn pruning_keeps_the_last_messages_of_each_room() {
        let (mut db, _) = Db::open(":memory:", keep(100)).unwrap();
        let messages: Vec<Message> = (1..=300).map(|id| msg(id, "x")).collect();
        commit(&mut db, "#a", &messages);
        commit(&mut db, "#b", &[msg(301, "y")]);
        assert_eq!(db.prune(SystemTime::now()).unwrap(), 200);
        assert_eq!(ids(&db, "#a", Anchor::After(0), 500).len(), 100);
        assert_eq!(ids(&db, "#a", Anchor::After(0), 1), [201]);
        assert_eq!(ids(&db, "#b", Anchor::Latest, 5), [301]);
        assert_eq!(
            db.prune(SystemTime::now()).unwrap(),
            0,
            "nothing new to prune"
        );
    }

    #[test]
    fn a_reopened_database_keeps_rooms_and_never_reuses_an_id() {
        let dir = std::env::temp_dir().join(format!("selectchat-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("reopen.db");
        let path = path.to_str().unwrap();
        {
            let (mut db, _) = Db::open(path, keep(100)).unwrap();
            commit(&mut db, "#Rust", &[msg(1, "a"), msg(2, "b")]);
            // A crash: no clean release of the reservation.
        }
        let (db, stored) = Db::open(path, keep(100)).unwrap();
        assert_eq!(
            db.lookup("#rust").unwrap(),
            Found::Stored {
                spelling: "#Rust".into(),
                last: 2
            }
        );
        assert_eq!(stored.next_id, 2 + RESERVE_AHEAD + 1, "past the mark");
        db.release_reservation(stored.next_id + 4).unwrap();
        drop(db);
        let (_, stored2) = Db::open(path, keep(100)).unwrap();
        assert_eq!(
            stored2.next_id,
            stored.next_id + 5,
            "a clean stop leaves no gap"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A scratch directory for one test's database files.
    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("selectchat-db-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The first release's schema, exactly as it wrote it (no version).
    const SCHEMA_V0: &str = "
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

    #[test]
    fn a_database_of_the_first_release_is_migrated_and_keeps_its_history() {
        let dir = scratch("v0");
        let path = dir.join("v0.db");
        let path = path.to_str().unwrap();
        {
            let conn = Connection::open(path).unwrap();
            conn.execute_batch(SCHEMA_V0).unwrap();
            conn.execute_batch(
                "INSERT INTO rooms (id, folded, name) VALUES (1, '#rust', '#Rust'), (2, '#go', '#go');
                 INSERT INTO messages VALUES (1, 1, 1700000000001, 'bob', 'one'),
                     (2, 2, 1700000000002, 'amy', 'two'), (3, 1, 1700000000003, 'bob', 'three');
                 INSERT INTO meta VALUES ('reserved', 16387);",
            )
            .unwrap();
        }
        let (mut db, stored) = Db::open(path, keep(100)).unwrap();
        assert_eq!(stored.next_id, 16388, "ids go on past the old mark");
        assert_eq!(ids(&db, "#RUST", Anchor::Latest, 50), [1, 3]);
        assert_eq!(
            db.lookup("#rust").unwrap(),
            Found::Stored {
                spelling: "#Rust".into(),
                last: 3
            }
        );
        assert_eq!(db.rooms(), 2);
        let version: i32 = db
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // The migrated activity column orders eviction: #go is the older.
        db.retention.max_rooms = 1;
        db.prune(SystemTime::now()).unwrap();
        assert_eq!(db.lookup("#go").unwrap(), Found::Unknown);
        assert_eq!(ids(&db, "#rust", Anchor::Latest, 50), [1, 3]);
        drop(db);
        let (db, _) = Db::open(path, keep(100)).expect("a migrated database opens again");
        assert_eq!(db.rooms(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The schema as the previous release (version 1) wrote it, frozen.
    const SCHEMA_V1: &str = "
        CREATE TABLE rooms (
            id INTEGER PRIMARY KEY,
            folded TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            last_id INTEGER NOT NULL DEFAULT 0,
            unpruned INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX rooms_by_activity ON rooms (last_id);
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            room INTEGER NOT NULL REFERENCES rooms (id),
            ms INTEGER NOT NULL,
            sender TEXT NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX messages_by_room ON messages (room, id);
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );
        PRAGMA user_version = 1;
        PRAGMA application_id = 1396918356;
    ";

    fn save(name: &str, rooms: &str, ended_ms: Option<u64>) -> Request {
        Request::SaveSession {
            name: name.into(),
            hash: TokenHash([7; 32]),
            rooms: rooms.into(),
            tags: "t1:#RUST:2".into(),
            ended_ms,
        }
    }

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn a_database_of_the_last_release_is_migrated_and_keeps_sessions_from_then_on() {
        let dir = scratch("v1");
        let path = dir.join("v1.db");
        let path = path.to_str().unwrap();
        {
            let conn = Connection::open(path).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.execute_batch(
                "INSERT INTO rooms (id, folded, name, last_id) VALUES (1, '#rust', '#Rust', 2);
                 INSERT INTO messages VALUES (1, 1, 1700000000001, 'bob', 'one'),
                     (2, 1, 1700000000002, 'amy', 'two');
                 INSERT INTO meta VALUES ('reserved', 16386);",
            )
            .unwrap();
        }
        let (mut db, stored) = Db::open(path, keep(100)).unwrap();
        assert_eq!(stored.next_id, 16387);
        assert_eq!(stored.sessions, []);
        assert_eq!(ids(&db, "#rust", Anchor::Latest, 50), [1, 2]);
        let version: i32 = db
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let sessions = [save("Amy", "#RUST #new", None)];
        let sessions: Vec<&Request> = sessions.iter().collect();
        db.commit(&[], &sessions).unwrap();
        drop(db);
        let (_, stored) = Db::open(path, keep(100)).unwrap();
        assert_eq!(
            stored.sessions,
            [SavedSession {
                name: "Amy".into(),
                hash: TokenHash([7; 32]),
                rooms: vec![("#Rust".into(), 2), ("#new".into(), 0)],
                ended_ms: None,
                tags: Tags::decode("t1:#RUST:2"),
            }],
            "rooms by their stored spelling and newest id"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The schema as the previous release (version 2) wrote it, frozen.
    const SCHEMA_V2: &str = "
        CREATE TABLE rooms (
            id INTEGER PRIMARY KEY,
            folded TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            last_id INTEGER NOT NULL DEFAULT 0,
            unpruned INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX rooms_by_activity ON rooms (last_id);
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            room INTEGER NOT NULL REFERENCES rooms (id),
            ms INTEGER NOT NULL,
            sender TEXT NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX messages_by_room ON messages (room, id);
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );
        CREATE TABLE sessions (
            folded TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            token_hash BLOB NOT NULL,
            rooms TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '',
            ended_ms INTEGER
        );
        PRAGMA user_version = 2;
        PRAGMA application_id = 1396918356;
    ";

    #[test]
    fn a_database_of_the_last_release_keeps_its_sessions_and_takes_accounts() {
        let dir = scratch("v2");
        let path = dir.join("v2.db");
        let path = path.to_str().unwrap();
        {
            let conn = Connection::open(path).unwrap();
            conn.execute_batch(SCHEMA_V2).unwrap();
            conn.execute_batch(
                "INSERT INTO rooms (id, folded, name, last_id) VALUES (1, '#rust', '#Rust', 2);
                 INSERT INTO messages VALUES (1, 1, 1700000000001, 'bob', 'one'),
                     (2, 1, 1700000000002, 'amy', 'two');
                 INSERT INTO meta VALUES ('reserved', 16386);
                 INSERT INTO sessions VALUES ('amy', 'Amy', zeroblob(32), '#rust', '', NULL);",
            )
            .unwrap();
        }
        let (mut db, stored) = Db::open(path, keep(100)).unwrap();
        assert_eq!(stored.next_id, 16387);
        assert_eq!(stored.sessions.len(), 1, "the session kept");
        assert_eq!(stored.accounts, []);
        assert_eq!(ids(&db, "#rust", Anchor::Latest, 50), [1, 2]);
        let accounts = [Request::SaveAccount {
            ticket: 1,
            name: "Amy".into(),
            hash: Secret::new("$argon2id$stand-in"),
        }];
        db.commit(&[], &accounts.iter().collect::<Vec<_>>())
            .unwrap();
        drop(db);
        let (_, stored) = Db::open(path, keep(100)).unwrap();
        assert_eq!(
            stored.accounts,
            [("Amy".into(), Secret::new("$argon2id$stand-in"))]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sessions_are_saved_forgotten_and_aged_out_with_the_resume_window() {
        let dir = scratch("sessions");
        let path = dir.join("s.db");
        let path = path.to_str().unwrap();
        let (mut db, _) = Db::open(path, keep(100)).unwrap();
        let now = now_ms();
        let writes = [
            save("live", "#a", None),
            save("recent", "", Some(now - 60_000)),
            save("old", "", Some(now - 121_000)),
            save("gone", "#a", None),
            Request::ForgetSession {
                name: "GONE".into(),
            },
            save("Live", "#a #b", None),
        ];
        let writes: Vec<&Request> = writes.iter().collect();
        let messages = [msg(1, "x")];
        let appends = [Append {
            room: "#a",
            message: &messages[0],
        }];
        assert!(db.commit(&appends, &writes).unwrap().is_some());
        drop(db);
        let (db, stored) = Db::open(path, keep(100)).unwrap();
        let names: Vec<(&str, usize, bool)> = stored
            .sessions
            .iter()
            .map(|s| (&*s.name, s.rooms.len(), s.ended_ms.is_some()))
            .collect();
        assert_eq!(
            names,
            [("Live", 2, false), ("recent", 0, true)],
            "live first; forgotten and expired ones gone"
        );
        let rows: i64 = db
            .conn
            .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2, "the expired row was deleted");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_foreign_or_newer_database_is_refused_with_a_reason() {
        let dir = scratch("foreign");
        let other = dir.join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY);")
            .unwrap();
        let why = Db::open(other.to_str().unwrap(), keep(100))
            .err()
            .expect("refused")
            .to_string();
        assert!(why.contains("is not a selectchat database"), "{why}");
        assert!(why.contains("accounts"), "{why}");

        let newer = dir.join("newer.db");
        let newer = newer.to_str().unwrap();
        drop(Db::open(newer, keep(100)).unwrap());
        Connection::open(newer)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let why = Db::open(newer, keep(100))
            .err()
            .expect("refused")
            .to_string();
        assert!(why.contains("written by a newer selectchat"), "{why}");

        let tagged = dir.join("tagged.db");
        Connection::open(&tagged)
            .unwrap()
            .pragma_update(None, "application_id", 7)
            .unwrap();
        let why = Db::open(tagged.to_str().unwrap(), keep(100))
            .err()
            .expect("refused")
            .to_string();
        assert!(why.contains("application id"), "{why}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn messages_past_the_age_limit_are_deleted() {
        let retention = Retention {
            max_age: Some(Duration::from_secs(24 * 3600)),
            ..keep(100)
        };
        let (mut db, _) = Db::open(":memory:", retention).unwrap();
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + 3 * 86_400_000);
        let day = 86_400_000;
        let at = |id: MessageId, ms: u64| Message { ms, ..msg(id, "x") };
        let old = 1_700_000_000_000;
        let messages: Vec<Message> = (1..=2500).map(|id| at(id, old)).collect();
        commit(&mut db, "#a", &messages);
        commit(
            &mut db,
            "#b",
            &[at(2501, old + 2 * day + 3_600_000), at(2502, old + 3 * day)],
        );
        assert_eq!(db.prune(now).unwrap(), 2500);
        assert!(ids(&db, "#a", Anchor::Latest, 5).is_empty());
        assert_eq!(ids(&db, "#b", Anchor::Latest, 5), [2501, 2502]);
        commit(&mut db, "#a", &[at(2503, old)]);
        assert_eq!(db.prune(now).unwrap(), 0, "looked for once a minute");
        let later = now + AGE_CHECK;
        assert_eq!(db.prune(later).unwrap(), 1);
    }

    #[test]
    fn past_the_room_cap_the_least_recently_active_rooms_go() {
        let retention = Retention {
            max_rooms: 3,
            ..keep(100)
        };
        let (mut db, _) = Db::open(":memory:", retention).unwrap();
        for (id, room) in ["#a", "#b", "#c", "#d", "#e"].iter().enumerate() {
            commit(&mut db, room, &[msg(id as MessageId + 1, "x")]);
        }
        // #a speaks again: #b and #c are now the least recently active.
        commit(&mut db, "#a", &[msg(6, "y")]);
        assert_eq!(db.rooms(), 5);
        assert_eq!(db.prune(SystemTime::now()).unwrap(), 2);
        assert_eq!(db.rooms(), 3);
        for gone in ["#b", "#c"] {
            assert_eq!(db.lookup(gone).unwrap(), Found::Unknown, "{gone}");
            assert!(ids(&db, gone, Anchor::Latest, 5).is_empty());
        }
        assert_eq!(ids(&db, "#a", Anchor::Latest, 5), [1, 6]);
        assert_eq!(ids(&db, "#e", Anchor::Latest, 5), [5]);
        commit(&mut db, "#b", &[msg(7, "back")]);
        assert_eq!(
            db.lookup("#B").unwrap(),
            Found::Stored {
                spelling: "#b".into(),
                last: 7
            },
            "an evicted room starts afresh"
        );
    }
}
