//! The words of a rule, each with its column, and the error that names
//! one: what both grammars (the tables' and the one that hands the rest to
//! libpcap) read and report with.
use std::fmt;

/// A parse or validation error, naming the offending word and its column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub rule: String,
    pub message: String,
    /// 1-based character column of the offending word, if there is one.
    pub column: Option<usize>,
}

/// Characters of a long rule shown around the word an error names.
const EXCERPT_CHARS: usize = 30;
/// Characters of an error message shown at most (it may quote a long word).
const MESSAGE_CHARS: usize = 200;

/// At most `n` characters of `s`, with `...` where some were left out.
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

impl RuleError {
    /// The rule as shown: whole if short, else the part around the column.
    fn excerpt(&self) -> String {
        let len = self.rule.chars().count();
        if len <= 2 * EXCERPT_CHARS {
            return self.rule.clone();
        }
        let at = self.column.unwrap_or(1).saturating_sub(1);
        let from = at.saturating_sub(EXCERPT_CHARS);
        let shown: String = self
            .rule
            .chars()
            .skip(from)
            .take(2 * EXCERPT_CHARS)
            .collect();
        let before = if from > 0 { "..." } else { "" };
        let after = if from + 2 * EXCERPT_CHARS < len {
            "..."
        } else {
            ""
        };
        format!("{before}{shown}{after}")
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad rule '{}': {}",
            self.excerpt(),
            clip(&self.message, MESSAGE_CHARS)
        )?;
        if let Some(col) = self.column {
            write!(f, " at column {col}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleError {}

pub(super) struct Word<'a> {
    pub(super) text: &'a str,
    pub(super) column: usize,
}

/// The words of a rule with their 1-based character columns, in one pass.
pub(super) fn words(text: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    // (byte offset, column) where the current word began.
    let mut start = None;
    let chars = text.char_indices().chain([(text.len(), ' ')]);
    for (column, (i, ch)) in (1..).zip(chars) {
        match (ch.is_whitespace(), start) {
            (false, None) => start = Some((i, column)),
            (true, Some((s, col))) => {
                out.push(Word {
                    text: &text[s..i],
                    column: col,
                });
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// The words of a rule with parentheses, `!`, `&&` and `||` split off, as
/// libpcap's lexer splits them (`!tcp` is `! tcp`; `!=` stays whole).
pub(super) fn tokens(text: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    for word in words(text) {
        let (mut rest, mut column) = (word.text, word.column);
        while !rest.is_empty() {
            let len = operator_len(rest).unwrap_or_else(|| {
                (1..rest.len())
                    .find(|&at| rest.is_char_boundary(at) && operator_len(&rest[at..]).is_some())
                    .unwrap_or(rest.len())
            });
            out.push(Word {
                text: &rest[..len],
                column,
            });
            column += rest[..len].chars().count();
            rest = &rest[len..];
        }
    }
    out
}

/// The length of the operator `s` begins with, if it is one a word ends at.
fn operator_len(s: &str) -> Option<usize> {
    if s.starts_with("&&") || s.starts_with("||") {
        Some(2)
    } else if s.starts_with(['(', ')']) || (s.starts_with('!') && !s.starts_with("!=")) {
        Some(1)
    } else {
        None
    }
}
