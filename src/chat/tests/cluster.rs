//! A node of a cluster driven with lines and log entries alone: the test
//! plays the log (numbering and handing back what the node published),
//! the name registry and the other nodes. No NATS.

use super::*;
use crate::chat::cluster::{BusRequest, Claim, Effect};
use crate::chat::event::Phc;
use crate::chat::history::Request;

const HOME: &str = "n1-aa";

/// A node plus the log it writes to, played by the test.
struct Node {
    chat: Chat,
    out: Recorder,
    /// The next sequence number of the log.
    seq: MessageId,
    /// What the node asked of the bridge and the test did not answer yet.
    bus: Vec<BusRequest>,
    /// What the node asked of the store.
    store: Vec<Request>,
}

impl Node {
    /// A node whose store holds the log's messages up to `stored_through`;
    /// the log goes on after them.
    fn new(stored_through: MessageId) -> Node {
        let mut chat = Chat::new(Limits::default());
        chat.join_cluster(HOME, stored_through);
        Node {
            chat,
            out: Recorder::default(),
            seq: stored_through + 1,
            bus: Vec::new(),
            store: Vec::new(),
        }
    }

    /// Takes the node's effects; room lookups are answered at once (no
    /// room is stored), and their released connections returned.
    fn collect(&mut self) -> Vec<ConnId> {
        let mut released = Vec::new();
        let mut effects = self.chat.take_effects();
        while !effects.is_empty() {
            for effect in effects {
                match effect {
                    Effect::Store(Request::Lookup { ticket, .. }) => {
                        let found = Found::Unknown;
                        let looked = Outcome::Looked { ticket, found };
                        let answered = self.chat.on_store(looked, &mut self.out);
                        released.extend(answered.map(|(id, _)| id));
                    }
                    Effect::Store(r) => self.store.push(r),
                    Effect::Bus(r) => self.bus.push(r),
                    Effect::Replaced(ghost) => panic!("a cluster replaces no {ghost}"),
                    Effect::Hash(job) => {
                        let verdict = cheap_hashing().run(job);
                        let answered = self.chat.on_verdict(verdict, t0(), &mut self.out);
                        released.extend(answered.map(|(id, _)| id));
                    }
                }
            }
            effects = self.chat.take_effects();
        }
        self.chat.check_invariants();
        released
    }

    fn line(&mut self, id: ConnId, text: &str) -> Step {
        let step = self.chat.on_line(id, text.as_bytes(), t0(), &mut self.out);
        self.collect();
        step
    }

    /// Answers every claim with `claim`; returns the released connections.
    fn claims(&mut self, claim: Claim) -> Vec<(ConnId, Step)> {
        let mut released = Vec::new();
        for r in std::mem::take(&mut self.bus) {
            match r {
                BusRequest::Claim { ticket, name } => {
                    let answer = self.chat.on_claimed(ticket, &name, claim, &mut self.out);
                    released.extend(answer);
                }
                other => self.bus.push(other),
            }
        }
        self.collect();
        released
    }

    /// Puts everything the node published in the log and applies it, in
    /// order; returns the released connections.
    fn publish_all(&mut self) -> Vec<(ConnId, Step)> {
        let mut released = Vec::new();
        while let Some(i) = self
            .bus
            .iter()
            .position(|r| matches!(r, BusRequest::Publish { .. }))
        {
            let BusRequest::Publish { stamp, payload, .. } = self.bus.remove(i) else {
                unreachable!()
            };
            released.extend(self.entry(Some((HOME, stamp)), &payload));
        }
        released
    }

    /// Applies one entry of the log, from `origin`.
    fn entry(&mut self, origin: Option<(&str, u64)>, payload: &[u8]) -> Option<(ConnId, Step)> {
        let seq = self.seq;
        self.seq += 1;
        let event = Event::decode(payload, seq).expect("an event");
        let released = self.chat.on_logged(seq, origin, event, &mut self.out);
        self.collect();
        released
    }

