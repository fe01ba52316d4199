//! Peer text made safe to log or print.
//!
//! Anything a peer sent (a Reject reason, a job's error message, a node id,
//! a decoding error that quotes input) may hold newlines that forge log
//! lines, or ANSI escapes that rewrite a terminal. [`escape`] turns every
//! control character into a visible escape and caps the length, so one
//! peer string stays one harmless piece of one line.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most characters of peer text kept; the rest becomes `…`.
pub const MAX_PEER_TEXT: usize = 512;

/// Whether `c` must not reach a log or a terminal as it is: C0 and C1
/// controls (newline, carriage return, ESC, ...), DEL, and the Unicode
/// bidirectional overrides and isolates that reorder what a reader sees.
fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with control characters escaped (`\n`, `\r`, `\t`, `\\`,
/// `\u{1b}`, ...) and cut to [`MAX_PEER_TEXT`] characters. Borrows when
/// nothing needed changing.
pub fn escape(text: &str) -> Cow<'_, str> {
    let clean = !text.chars().any(|c| is_dangerous(c) || c == '\\');
    if clean && text.chars().nth(MAX_PEER_TEXT).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(4 * MAX_PEER_TEXT) + 8);
    for (i, c) in text.chars().enumerate() {
        if i == MAX_PEER_TEXT {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if is_dangerous(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] for bytes that may not be UTF-8 (invalid sequences become `�`).
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape(&String::from_utf8_lossy(bytes)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(escape("node 10.0.0.2 busy: ok"), Cow::Borrowed(_)));
        assert_eq!(escape("é ü 数"), "é ü 数");
    }

    #[test]
    fn a_forged_log_line_stays_on_one_line() {
        let forged = "bad\n2026-01-01T00:00:00Z  INFO ppserver: client authenticated\r";
        let out = escape(forged);
        assert!(!out.contains('\n') && !out.contains('\r'), "{out}");
        assert!(out.starts_with("bad\\n2026"), "{out}");
    }

    #[test]
    fn terminal_escapes_and_bidi_overrides_are_made_visible() {
        let out = escape("\x1b[2J\x1b]0;owned\x07 \u{202e}txt.exe \u{9b}31m\x7f\\");
        assert!(!out.chars().any(is_dangerous), "{out:?}");
        assert_eq!(
            out,
            "\\u{1b}[2J\\u{1b}]0;owned\\u{7} \\u{202e}txt.exe \\u{9b}31m\\u{7f}\\\\"
        );
    }

    #[test]
    fn long_text_is_cut_and_bytes_need_not_be_utf8() {
        let long = "x".repeat(10_000);
        let out = escape(&long);
        assert_eq!(out.chars().count(), MAX_PEER_TEXT + 1);
        assert!(out.ends_with('…'));
        assert_eq!(escape_bytes(b"a\xff\nb"), "a\u{fffd}\\nb");
    }

    proptest::proptest! {
        #[test]
        fn nothing_dangerous_survives(s in ".*") {
            let out = escape(&s);
            proptest::prop_assert!(!out.chars().any(is_dangerous));
            proptest::prop_assert!(out.chars().count() <= 8 * MAX_PEER_TEXT + 1);
        }
    }
}
