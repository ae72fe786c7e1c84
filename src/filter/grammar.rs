//! The rule language's grammar: words to rules, every error naming the
//! word and its column.
//!
//! The tables hold rules of their grammar ([`super::field_rules`]); every
//! other expression goes to libpcap ([`super::pcap`]), which also judges
//! its validity as tcpdump does.
use super::field_rules::{field_rule, FieldRule};
use super::model::{Action, Rule};
use super::pcap;
use super::words::{words, RuleError};

/// The longest rule taken, in bytes.
pub const MAX_RULE_BYTES: usize = 64 << 10;

/// Parses and validates one rule. The empty rule matches every packet.
///
/// A rule the tables can hold becomes table alternatives; any other is
/// compiled by libpcap, which then also decides whether it is valid, and
/// if made only of fields also becomes clauses for the direct path.
pub fn parse(text: &str, action: Action) -> Result<Rule, RuleError> {
    let err = |message: String, column: Option<usize>| RuleError {
        rule: text.to_string(),
        message,
        column,
    };
    if text.len() > MAX_RULE_BYTES {
        return Err(err(
            format!(
                "the rule is {} bytes long; a rule may be at most {MAX_RULE_BYTES}",
                text.len()
            ),
            None,
        ));
    }
    let (clauses, table_error) = match field_rule(text) {
        Ok(FieldRule::Table(alternatives)) => {
            return Ok(Rule {
                text: normalized(text),
                action,
                alternatives,
                program: None,
                clauses: Vec::new(),
            })
        }
        Ok(FieldRule::Clauses(clauses)) => (clauses, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let program = match pcap::compile(text) {
        Ok(program) => {
            pcap::validate(&program).map_err(|m| err(m, None))?;
            program
        }
        // A rule of clauses needs its program for frames cut short.
        Err(m) if m == pcap::MISSING => {
            let (message, column) = table_error.map_or_else(
                || {
                    (
                        "the rule has 'not', or an 'or' of different fields".to_string(),
                        None,
                    )
                },
                |e| (e.message, e.column),
            );
            return Err(err(format!("{message}; {m}"), column));
        }
        Err(m) => {
            let m = m.trim_start_matches("can't parse filter expression: ");
            let column = if m.starts_with("syntax error") {
                syntax_error_column(text)
            } else {
                quoted_word_column(text, m)
            };
            return Err(err(
                m.to_string(),
                column.or(table_error.and_then(|e| e.column)),
            ));
        }
    };
    Ok(Rule {
        text: normalized(text),
        action,
        alternatives: Vec::new(),
        program: Some(program),
        clauses,
    })
}

/// The rule's words, one space apart.
fn normalized(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The column of the word a libpcap message quotes ('word'), if the rule
/// has that word.
fn quoted_word_column(text: &str, message: &str) -> Option<usize> {
    let quoted = message.split('\'').nth(1)?;
    words(text)
        .iter()
        .find(|w| w.text == quoted || w.text.contains(quoted))
        .map(|w| w.column)
}

/// Where libpcap's "syntax error" (which names no place) is: the first word
/// after which no expression can go on, found by asking libpcap whether
/// the words up to there, followed by one of a few endings, compile. That
/// holds for every prefix up to the error and for none after it, so a
/// binary search takes a few compiles, however long the rule.
fn syntax_error_column(text: &str) -> Option<usize> {
    const FILLERS: [&str; 7] = [
        "",
        " tcp",
        " 1",
        " = 1",
        " 1 = 1",
        " 1.2.3.4",
        " host 1.2.3.4",
    ];
    let words = words(text);
    let completable = |n: usize| {
        let prefix = words[..n]
            .iter()
            .map(|w| w.text)
            .collect::<Vec<_>>()
            .join(" ");
        let open = prefix.matches('(').count();
        let closes = " )".repeat(open.saturating_sub(prefix.matches(')').count()));
        FILLERS
            .iter()
            .any(|fill| pcap::compile(&format!("{prefix}{fill}{closes}")).is_ok())
    };
    // completable(lo) holds, completable(hi) does not.
    let (mut lo, mut hi) = (0, words.len());
    if completable(hi) {
        return words.last().map(|w| w.column);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if completable(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(words[hi - 1].column)
}