    /// An event of another node.
    fn remote(&mut self, event: Event<'_>) {
        let mut payload = Vec::new();
        event.encode(&mut payload);
        self.entry(Some(("n2-bb", 1)), &payload);
    }

    /// Commits every account write asked of the store (or fails them),
    /// and answers every unread list with nothing unread; returns the
    /// released connections.
    fn store_accounts(&mut self, saved: bool) -> Vec<(ConnId, Step)> {
        let mut released = Vec::new();
        for r in std::mem::take(&mut self.store) {
            let outcome = match r {
                Request::SaveAccount { ticket, .. } => Outcome::AccountSaved { ticket, saved },
                Request::Unread { ticket, .. } => Outcome::Unread {
                    ticket,
                    conversations: Some(Vec::new()),
                },
                other => {
                    self.store.push(other);
                    continue;
                }
            };
            released.extend(self.chat.on_store(outcome, &mut self.out));
        }
        self.collect();
        released
    }

    /// An account another node made.
    fn remote_account(&mut self, name: &str) {
        self.remote(Event::Registered {
            name,
            hash: Phc(HASH),
        });
    }

    /// Registers `name` on connection `id` through the registry, the log
    /// and the store.
    fn register(&mut self, id: ConnId, name: &str) {
        self.line(id, &format!("REGISTER {name} password1"));
        self.claims(Claim::Won);
        self.publish_all();
        self.store_accounts(true);
        self.publish_all();
        assert_eq!(self.store_accounts(true), [(id, Step::LoggedIn)]);
        assert_eq!(self.out.take(id), "OK\nEND UNREAD\n");
    }

    fn login(&mut self, id: ConnId, name: &str) {
        assert_eq!(self.line(id, &format!("LOGIN {name}")), Step::Wait);
        assert!(self.claims(Claim::Won).is_empty());
        assert_eq!(self.publish_all(), [(id, Step::LoggedIn)]);
        assert_eq!(self.out.take(id), "OK\n");
    }
}

use crate::chat::event::Event;

#[test]
fn every_event_reads_back_as_it_was_written() {
    let events = [
        Event::Arrived {
            name: "amy",
            home: "n1-aa",
        },
        Event::Departed { name: "amy" },
        Event::Msg {
            from: "amy",
            text: "  two  spaces\tand a tab ",
        },
        Event::Entered {
            room: "#r",
            name: "amy",
        },
        Event::Left {
            room: "#r",
            name: "amy",
        },
        Event::Said {
            room: "#r",
            id: 42,
            ms: 1_700_000_000_123,
            from: "amy",
            text: "hi there",
        },
        Event::Gone { home: "n2-bb" },
        Event::Registered {
            name: "amy",
            hash: Phc(HASH),
        },
        Event::Rekeyed {
            name: "amy",
            hash: Phc(HASH),
        },
        Event::Direct {
            from: "amy",
            to: "zed",
            id: 42,
            ms: 1_700_000_000_123,
            text: "a  b ",
        },
        Event::Read {
            name: "amy",
            peer: "zed",
            id: 7,
        },
        Event::Created {
            room: "#r",
            owner: "amy",
        },
        Event::Invited {
            room: "#r",
            name: "zed",
            by: "amy",
        },
        Event::Removed {
            room: "#r",
            name: "zed",
        },
    ];
    for event in events {
        let mut payload = Vec::new();
        event.encode(&mut payload);
        assert_eq!(Event::decode(&payload, 42), Some(event), "{payload:?}");
        assert!(
            !format!("{event:?}").contains(HASH),
            "a hash is never shown"
        );
    }
    for bad in [
        &b""[..],
        b"A amy",
        b"A am.y n1",
        b"A amy n1.x",
        b"M amy ",
        b"M amy bell\x07",
        b"E r amy",
        b"S #r x amy hi",
        b"S #r 5 amy",
        b"X amy",
        b"D \xff",
        b"R amy hash",
        b"R amy $a b",
        b"K amy",
        b"P amy zed x hi",
        b"P amy #r 1 hi",
        b"Q amy zed x",
        b"C r amy",
        b"I #r zed",
        b"X #r",
    ] {
        assert_eq!(Event::decode(bad, 1), None, "{bad:?}");
    }
}

