//! Draws the [`App`] with ratatui: the buffer list on the left, the current
//! buffer's messages (wrapped by display width, newest at the bottom), a
//! status line and the input line. Everything drawn was sanitized by the
//! session or the input line, so no server text can move the cursor.

use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as Row, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use unicode_width::UnicodeWidthChar;

use super::app::{App, Shown};
use super::input::width;
use super::session::{Delivery, Kind, Link, Phase, Session, Target};
use super::term;

/// Width of the buffer list; narrower terminals drop it.
const LIST_WIDTH: u16 = 16;
const NAME_COLORS: [Color; 6] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Magenta,
    Color::Blue,
    Color::LightRed,
];

/// A stable colour per name, whatever its case.
pub fn name_color(name: &str) -> Color {
    let hash = name.bytes().fold(5381u32, |h, b| {
        h.wrapping_mul(33) ^ u32::from(b.to_ascii_lowercase())
    });
    NAME_COLORS[hash as usize % NAME_COLORS.len()]
}

/// Rows of messages a frame of `area` shows (the shell sets `App::page`).
pub fn message_rows(area: Rect) -> usize {
    usize::from(area.height.saturating_sub(2))
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App, session: &Session, now: std::time::Instant) {
    let [main, status, input] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let messages = if main.width >= 3 * LIST_WIDTH {
        let [list, sep, messages] = Layout::horizontal([
            Constraint::Length(LIST_WIDTH - 1),
            Constraint::Length(1),
            Constraint::Min(1),
        ])
        .areas(main);
        draw_list(frame, app, list);
        let bar = vec![Row::from("│"); usize::from(sep.height)];
        frame.render_widget(Paragraph::new(bar).style(dim()), sep);
        messages
    } else {
        main
    };
    draw_messages(frame, app, messages);
    draw_status(frame, app, session, status, now);
    draw_input(frame, app, session, input);
}

fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

fn draw_list(frame: &mut Frame, app: &App, area: Rect) {
    let rows: Vec<Row> = app
        .buffers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let title = match &b.target {
                Target::Dm(name) => format!("@{name}"),
                other => other.title().to_string(),
            };
            let mut spans = vec![Span::styled(format!("{:>2} ", i + 1), dim())];
            let style = if i == app.current {
                Style::default().add_modifier(Modifier::REVERSED)
            } else if b.mentioned {
                Style::default()
                    .fg(Color::LightMagenta)
                    .add_modifier(Modifier::BOLD)
            } else if b.unread > 0 {
                Style::default().add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            spans.push(Span::styled(title, style));
            if b.unread > 0 {
                spans.push(Span::styled(
                    format!(" {}", b.unread),
                    Style::default().fg(Color::Yellow),
                ));
            }
            Row::from(spans)
        })
        .collect();
    frame.render_widget(Paragraph::new(rows), area);
}

/// The spans of one line: time, then name and text, or a notice.
fn spans(shown: &Shown) -> Vec<Span<'static>> {
    let line = &shown.line;
    let mut spans = vec![Span::styled(
        format!("{} ", term::clock_at(shown.at / 1000)),
        dim(),
    )];
    match line.kind {
        Kind::Notice => spans.push(Span::styled(format!("* {}", line.text), dim())),
        Kind::Error => spans.push(Span::styled(
            format!("! {}", line.text),
            Style::default().fg(Color::Red),
        )),
        Kind::Chat | Kind::Own => {
            let name_style = Style::default().fg(name_color(&line.from)).add_modifier(
                if line.kind == Kind::Own {
                    Modifier::BOLD
                } else {
                    Modifier::empty()
                },
            );
            spans.push(Span::styled(line.from.clone(), name_style));
            let (text_style, mark) = match shown.delivery {
                Some(Delivery::Pending) => (dim(), " (pending)"),
                Some(Delivery::Failed) => (Style::default().fg(Color::Red), " (not delivered)"),
                Some(Delivery::Unconfirmed) => {
                    (Style::default().fg(Color::Yellow), " (unconfirmed)")
                }
                Some(Delivery::Delivered) | None => (Style::default(), ""),
            };
            spans.push(Span::raw(": "));
            spans.push(Span::styled(line.text.clone(), text_style));
            if !mark.is_empty() {
                spans.push(Span::styled(mark, dim()));
            }
        }
    }
    spans
}

