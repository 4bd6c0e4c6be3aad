//! Terminal-safe text: every string `meshctl` prints in a table or a line for people goes
//! through [`escape`], so a value that came from another member (its name, endpoint, blocks,
//! DNS names, an error that quotes them) cannot drive or reorder the operator's terminal.
//!
//! Escaped, each as a visible ASCII form:
//! - C0 controls U+0000-U+001F (ESC, BEL, CR, LF, TAB, ...) and DEL U+007F as `\xHH`
//!   (two lowercase hex digits: `\x1b`, `\x07`, `\x0d`, `\x7f`);
//! - C1 controls U+0080-U+009F (U+009B is CSI to a terminal that reads 8-bit controls) as
//!   `\u{H}` (lowercase hex, Rust's notation: `\u{9b}`);
//! - the Unicode `Bidi_Control` characters, which reorder what is shown ("Trojan Source",
//!   CVE-2021-42574): U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069, as `\u{202e}`;
//! - the line and paragraph separators U+2028 and U+2029, at which some viewers break lines
//!   (a forged output line), as `\u{2028}`.
//!
//! Everything else is kept as it is: accents, CJK, emoji and their joiners, and the backslash.
//! The form is for reading, not reversible: a value that spells `\x1b` literally looks the
//! same as one that holds ESC (`-o json` has the exact value). Keeping the backslash makes
//! [`escape`] idempotent, so a string escaped twice (a view's cell, then [`escape_lines`]
//! over the finished text) shows the same.
//!
//! Hand-written: what to escape is a short fixed list, and no well-kept crate does exactly
//! this. `str::escape_debug` also escapes quotes and every character its (older) Unicode table
//! does not know as printable, so newer CJK or emoji would turn into `\u{..}`;
//! `escape_default` escapes all non-ASCII; the ANSI strippers (`strip-ansi-escapes`) remove
//! well-formed sequences but leave a lone BEL, CR, C1 or bidi character through, and an
//! operator should see that something was there.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is shown escaped: a C0 or C1 control or DEL (Unicode category Cc, which is
/// exactly what `char::is_control` tests), a `Bidi_Control` character, or a line or
/// paragraph separator.
pub(crate) fn is_escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with every character of [`is_escaped`] replaced by its visible form (see the module
/// doc); borrowed when there is none. Newlines are escaped too: the result is one line.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_escaped) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_escaped(c) {
            out.push(c);
        } else if u32::from(c) < 0x80 {
            // Writing into a String cannot fail.
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// [`escape`] as an owned `String`, for table cells.
pub(crate) fn escaped(s: &str) -> String {
    escape(s).into_owned()
}

/// A finished multi-line text with each line [`escape`]d and its newlines kept: the last
/// guard in front of stdout, for a value a view forgot to escape.
pub(crate) fn escape_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && is_escaped(c)) {
        return Cow::Borrowed(text);
    }
    let lines: Vec<Cow<'_, str>> = text.split('\n').map(escape).collect();
    Cow::Owned(lines.join("\n"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A member name that, printed raw, sets the window title, clears the screen, rings the
    /// bell, sends an 8-bit CSI, a DEL, returns the cursor to column 0 and turns the rest of
    /// the line around: ESC, BEL, U+009B, DEL, CR and U+202E.
    pub(crate) const HOSTILE: &str = "ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\r\u{202e}il";
    /// [`HOSTILE`] as `meshctl` shows it.
    pub(crate) const HOSTILE_SHOWN: &str = r"ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il";

    /// Whether `text` holds a character a terminal acts on, newlines aside (they end lines).
    pub(crate) fn has_raw_control(text: &str) -> bool {
        text.chars().any(|c| c != '\n' && is_escaped(c))
    }

    #[test]
    fn hostile_name_is_shown_escaped() {
        assert_eq!(escape(HOSTILE), HOSTILE_SHOWN);
        assert!(!has_raw_control(&escape(HOSTILE)));
    }

    #[test]
    fn every_c0_c1_del_bidi_and_separator_is_escaped_and_nothing_else_below_u_3000() {
        for c in (0..0x3000u32).filter_map(char::from_u32) {
            let shown = escaped(&c.to_string());
            let want_escaped = c <= '\u{1f}'
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || matches!(
                    c,
                    '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                );
            if want_escaped {
                let n = u32::from(c);
                let form = if n < 0x80 {
                    format!("\\x{n:02x}")
                } else {
                    format!("\\u{{{n:x}}}")
                };
                assert_eq!(shown, form, "U+{n:04X}");
            } else {
                assert_eq!(shown, c.to_string(), "U+{:04X} is kept", u32::from(c));
            }
        }
        assert_eq!(escape("\0\t\n\x1f"), r"\x00\x09\x0a\x1f");
        assert_eq!(escape("\u{80}\u{85}\u{9f}"), r"\u{80}\u{85}\u{9f}");
        assert_eq!(
            escape("\u{61c}\u{200e}\u{200f}\u{202a}\u{2069}\u{2029}"),
            r"\u{61c}\u{200e}\u{200f}\u{202a}\u{2069}\u{2029}"
        );
    }

    #[test]
    fn ordinary_text_is_kept_and_borrowed() {
        for s in [
            "",
            "beta",
            "Zoë-café",
            "节点-東京",
            "👩\u{200d}💻 (ZWJ kept)",
            r"back\slash \x1b as text",
            "10.32.0.0/12, 198.18.0.2:6788 [fd00::1]:6788",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    #[test]
    fn escaping_twice_shows_the_same() {
        assert_eq!(escape(&escape(HOSTILE)), HOSTILE_SHOWN);
    }

    #[test]
    fn escape_lines_keeps_newlines_and_escapes_the_rest() {
        let text = format!("NAME\n{HOSTILE}\nline\r\n");
        assert_eq!(
            escape_lines(&text),
            format!("NAME\n{HOSTILE_SHOWN}\nline\\x0d\n")
        );
        assert!(matches!(escape_lines("a\nb\n"), Cow::Borrowed("a\nb\n")));
    }
}