#[test]
fn a_login_claims_the_name_then_waits_for_its_arrival_in_the_log() {
    let mut node = Node::new(0);
    node.login(0, "amy");
    assert_eq!(node.line(1, "LOGIN bob"), Step::Wait);
    assert_eq!(node.out.take(1), "", "nothing before the claim is answered");
    node.claims(Claim::Won);
    assert_eq!(
        node.out.take(1),
        "",
        "nothing before the arrival is in the log"
    );
    assert_eq!(node.chat.users(), 1);
    assert_eq!(node.publish_all(), [(1, Step::LoggedIn)]);
    assert_eq!(node.out.take(1), "OK\n");
    assert_eq!(node.out.take(0), "INFO bob joined\n");
    // Taken on another node, or the registry out of reach.
    node.line(2, "LOGIN carol");
    assert_eq!(node.claims(Claim::Taken), [(2, Step::Continue)]);
    node.line(2, "LOGIN carol");
    assert_eq!(node.claims(Claim::Unavailable), [(2, Step::Continue)]);
    assert_eq!(
        node.out.take(2),
        "ERR username-taken\nERR cluster-unavailable\n"
    );
    // Known taken here already: no claim at all.
    assert_eq!(node.line(2, "LOGIN AMY"), Step::Continue);
    assert!(node.bus.is_empty());
    assert_eq!(node.out.take(2), "ERR username-taken\n");
}

#[test]
fn a_login_whose_connection_left_gives_its_name_back() {
    let mut node = Node::new(0);
    node.line(0, "LOGIN amy");
    node.chat.leave(0, &mut node.out);
    node.claims(Claim::Won);
    assert_eq!(
        node.bus,
        [BusRequest::Release { name: "amy".into() }],
        "never kept"
    );
    // Left after the claim: it arrives, and departs at once.
    node.bus.clear();
    node.line(1, "LOGIN bob");
    node.claims(Claim::Won);
    node.chat.leave(1, &mut node.out);
    node.collect();
    assert!(node.publish_all().is_empty());
    assert_eq!(node.chat.users(), 0, "arrived and departed");
    assert!(node.bus.is_empty());
}

#[test]
fn join_and_part_wait_for_the_log_and_say_is_numbered_by_it() {
    let mut node = Node::new(0);
    node.login(0, "amy");
    node.remote(Event::Arrived {
        name: "zed",
        home: "n2-bb",
    });
    node.remote(Event::Entered {
        room: "#r",
        name: "zed",
    });
    assert_eq!(node.out.take(0), "INFO zed joined\n");
    assert_eq!(node.line(0, "JOIN #R"), Step::Wait);
    assert_eq!(node.out.take(0), "");
    assert_eq!(node.publish_all(), [(0, Step::Continue)]);
    assert_eq!(node.out.take(0), "JOINED #r 2\n");
    // A SAY does not wait; its id is its place in the log, and SENT
    // follows the commit.
    assert_eq!(node.line(0, "SAY #r hello"), Step::Continue);
    assert!(node.publish_all().is_empty());
    let [Request::Append { message, .. }] = &node.store[..] else {
        panic!("one append: {:?}", node.store)
    };
    assert_eq!((message.id, &*message.text), (5, "hello"));
    node.store.clear();
    let committed = Outcome::Committed {
        through: 5,
        reserved: 0,
    };
    node.chat.on_store(committed, &mut node.out);
    assert_eq!(node.out.take(0), "SENT #r 5\n");
    // Another node's message is delivered and stored, with no SENT.
    node.remote(Event::Said {
        room: "#r",
        id: 0,
        ms: 7,
        from: "zed",
        text: "yo",
    });
    assert_eq!(node.out.take(0), "SAY #r 6 zed yo\n");
    assert_eq!(node.store.len(), 1);
    assert_eq!(node.line(0, "PART #r"), Step::Wait);
    assert_eq!(node.publish_all(), [(0, Step::Continue)]);
    assert_eq!(node.out.take(0), "PARTED #r\n");
    node.line(0, "ROOMS");
    assert_eq!(node.out.take(0), "ROOM #r 1\nEND ROOMS\n");
}