/// Cuts spans into rows of at most `width` columns: between words where
/// it can, inside a word only when the word alone is wider than a row.
fn wrap(spans: Vec<Span<'static>>, width: usize) -> Vec<Row<'static>> {
    let cells: Vec<(char, Style, usize)> = spans
        .iter()
        .flat_map(|s| {
            s.content
                .chars()
                .map(move |c| (c, s.style, c.width().unwrap_or(0)))
        })
        .collect();
    let mut rows = Vec::new();
    let mut start = 0;
    while start < cells.len() {
        let (mut used, mut end, mut space) = (0, start, None);
        while end < cells.len() {
            let (c, _, w) = cells[end];
            if used + w > width && end > start {
                break;
            }
            if c == ' ' {
                space = Some(end);
            }
            used += w;
            end += 1;
        }
        // A row that does not end the line breaks after its last space,
        // unless a single word fills it.
        let cut = match space {
            Some(at) if end < cells.len() && at > start && cells[end].0 != ' ' => at + 1,
            _ => end,
        };
        rows.push(row_of(&cells[start..cut]));
        start = cut;
        // The space a row broke at does not start the next one.
        if cut == end && cells.get(start).is_some_and(|(c, _, _)| *c == ' ') {
            start += 1;
        }
    }
    if rows.is_empty() {
        rows.push(Row::from(Vec::new()));
    }
    rows
}

/// One row from its cells, a span per run of one style.
fn row_of(cells: &[(char, Style, usize)]) -> Row<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut piece = String::new();
    let mut style = cells.first().map(|(_, s, _)| *s).unwrap_or_default();
    for &(c, s, _) in cells {
        if s != style && !piece.is_empty() {
            spans.push(Span::styled(std::mem::take(&mut piece), style));
        }
        style = s;
        piece.push(c);
    }
    if !piece.is_empty() {
        spans.push(Span::styled(piece, style));
    }
    Row::from(spans)
}

/// A row that starts a new day in the conversation.
fn day_marker(day: &str) -> Row<'static> {
    Row::from(Span::styled(format!("── {day} ──"), dim()))
}

fn draw_messages(frame: &mut Frame, app: &App, area: Rect) {
    let height = usize::from(area.height);
    let width = usize::from(area.width).max(1);
    let lines = &app.here().lines;
    let mut end = lines.len() - app.here().scroll.min(lines.len());
    let mut rows: Vec<Row> = Vec::new();
    // The day of the line just above: where it changes, a marker row.
    let mut newer: Option<String> = None;
    for shown in lines.range(..end).rev() {
        let day = term::day_at(shown.at / 1000);
        if let Some(newer) = newer.take().filter(|d| *d != day) {
            rows.insert(0, day_marker(&newer));
        }
        let mut wrapped = wrap(spans(shown), width);
        wrapped.append(&mut rows);
        rows = wrapped;
        newer = Some(day);
        if rows.len() >= height {
            break;
        }
    }
    // Scrolled to the top: fill the screen from below rather than leave it empty.
    while rows.len() < height && end < lines.len() {
        rows.extend(wrap(spans(&lines[end]), width));
        end += 1;
    }
    let below = lines.len() - end;
    let top = rows.len().saturating_sub(height);
    let mut visible: Vec<Row> = rows.split_off(top);
    visible.truncate(height);
    if below > 0 {
        if let Some(last) = visible.last_mut() {
            *last = Row::from(Span::styled(
                format!("-- {below} newer below (PageDown) --"),
                Style::default().fg(Color::Yellow),
            ));
        }
    }
    // Bottom-aligned, as a chat reads.
    let pad = height.saturating_sub(visible.len());
    let mut all = vec![Row::default(); pad];
    all.append(&mut visible);
    frame.render_widget(Paragraph::new(all), area);
}

