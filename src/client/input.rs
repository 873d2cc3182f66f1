//! The line being typed: cursor movement by character and by word, history,
//! and display widths from `unicode-width`, so a wide character takes two
//! columns and the cursor lands where the terminal draws it.
//!
//! Invariant: `cursor` is a char boundary of `text`, and `text` holds no
//! control characters and at most [`MAX_LINE`] bytes.

use unicode_width::UnicodeWidthChar;

/// Longest line the editor holds; typing or pasting beyond it is cut.
pub const MAX_LINE: usize = 16 * 1024;
/// Lines kept for Up/Down.
const MAX_HISTORY: usize = 200;

/// The input line and its history.
#[derive(Debug, Default)]
pub struct Input {
    text: String,
    /// Byte offset into `text`.
    cursor: usize,
    history: Vec<String>,
    /// Where Up/Down is in `history`; `None` while editing a new line.
    browsing: Option<usize>,
    /// The new line put aside while browsing.
    draft: String,
}

fn is_word(c: char) -> bool {
    !c.is_whitespace()
}

impl Input {
    /// The text typed so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor as a byte offset.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Inserts text at the cursor; control characters become spaces or vanish.
    pub fn insert(&mut self, s: &str) {
        for c in s.chars() {
            let c = match c {
                '\t' => ' ',
                c if c.is_control() => continue,
                c => c,
            };
            if self.text.len() + c.len_utf8() > MAX_LINE {
                break;
            }
            self.text.insert(self.cursor, c);
            self.cursor += c.len_utf8();
        }
    }

    /// Takes the line (Enter), remembering it for Up.
    pub fn take(&mut self) -> String {
        let line = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() == MAX_HISTORY {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
    }

    /// Takes the line without remembering it: a password must not come
    /// back with Up.
    pub fn take_secret(&mut self) -> String {
        self.cursor = 0;
        self.browsing = None;
        std::mem::take(&mut self.text)
    }

    /// Replaces the whole line (Tab completion, history).
    pub fn set(&mut self, text: &str, cursor: usize) {
        self.text.clear();
        self.cursor = 0;
        self.insert(text);
        self.cursor = cursor.min(self.text.len());
        while !self.text.is_char_boundary(self.cursor) {
            self.cursor -= 1;
        }
    }

    fn prev_boundary(&self, at: usize) -> usize {
        self.text[..at]
            .char_indices()
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self, at: usize) -> usize {
        self.text[at..]
            .chars()
            .next()
            .map_or(at, |c| at + c.len_utf8())
    }

    pub fn left(&mut self) {
        self.cursor = self.prev_boundary(self.cursor);
    }

    pub fn right(&mut self) {
        self.cursor = self.next_boundary(self.cursor);
    }

    pub fn home(&mut self) {
        self.cursor = 0;
    }

    pub fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// Start of the word before the cursor (skipping spaces first).
    fn word_start(&self) -> usize {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches(|c: char| !is_word(c));
        trimmed
            .char_indices()
            .rev()
            .find(|&(_, c)| !is_word(c))
            .map_or(0, |(i, c)| i + c.len_utf8())
    }

    /// End of the word after the cursor (skipping spaces first).
    fn word_end(&self) -> usize {
        let after = &self.text[self.cursor..];
        let skip = after.len() - after.trim_start_matches(|c: char| !is_word(c)).len();
        let rest = &after[skip..];
        let word = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        self.cursor + skip + word
    }

    pub fn word_left(&mut self) {
        self.cursor = self.word_start();
    }

    pub fn word_right(&mut self) {
        self.cursor = self.word_end();
    }

    pub fn backspace(&mut self) {
        let from = self.prev_boundary(self.cursor);
        self.text.replace_range(from..self.cursor, "");
        self.cursor = from;
    }

    pub fn delete(&mut self) {
        let to = self.next_boundary(self.cursor);
        self.text.replace_range(self.cursor..to, "");
    }

    /// Ctrl-W: deletes the word before the cursor.
    pub fn delete_word(&mut self) {
        let from = self.word_start();
        self.text.replace_range(from..self.cursor, "");
        self.cursor = from;
    }

    /// Ctrl-U: deletes everything before the cursor.
    pub fn delete_to_start(&mut self) {
        self.text.replace_range(..self.cursor, "");
        self.cursor = 0;
    }

    /// Up: the previous line from history.
    pub fn older(&mut self) {
        let at = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = std::mem::take(&mut self.text);
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.browsing = Some(at);
        let line = self.history[at].clone();
        self.set(&line, usize::MAX);
    }

    /// Down: the next line from history, then the line put aside.
    pub fn newer(&mut self) {
        let Some(i) = self.browsing else { return };
        let line = if i + 1 < self.history.len() {
            self.browsing = Some(i + 1);
            self.history[i + 1].clone()
        } else {
            self.browsing = None;
            std::mem::take(&mut self.draft)
        };
        self.set(&line, usize::MAX);
    }

    /// Columns from the start of the line to the cursor.
    pub fn cursor_column(&self) -> usize {
        width(&self.text[..self.cursor])
    }
}

/// Display columns of `s` (control characters, which never get here, count 0).
pub fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Input {
        let mut i = Input::default();
        i.insert(s);
        i
    }

    #[test]
    fn moves_by_character_over_multibyte_text() {
        let mut i = typed("añ日x");
        i.left();
        assert_eq!(i.cursor_column(), 4, "a=1 ñ=1 日=2");
        i.left();
        assert_eq!(i.cursor_column(), 2);
        i.backspace();
        assert_eq!(i.text(), "a日x");
        i.delete();
        assert_eq!(i.text(), "ax");
        i.home();
        i.insert("¿");
        assert_eq!(i.text(), "¿ax");
        i.end();
        assert_eq!(i.cursor(), i.text().len());
        i.right();
        assert_eq!(i.cursor(), i.text().len(), "stops at the end");
    }

    #[test]
    fn word_jumps_and_deletes() {
        let mut i = typed("hello big  world");
        i.word_left();
        assert_eq!(&i.text()[i.cursor()..], "world");
        i.word_left();
        assert_eq!(&i.text()[i.cursor()..], "big  world");
        i.word_right();
        assert_eq!(&i.text()[i.cursor()..], "  world");
        i.end();
        i.delete_word();
        assert_eq!(i.text(), "hello big  ");
        i.delete_word();
        assert_eq!(i.text(), "hello ");
        i.delete_to_start();
        assert_eq!(i.text(), "");
    }

    #[test]
    fn history_keeps_the_draft() {
        let mut i = typed("one");
        i.take();
        i.insert("two");
        i.take();
        i.insert("draft");
        i.older();
        assert_eq!(i.text(), "two");
        i.older();
        assert_eq!(i.text(), "one");
        i.older();
        assert_eq!(i.text(), "one", "stops at the oldest");
        i.newer();
        assert_eq!(i.text(), "two");
        i.newer();
        assert_eq!(i.text(), "draft");
        assert_eq!(i.cursor(), 5);
    }

    #[test]
    fn control_characters_never_enter_the_line_and_length_is_capped() {
        let mut i = typed("a\u{1b}[2J\tb\u{7}");
        assert_eq!(i.text(), "a[2J b");
        i.insert(&"x".repeat(MAX_LINE * 2));
        assert_eq!(i.text().len(), MAX_LINE);
    }
}