#[test]
fn a_departure_goes_through_the_log_and_the_user_is_known_until_then() {
    let mut node = Node::new(0);
    node.login(0, "amy");
    node.login(1, "bob");
    node.line(0, "JOIN #r");
    node.publish_all();
    node.out.0.clear();
    node.chat.leave(0, &mut node.out);
    node.collect();
    let [BusRequest::Publish { release, .. }] = &node.bus[..] else {
        panic!("one departure: {:?}", node.bus)
    };
    assert_eq!(
        release.as_deref(),
        Some("amy"),
        "its name is released with it"
    );
    node.line(1, "WHO");
    assert_eq!(node.out.take(1), "USER amy\nUSER bob\n", "not yet departed");
    node.line(2, "LOGIN amy");
    assert_eq!(node.out.take(2), "ERR username-taken\n");
    node.publish_all();
    assert_eq!(node.out.take(1), "INFO amy disconnected\n");
    node.line(1, "ROOMS");
    assert_eq!(node.out.take(1), "END ROOMS\n");
}

#[test]
fn a_gone_node_takes_its_users_and_seats_with_it() {
    let mut node = Node::new(0);
    node.login(0, "amy");
    for name in ["x", "y"] {
        node.remote(Event::Arrived {
            name,
            home: "n2-bb",
        });
        node.remote(Event::Entered { room: "#r", name });
    }
    node.remote(Event::Arrived {
        name: "w",
        home: "n3-cc",
    });
    node.out.0.clear();
    node.remote(Event::Gone { home: "n2-bb" });
    node.line(0, "WHO");
    node.line(0, "ROOMS");
    assert_eq!(node.out.take(0).matches("disconnected").count(), 2);
    node.line(0, "WHO");
    assert_eq!(node.out.take(0), "USER amy\nUSER w\n");
    // What the gone node sent just before its burial brings nobody back.
    node.remote(Event::Arrived {
        name: "late",
        home: "n2-bb",
    });
    node.line(0, "WHO");
    assert_eq!(node.out.take(0), "USER amy\nUSER w\n");
}

#[test]
fn a_say_the_log_did_not_take_is_an_error_and_a_dm_crosses_nodes() {
    let mut node = Node::new(0);
    node.login(0, "amy");
    node.line(0, "JOIN #r");
    node.publish_all();
    node.out.take(0);
    node.line(0, "SAY #r lost");
    let [BusRequest::Publish { stamp, .. }] = node.bus[..] else {
        panic!("one publish")
    };
    node.bus.clear();
    node.chat.on_unpublished(stamp, &mut node.out);
    assert_eq!(node.out.take(0), "ERR storage-unavailable\n");
    node.remote(Event::Arrived {
        name: "zed",
        home: "n2-bb",
    });
    node.line(0, "DM zed psst");
    node.line(0, "DM nobody psst");
    assert_eq!(node.out.take(0), "INFO zed joined\nERR no-such-user\n");
    let [BusRequest::Dm { home, payload }] = &node.bus[..] else {
        panic!("one dm: {:?}", node.bus)
    };
    assert_eq!((&**home, &payload[..]), ("n2-bb", &b"zed amy psst"[..]));
    node.chat.on_dm(b"amy zed back at you", &mut node.out);
    node.chat.on_dm(b"nobody zed lost", &mut node.out);
    assert_eq!(node.out.take(0), "DM zed back at you\n");
}

