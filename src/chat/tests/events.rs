//! The apply step with events alone, as a cluster's log would feed it:
//! users and room members of other nodes, known by name only.

use super::*;
use crate::chat::event::Event;

#[test]
fn a_remote_user_arrives_joins_speaks_and_leaves_through_events() {
    let (mut chat, mut out) = setup(&["amy"]);
    line(&mut chat, &mut out, 0, "JOIN #r");
    out.0.clear();
    chat.apply(
        Event::Arrived {
            name: "Zed",
            home: "n2-1",
        },
        &mut out,
    );
    assert_eq!(out.take(0), "INFO Zed joined\n");
    chat.apply(
        Event::Entered {
            room: "#r",
            name: "Zed",
        },
        &mut out,
    );
    assert_eq!(out.take(0), "INFO #r Zed joined\n");
    line(&mut chat, &mut out, 0, "WHO");
    line(&mut chat, &mut out, 0, "WHO #r");
    line(&mut chat, &mut out, 0, "ROOMS");
    assert_eq!(
        out.take(0),
        "USER amy\nUSER Zed\nUSER amy\nUSER Zed\nEND WHO #r\nROOM #r 2\nEND ROOMS\n"
    );
    let said = Event::Said {
        room: "#r",
        id: 7,
        ms: 1,
        from: "Zed",
        text: "from afar",
    };
    chat.apply(said, &mut out);
    chat.apply(
        Event::Msg {
            from: "Zed",
            text: "hi all",
        },
        &mut out,
    );
    assert_eq!(out.take(0), "SAY #r 7 Zed from afar\nMSG Zed hi all\n");
    line(&mut chat, &mut out, 0, "LOGIN zed");
    assert_eq!(out.take(0), "ERR already-logged-in\n");
    line(&mut chat, &mut out, 1, "LOGIN zed");
    assert_eq!(out.take(1), "ERR username-taken\n", "held on another node");
    chat.apply(Event::Departed { name: "zed" }, &mut out);
    assert_eq!(out.take(0), "INFO #r Zed left\nINFO Zed disconnected\n");
    assert_eq!(chat.users(), 1);
    line(&mut chat, &mut out, 1, "LOGIN zed");
    assert_eq!(out.take(1), "OK\n", "the name is free again");
}

#[test]
fn a_room_held_only_by_remote_members_stays_and_closes_with_the_last() {
    let (mut chat, mut out) = setup(&["amy"]);
    for name in ["x", "y"] {
        chat.apply(Event::Arrived { name, home: "n2-1" }, &mut out);
        chat.apply(Event::Entered { room: "#far", name }, &mut out);
    }
    assert_eq!(chat.rooms(), 1);
    line(&mut chat, &mut out, 0, "JOIN #FAR");
    out.take(0);
    line(&mut chat, &mut out, 0, "PART #far");
    assert_eq!(out.take(0), "PARTED #far\n");
    chat.apply(
        Event::Left {
            room: "#far",
            name: "x",
        },
        &mut out,
    );
    assert_eq!(chat.rooms(), 1, "y is still in it");
    chat.apply(Event::Departed { name: "y" }, &mut out);
    assert_eq!(chat.rooms(), 0, "the last one out closes it");
    chat.check_invariants();
}

#[test]
fn repeated_or_stray_events_change_nothing_and_say_nothing() {
    let (mut chat, mut out) = setup(&["amy"]);
    line(&mut chat, &mut out, 0, "JOIN #r");
    chat.apply(
        Event::Arrived {
            name: "zed",
            home: "n2-1",
        },
        &mut out,
    );
    chat.apply(
        Event::Entered {
            room: "#r",
            name: "zed",
        },
        &mut out,
    );
    out.0.clear();
    for event in [
        Event::Arrived {
            name: "ZED",
            home: "n2-1",
        },
        Event::Arrived {
            name: "amy",
            home: "n2-1",
        },
        Event::Entered {
            room: "#r",
            name: "zed",
        },
        Event::Entered {
            room: "#r",
            name: "nobody",
        },
        Event::Left {
            room: "#elsewhere",
            name: "zed",
        },
        Event::Left {
            room: "#r",
            name: "nobody",
        },
        Event::Departed { name: "nobody" },
        Event::Said {
            room: "#gone",
            id: 9,
            ms: 1,
            from: "zed",
            text: "x",
        },
    ] {
        chat.apply(event, &mut out);
        chat.check_invariants();
    }
    assert!(out.0.is_empty(), "{:?}", out.0);
    assert_eq!((chat.users(), chat.rooms()), (2, 1));
}

#[test]
fn presence_counts_members_on_every_node() {
    let limits = Limits {
        presence_limit: 2,
        ..Limits::default()
    };
    let (mut chat, mut out) = with_limits(limits, &["amy"]);
    chat.apply(
        Event::Arrived {
            name: "zed",
            home: "n2-1",
        },
        &mut out,
    );
    assert_eq!(out.take(0), "INFO zed joined\n", "two in the lobby");
    chat.apply(
        Event::Arrived {
            name: "yan",
            home: "n2-1",
        },
        &mut out,
    );
    assert_eq!(out.take(0), "", "three: past the limit");
    line(&mut chat, &mut out, 1, "LOGIN bob");
    assert_eq!(
        out.take(0),
        "",
        "four: a local login is not announced either"
    );
}
