//! A minimal line editor for raw-mode terminals: it owns the half-typed line
//! so incoming messages can be printed above it and the line redrawn intact.
//!
//! Invariant: `line` is always valid UTF-8 and at most `MAX_LINE` bytes;
//! partial UTF-8 sequences and escape sequences wait in their own state.

/// Longest line the editor holds; a paste beyond it is cut.
pub const MAX_LINE: usize = 16 * 1024;

/// What a key press produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Key {
    /// Enter: the finished line.
    Line(String),
    /// Ctrl-C.
    Interrupt,
    /// Ctrl-D on an empty line.
    Eof,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Started,
    /// Inside `ESC [`, until a final byte.
    Csi,
    /// After `ESC O`, one more byte.
    Ss3,
}

/// The line being typed and how to draw it.
#[derive(Debug, Default)]
pub struct Editor {
    prompt: String,
    line: String,
    utf8: Vec<u8>,
    escape: Escape,
}

impl Editor {
    /// An empty editor showing `prompt`.
    pub fn new(prompt: &str) -> Self {
        Editor {
            prompt: prompt.to_string(),
            ..Editor::default()
        }
    }

    /// Changes the prompt (the name prompt becomes the chat prompt).
    pub fn set_prompt(&mut self, prompt: &str) {
        self.prompt = prompt.to_string();
    }

    /// The half-typed line.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Applies typed bytes, pushing finished lines and control keys to `keys`.
    pub fn feed(&mut self, bytes: &[u8], keys: &mut Vec<Key>) {
        for &b in bytes {
            match self.escape {
                Escape::Started => {
                    self.escape = match b {
                        b'[' => Escape::Csi,
                        b'O' => Escape::Ss3,
                        _ => Escape::None,
                    };
                    continue;
                }
                Escape::Csi => {
                    if (0x40..=0x7e).contains(&b) {
                        self.escape = Escape::None;
                    }
                    continue;
                }
                Escape::Ss3 => {
                    self.escape = Escape::None;
                    continue;
                }
                Escape::None => {}
            }
            match b {
                b'\r' | b'\n' => keys.push(Key::Line(std::mem::take(&mut self.line))),
                0x03 => keys.push(Key::Interrupt),
                0x04 if self.line.is_empty() => keys.push(Key::Eof),
                0x7f | 0x08 => {
                    self.line.pop();
                }
                0x15 => self.line.clear(),
                0x17 => self.delete_word(),
                0x1b => self.escape = Escape::Started,
                0x00..=0x1f => {}
                _ => self.push_byte(b),
            }
        }
    }

    fn delete_word(&mut self) {
        let kept = self.line.trim_end().len();
        let start = self.line[..kept].rfind([' ', '\t']).map_or(0, |i| i + 1);
        self.line.truncate(start);
    }

    fn push_byte(&mut self, b: u8) {
        self.utf8.push(b);
        match std::str::from_utf8(&self.utf8) {
            Ok(s) => {
                if self.line.len() + s.len() <= MAX_LINE {
                    self.line.push_str(s);
                }
                self.utf8.clear();
            }
            // An incomplete sequence waits for its next byte; a broken one is dropped.
            Err(e) if e.error_len().is_none() => {}
            Err(_) => self.utf8.clear(),
        }
    }

    /// Appends the escape codes that redraw the prompt line, showing as
    /// much of the end of the line as fits in `width` columns.
    pub fn draw(&self, width: usize, out: &mut String) {
        out.push_str("\r\x1b[2K");
        out.push_str(&self.prompt);
        let room = width.saturating_sub(self.prompt.chars().count() + 1).max(1);
        let chars = self.line.chars().count();
        let tail = match self.line.char_indices().nth(chars.saturating_sub(room)) {
            Some((i, _)) if chars > room => &self.line[i..],
            _ => &self.line,
        };
        out.push_str(tail);
    }

    /// Appends escape codes that print `text` on its own line above the
    /// prompt, then redraw the prompt and the half-typed line.
    pub fn print_above(&self, text: &str, width: usize, out: &mut String) {
        out.push_str("\r\x1b[2K");
        out.push_str(text);
        out.push_str("\r\n");
        self.draw(width, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(e: &mut Editor, bytes: &[u8]) -> Vec<Key> {
        let mut keys = Vec::new();
        e.feed(bytes, &mut keys);
        keys
    }

    #[test]
    fn typing_and_enter() {
        let mut e = Editor::new("> ");
        assert!(feed(&mut e, b"hel").is_empty());
        assert_eq!(e.line(), "hel");
        assert_eq!(feed(&mut e, b"lo\r"), vec![Key::Line("hello".into())]);
        assert_eq!(e.line(), "");
    }

    #[test]
    fn editing_keys() {
        let mut e = Editor::new("> ");
        feed(&mut e, b"one two  three\x7f\x7f");
        assert_eq!(e.line(), "one two  thr");
        feed(&mut e, b"\x17");
        assert_eq!(e.line(), "one two  ");
        feed(&mut e, b"\x17");
        assert_eq!(e.line(), "one ");
        feed(&mut e, b"\x15");
        assert_eq!(e.line(), "");
        assert_eq!(feed(&mut e, b"\x04"), vec![Key::Eof]);
        feed(&mut e, b"x\x04");
        assert_eq!(e.line(), "x");
        assert_eq!(feed(&mut e, b"\x03"), vec![Key::Interrupt]);
    }

    #[test]
    fn multibyte_characters_split_across_reads() {
        let mut e = Editor::new("> ");
        let bytes = "é✓".as_bytes();
        for b in bytes {
            feed(&mut e, &[*b]);
        }
        assert_eq!(e.line(), "é✓");
        feed(&mut e, b"\x7f");
        assert_eq!(e.line(), "é");
        feed(&mut e, b"\xff!");
        assert_eq!(e.line(), "é!");
    }

    #[test]
    fn arrow_keys_and_escapes_are_swallowed() {
        let mut e = Editor::new("> ");
        feed(&mut e, b"a\x1b[A\x1b[1;5Cb\x1bOPc");
        assert_eq!(e.line(), "abc");
    }

    #[test]
    fn print_above_keeps_the_half_typed_line() {
        let mut e = Editor::new("> ");
        feed(&mut e, b"half");
        let mut out = String::new();
        e.print_above("bob: hi", 80, &mut out);
        assert_eq!(out, "\r\x1b[2Kbob: hi\r\n\r\x1b[2K> half");
    }

    #[test]
    fn long_lines_show_their_tail() {
        let mut e = Editor::new("> ");
        feed(&mut e, b"0123456789");
        let mut out = String::new();
        e.draw(8, &mut out);
        assert_eq!(out, "\r\x1b[2K> 56789");
    }
}