#[test]
fn a_restarted_node_replays_the_log_without_storing_twice() {
    let mut node = Node::new(3);
    // The whole log again, from its first entry.
    node.seq = 1;
    node.remote(Event::Arrived {
        name: "zed",
        home: "n2-bb",
    });
    node.remote(Event::Entered {
        room: "#r",
        name: "zed",
    });
    for _ in 0..2 {
        node.remote(Event::Said {
            room: "#r",
            id: 0,
            ms: 1,
            from: "zed",
            text: "x",
        });
    }
    let ids: Vec<MessageId> = node
        .store
        .iter()
        .filter_map(|r| match r {
            Request::Append { message, .. } => Some(message.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [4], "3 was stored before the restart");
}

#[test]
fn a_session_moves_between_nodes_through_take_and_the_log() {
    use crate::chat::cluster::Taken;
    use crate::chat::resume::Tags;
    // This node holds amy's ghost; another node asks for it.
    let mut node = Node::new(0);
    node.login(0, "amy");
    node.line(0, "TOKEN");
    let token = node.out.take(0).trim().replace("TOKEN ", "");
    node.line(0, "JOIN #r");
    node.publish_all();
    node.line(0, "SAY #r/t1 tagged");
    node.publish_all();
    node.out.take(0);
    assert_eq!(node.chat.on_take(7, "amy", &"0".repeat(32), "n2-bb"), None);
    assert_eq!(node.chat.on_take(8, "amy", &token, "n2-bb"), Some(0));
    node.collect();
    let answers: Vec<&BusRequest> = node
        .bus
        .iter()
        .filter(|r| matches!(r, BusRequest::Answer { .. }))
        .collect();
    assert!(
        matches!(
            answers[..],
            [
                BusRequest::Answer {
                    request: 7,
                    taken: Taken::No,
                    ..
                },
                BusRequest::Answer {
                    request: 8,
                    taken: Taken::Ghost(ref tags),
                    ..
                },
            ] if tags.find("t1").is_some()
        ),
        "its tags go with it: {answers:?}"
    );
    assert_eq!(node.chat.name(0), None, "the ghost is let go");
    node.publish_all();
    node.line(1, "LOGIN watcher");
    node.claims(Claim::Won);
    node.publish_all();
    node.line(1, "WHO");
    assert_eq!(
        node.out.take(1),
        "OK\nUSER amy\nUSER watcher\n",
        "amy lives elsewhere now"
    );
    // And back: this node asks for bob, who lives on n2-bb.
    node.remote(Event::Arrived {
        name: "bob",
        home: "n2-bb",
    });
    node.remote(Event::Entered {
        room: "#q",
        name: "bob",
    });
    assert_eq!(node.line(2, &format!("RESUME bob {token}")), Step::Wait);
    let Some(BusRequest::Take { ticket, at, .. }) = node.bus.pop() else {
        panic!("a take: {:?}", node.bus)
    };
    assert_eq!(at.as_deref(), Some("n2-bb"), "asked where bob lives");
    // The move may come through the log before the answer.
    node.remote(Event::Moved {
        name: "bob",
        home: HOME,
    });
    assert_eq!(node.out.take(2), "OK\nJOINED #q 1\n");
    let tags = Tags::decode("t9:#q:900");
    assert_eq!(
        node.chat
            .on_took(ticket, Taken::Ghost(tags.clone()), &mut node.out),
        Some((2, Step::LoggedIn)),
        "it read nothing until the answer brought its tags"
    );
    assert_eq!(node.chat.name(2), Some("bob"));
    // Its tags came with it: a resent line is answered, not said again.
    node.line(2, "SAY #q/t9 again");
    assert_eq!(node.out.take(2), "SENT #q 900\n");
    let ended = Taken::Ended(vec!["#a".into()], tags);
    assert_eq!(Taken::decode(&ended.encode()), ended);
    assert_eq!(
        Taken::decode(b"ended #a"),
        Taken::Ended(vec!["#a".into()], Tags::default()),
        "no tags"
    );
    assert_eq!(Taken::decode(b"ended #a b"), Taken::No, "a room without #");
}

/// A PHC string as another node's hasher would have made it.
const HASH: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

#[test]
fn an_account_is_made_through_the_registry_the_log_and_the_store() {
    let mut node = Node::new(0);
    node.login(0, "watcher");
    assert_eq!(node.line(1, "REGISTER alice password1"), Step::Wait);
    assert!(node.claims(Claim::Won).is_empty());
    assert!(node.publish_all().is_empty(), "waits for the commit");
    assert!(node.chat.accounts.is_registered("alice"));
    assert!(node.store_accounts(true).is_empty(), "then for the arrival");
    assert_eq!(node.out.take(1), "");
    assert!(node.publish_all().is_empty(), "then for its unread list");
    assert_eq!(node.out.take(1), "OK\n");
    assert_eq!(node.store_accounts(true), [(1, Step::LoggedIn)]);
    assert_eq!(node.out.take(1), "END UNREAD\n");
    assert_eq!(node.out.take(0), "INFO alice joined\n");
    // An account another node made: a guest may not take its name, and
    // this node checks its password.
    node.remote_account("bob");
    node.line(2, "LOGIN bob");
    node.line(2, "REGISTER bob password2");
    node.line(2, "LOGIN bob password2");
    assert_eq!(
        node.out.take(2),
        "ERR password-required\nERR username-taken\nERR bad-password\n"
    );
    // A password does not take a name over from a connection in a
    // cluster: the registry holds it for that one.
    node.line(2, "LOGIN alice password1");
    assert_eq!(node.out.take(2), "ERR username-taken\n");
    // Its password changes through the log too.
    assert_eq!(node.line(1, "PASSWORD password1 password9"), Step::Wait);
    assert!(node.publish_all().is_empty(), "waits for the commit");
    assert_eq!(node.store_accounts(true), [(1, Step::Continue)]);
    assert_eq!(node.out.take(1), "OK\n");
}

#[test]
fn of_two_registrations_of_one_name_the_log_keeps_the_first() {
    let mut node = Node::new(0);
    node.line(1, "REGISTER carol password1");
    node.claims(Claim::Won);
    // Another node's registration of the name got into the log first (its
    // user gone since, so the registry let this one claim the name).
    node.remote_account("Carol");
    assert_eq!(node.publish_all(), [(1, Step::Continue)]);
    assert_eq!(node.out.take(1), "ERR username-taken\n");
    assert_eq!(
        node.bus,
        [BusRequest::Release {
            name: "carol".into()
        }]
    );
    let saves = node
        .store
        .iter()
        .filter(|r| matches!(r, Request::SaveAccount { name, .. } if &**name == "Carol"));
    assert_eq!(saves.count(), 1, "the first one's account only");
}

#[test]
fn direct_messages_are_numbered_by_the_log_and_cross_nodes() {
    let mut node = Node::new(0);
    node.register(0, "amy");
    node.remote_account("zed");
    // zed is offline: the message is stored all the same, and SENT
    // follows the commit.
    assert_eq!(node.line(0, "SAY @Zed hello"), Step::Continue);
    node.publish_all();
    let appended: Vec<_> = node
        .store
        .iter()
        .filter_map(|r| match r {
            Request::Append { room, message } => Some((room.to_string(), message.id)),
            _ => None,
        })
        .collect();
    let [(key, id)] = &appended[..] else {
        panic!("one append: {appended:?}")
    };
    assert_eq!(key, "@amy@zed");
    let committed = Outcome::Committed {
        through: *id,
        reserved: *id,
    };
    node.chat.on_store(committed, &mut node.out);
    assert_eq!(node.out.take(0), format!("SENT @zed {id}\n"));
    // zed, on another node, answers.
    node.remote(Event::Direct {
        from: "zed",
        to: "amy",
        id: 0,
        ms: 1,
        text: "hi amy",
    });
    let seq = node.seq - 1;
    assert_eq!(node.out.take(0), format!("SAY @zed {seq} zed hi amy\n"));
    // A read mark goes through the log.
    node.line(0, &format!("READ @zed {seq}"));
    node.publish_all();
    assert!(node.store.iter().any(
        |r| matches!(r, Request::Read { name, peer, id } if (&**name, &**peer, *id) == ("amy", "zed", seq))
    ));
}

#[test]
fn invite_only_rooms_are_decided_by_the_log() {
    let mut node = Node::new(0);
    node.register(0, "amy");
    node.remote_account("zed");
    node.remote(Event::Arrived {
        name: "zed",
        home: "n2-bb",
    });
    node.out.take(0);
    assert_eq!(node.line(0, "JOIN #team invite-only"), Step::Wait);
    assert_eq!(node.publish_all(), [(0, Step::Continue)]);
    assert_eq!(node.out.take(0), "JOINED #team 1\n");
    // zed's JOIN was decided on its node before the room was made there:
    // the log says no.
    node.remote(Event::Entered {
        room: "#team",
        name: "zed",
    });
    assert_eq!(node.out.take(0), "");
    node.line(0, "WHO #team");
    assert_eq!(node.out.take(0), "USER amy\nEND WHO #team\n");
    node.line(0, "INVITE #team zed");
    assert_eq!(node.publish_all(), [(0, Step::Continue)]);
    assert_eq!(node.out.take(0), "INVITED #team zed\n");
    node.remote(Event::Entered {
        room: "#team",
        name: "zed",
    });
    assert_eq!(node.out.take(0), "INFO #team zed joined\n");
    // Removed: out of the room on every node at once.
    node.line(0, "REMOVE #team zed");
    assert_eq!(node.publish_all(), [(0, Step::Continue)]);
    assert_eq!(node.out.take(0), "REMOVED #team zed\nINFO #team zed left\n");
    // A room another node made first: this node's JOIN of it is refused
    // when it comes back through the log.
    node.line(0, "JOIN #den");
    node.remote(Event::Created {
        room: "#den",
        owner: "zed",
    });
    assert_eq!(node.publish_all(), [(0, Step::Continue)]);
    assert_eq!(node.out.take(0), "ERR not-invited\n");
}

#[test]
fn a_tagged_say_is_said_once_however_often_it_is_resent() {
    let mut node = Node::new(0);
    node.login(0, "amy");
    node.line(0, "TOKEN");
    let token = node.out.take(0).trim().replace("TOKEN ", "");
    node.line(0, "JOIN #r");
    node.publish_all();
    node.out.take(0);
    let published = |node: &mut Node| {
        let n = node
            .bus
            .iter()
            .filter(|r| matches!(r, BusRequest::Publish { .. }))
            .count();
        node.publish_all();
        n
    };
    // The connection goes silent before the SAY is back from the log;
    // another connection takes the session over (the first is a ghost,
    // still here) and sends the line again.
    node.line(0, "SAY #r/t1 hello");
    assert_eq!(
        node.line(1, &format!("RESUME amy {token}")),
        Step::Replaced(0)
    );
    node.line(1, "SAY #r/t1 hello");
    node.line(1, "SAY #r/t2 after");
    assert_eq!(published(&mut node), 2, "each SAY once");
    let ids: Vec<MessageId> = node
        .store
        .iter()
        .filter_map(|r| match r {
            Request::Append { message, .. } => Some(message.id),
            _ => None,
        })
        .collect();
    let [first, second] = ids[..] else {
        panic!("two appends: {ids:?}")
    };
    let committed = Outcome::Committed {
        through: second,
        reserved: second,
    };
    node.chat.on_store(committed, &mut node.out);
    let out = node.out.take(1);
    assert!(
        out.ends_with(&format!("SENT #r {first}\nSENT #r {second}\n")),
        "each SENT once, to the connection that resent: {out:?}"
    );
    // Resent once more: the same answer, nothing said.
    node.line(1, "SAY #r/t1 hello");
    assert_eq!(published(&mut node), 0);
    assert_eq!(node.out.take(1), format!("SENT #r {first}\n"));
}
