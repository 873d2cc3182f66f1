//! The text rules both ends of the wire share: what separates words, which
//! characters may not reach another user's terminal, and what a name is.
//!
//! The server refuses a line that breaks them; the client checks a name
//! before sending it and scrubs anything a server lets through. One rule
//! each, here, so the two ends cannot drift apart.

use std::borrow::Cow;

/// Longest name accepted by `LOGIN`, in characters (names are ASCII).
pub const MAX_NAME: usize = 32;

/// The characters that separate words on a line: space and TAB.
pub fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits off the first blank-separated word; the rest has its leading blanks removed.
pub fn split_word(s: &str) -> (&str, &str) {
    match s.find(is_blank) {
        Some(i) => (&s[..i], s[i..].trim_start_matches(is_blank)),
        None => (s, ""),
    }
}

/// True for a character that could steer a terminal: the C0 controls but
/// TAB, DEL, and the C1 controls (exactly Unicode's `Cc` less TAB).
pub fn is_forbidden(c: char) -> bool {
    c != '\t' && c.is_control()
}

/// True when `text` holds a character a user may not send to others.
pub fn has_forbidden(text: &str) -> bool {
    text.chars().any(is_forbidden)
}

/// Replaces every forbidden character with U+FFFD, whatever a server let
/// through; borrows when there is nothing to replace.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if has_forbidden(text) {
        Cow::Owned(
            text.chars()
                .map(|c| if is_forbidden(c) { '\u{fffd}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// True when `name` is 1 to 32 characters of `A-Z a-z 0-9 _ -`.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// True when `room` is `#` followed by 1 to 32 characters of
/// `A-Z a-z 0-9 _ -`: a name with a `#` in front.
pub fn valid_room(room: &str) -> bool {
    room.strip_prefix('#').is_some_and(valid_name)
}

/// True when `tag` (a `SAY`'s, after the room's `/`) is 1 to 32
/// characters of `A-Z a-z 0-9 _ -`, as a name is.
pub fn valid_tag(tag: &str) -> bool {
    valid_name(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("a"));
        assert!(valid_name("Alice_the-2nd"));
        assert!(valid_name(&"x".repeat(32)));
        assert!(!valid_name(&"x".repeat(33)));
        assert!(!valid_name(""));
        assert!(!valid_name("al ice"));
        assert!(!valid_name("élise"));
        assert!(!valid_name("a.b"));
    }

    #[test]
    fn rooms_are_names_behind_a_hash() {
        assert!(valid_room("#a"));
        assert!(valid_room("#Rust-lang_2"));
        assert!(valid_room(&format!("#{}", "x".repeat(32))));
        assert!(!valid_room(&format!("#{}", "x".repeat(33))));
        for bad in ["#", "a", "", "##a", "#a b", "#é", "rust#"] {
            assert!(!valid_room(bad), "{bad:?}");
        }
    }

    #[test]
    fn words_split_on_blanks_only() {
        assert_eq!(split_word("dm \t bob  hi"), ("dm", "bob  hi"));
        assert_eq!(split_word("who"), ("who", ""));
        assert_eq!(split_word("a\u{a0}b c"), ("a\u{a0}b", "c"));
    }

    #[test]
    fn forbidden_characters_are_c0_del_and_c1_but_not_tab() {
        for c in [
            '\0', '\x1b', '\r', '\n', '\x7f', '\u{80}', '\u{85}', '\u{9f}',
        ] {
            assert!(is_forbidden(c), "{c:?}");
        }
        for c in ['\t', ' ', 'a', '\u{a0}', 'é', '✓'] {
            assert!(!is_forbidden(c), "{c:?}");
        }
        assert_eq!(sanitize("a\u{1b}[2J\u{9b}b\tc"), "a\u{fffd}[2J\u{fffd}b\tc");
        assert!(matches!(sanitize("plain ünïcode"), Cow::Borrowed(_)));
    }
}
