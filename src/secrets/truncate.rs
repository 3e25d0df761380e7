//! Untrusted text made safe to keep and to show. Cutting it to a bound, on a character boundary, saying how much
//! was dropped: every text riposte stores from a playbook or an alert (messages, details, log lines, guest
//! output) goes through here. Escaping its control characters ([`printable`]): every table cell the CLI prints
//! and every alert-provided field of the runner's log lines goes through here.

use std::borrow::Cow;

/// `text` when it fits in `max` bytes; else its beginning followed by ` … [N bytes dropped]`, `max` bytes in all.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    // The note for the largest possible count is as long as any note this cut can need.
    let room = max.saturating_sub(note(text.len()).len());
    let keep = floor_boundary(text, room);
    let mut out = String::with_capacity(max);
    out.push_str(&text[..keep]);
    let note = note(text.len() - keep);
    if out.len() + note.len() <= max {
        out.push_str(&note);
    }
    Cow::Owned(out)
}

/// `text` when it fits in `max` bytes; else `[N bytes dropped] … ` followed by its end, `max` bytes in all.
pub fn truncate_start(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let room = max.saturating_sub(start_note(text.len()).len());
    let mut start = text.len() - room.min(text.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let note = start_note(start);
    if note.len() + (text.len() - start) > max {
        return Cow::Owned(text[start..].to_owned());
    }
    Cow::Owned(format!("{note}{}", &text[start..]))
}

/// `text` with its control characters (ESC, CR, BEL, backspace, newline, the C1 set) and the bidirectional
/// overrides written as escapes (`\u{1b}`), so that, printed to a terminal or in a text log line, it can neither
/// move the cursor, recolour, retitle or rewrite the terminal, nor start a forged line.
pub fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// What [`truncate_start`] writes before the kept end of a text of which `dropped` bytes were cut.
pub fn start_note(dropped: usize) -> String {
    format!("[{dropped} bytes dropped] … ")
}

fn note(dropped: usize) -> String {
    format!(" … [{dropped} bytes dropped]")
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_says_what_was_dropped() {
        assert_eq!(truncate("hello", 5), "hello");
        let long = "é".repeat(1000); // 2000 bytes, two per character
        let cut = truncate(&long, 100);
        assert!(cut.len() <= 100, "{}", cut.len());
        let kept = cut.split(" … [").next().unwrap();
        assert!(kept.chars().all(|c| c == 'é'));
        assert!(cut.ends_with(&format!(" … [{} bytes dropped]", 2000 - kept.len())), "{cut}");
        let tail = truncate_start(&long, 100);
        assert!(tail.len() <= 100 && tail.starts_with('[') && tail.ends_with('é'), "{tail}");
        let kept = tail.split(" … ").nth(1).unwrap();
        assert!(tail.starts_with(&format!("[{} bytes dropped]", 2000 - kept.len())), "{tail}");
    }

    #[test]
    fn control_characters_are_shown_as_escapes() {
        assert_eq!(printable("falco.error.x"), "falco.error.x");
        assert!(matches!(printable("é ✓ plain"), Cow::Borrowed(_)), "nothing to escape, nothing copied");
        assert_eq!(printable("a\u{1b}[2Jb\r\n\u{9b}c\u{202e}"), "a\\u{1b}[2Jb\\u{d}\\u{a}\\u{9b}c\\u{202e}");
        assert_eq!(printable("\u{1b}]0;pwned\u{7}\u{1b}[2J"), "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J");
    }

    #[test]
    fn a_bound_smaller_than_the_note_still_holds() {
        assert!(truncate(&"x".repeat(50), 5).len() <= 5);
        assert!(truncate_start(&"x".repeat(50), 5).len() <= 5);
    }
}