fn draw_status(
    frame: &mut Frame,
    app: &App,
    session: &Session,
    area: Rect,
    now: std::time::Instant,
) {
    let state = match (session.link(), session.phase()) {
        (Link::Up, Phase::Chatting) => "online".to_string(),
        (Link::Up, Phase::AskName) => "choose a name".to_string(),
        (Link::Up, Phase::AskPassword) => "password".to_string(),
        (Link::Up, Phase::Resuming) => "resuming".to_string(),
        (Link::Up, Phase::Quitting) => "leaving".to_string(),
        (Link::Up, Phase::LoggingIn) => "logging in".to_string(),
        (Link::Connecting(_), _) => "connecting".to_string(),
        (Link::Down(Some(at)), _) => {
            let secs = at.saturating_duration_since(now).as_secs_f64().ceil();
            format!("offline, retry in {secs:.0} s")
        }
        (Link::Down(None), _) => "offline".to_string(),
    };
    let state_style = match session.link() {
        Link::Up => Style::default().fg(Color::Green),
        _ => Style::default()
            .fg(Color::LightRed)
            .add_modifier(Modifier::BOLD),
    };
    let here = app.here();
    let mut spans = vec![
        Span::raw(format!(" {} @ {} ", session.name(), app.server)),
        Span::raw("│ "),
        Span::styled(state, state_style),
        Span::raw(match &here.target {
            Target::Dm(name) => format!(" │ DM with {name}"),
            target => match app.users_here(session) {
                1 => format!(" │ {}: 1 user", target.title()),
                n => format!(" │ {}: {n} users", target.title()),
            },
        }),
    ];
    let pending = session.pending();
    if pending > 0 {
        spans.push(Span::styled(
            format!(" │ {pending} pending"),
            Style::default().fg(Color::Yellow),
        ));
    }
    let style = Style::default().bg(Color::Blue).fg(Color::White);
    frame.render_widget(Paragraph::new(Row::from(spans)).style(style), area);
}

fn draw_input(frame: &mut Frame, app: &App, session: &Session, area: Rect) {
    let prompt = session.prompt();
    // A password is drawn as dots, one per character typed.
    let masked: String;
    let text = if session.phase() == Phase::AskPassword {
        masked = "•".repeat(app.input.text().chars().count());
        &masked
    } else {
        app.input.text()
    };
    let cursor = width(prompt) + app.input.cursor_column();
    let room = usize::from(area.width).saturating_sub(1).max(1);
    // Scroll sideways so the cursor stays on screen.
    let mut skip_cols = cursor.saturating_sub(room);
    let mut shown = String::new();
    let mut col = 0;
    for c in prompt.chars().chain(text.chars()) {
        let w = c.width().unwrap_or(0);
        if skip_cols > 0 {
            skip_cols = skip_cols.saturating_sub(w);
            col += w;
            continue;
        }
        shown.push(c);
    }
    let offset = col;
    frame.render_widget(Paragraph::new(shown), area);
    let x = area.x + u16::try_from(cursor - offset).unwrap_or(area.width - 1);
    frame.set_cursor_position(Position::new(x.min(area.right() - 1), area.y));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_by_display_width() {
        let rows = wrap(vec![Span::raw("ab日本c")], 4);
        let text: Vec<String> = rows
            .iter()
            .map(|r| r.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect();
        assert_eq!(text, ["ab日", "本c"]);
        assert_eq!(wrap(vec![], 10).len(), 1, "an empty line is one row");
    }

    #[test]
    fn wraps_between_words_and_breaks_only_a_word_too_long_for_a_row() {
        let text = |spans, width| -> Vec<String> {
            wrap(spans, width)
                .iter()
                .map(|r| r.spans.iter().map(|s| s.content.as_ref()).collect())
                .collect()
        };
        let line = vec![Span::raw("bob: "), Span::raw("hello brave new world")];
        assert_eq!(
            text(line, 12),
            ["bob: hello ", "brave new ", "world"],
            "at spaces, across spans"
        );
        assert_eq!(
            text(vec![Span::raw("abcdefghij klm")], 4),
            ["abcd", "efgh", "ij ", "klm"]
        );
        assert_eq!(text(vec![Span::raw("ab cd")], 2), ["ab", "cd"]);
    }

    #[test]
    fn a_name_keeps_its_colour_in_any_case() {
        assert_eq!(name_color("Alice"), name_color("alice"));
    }
}
