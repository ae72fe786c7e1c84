//! Rules files: one rule per line, comments, and the line that says a
//! file holds no rules on purpose.
use super::grammar::parse;
use super::model::{Action, Rule};

/// The line that says a rules file holds no rules on purpose. A file with
/// neither rules nor this line is refused: a file caught half-written, or
/// emptied by mistake, must not silently lift every drop rule.
pub const NO_RULES: &str = "none";

/// What a rules file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesFile {
    pub rules: Vec<Rule>,
    /// Whether it says, with a line `none`, that it holds no rules on purpose.
    pub none: bool,
}

/// Reads a rules file: one rule per line; `#` starts a comment; blank lines
/// are skipped; a line `none` says the file holds no rules on purpose.
/// Errors name the line.
pub fn parse_file(path: &str, contents: &str, action: Action) -> Result<RulesFile, String> {
    let mut file = RulesFile {
        rules: Vec::new(),
        none: false,
    };
    for (n, line) in contents.lines().enumerate() {
        let text = line.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        if text == NO_RULES {
            file.none = true;
            continue;
        }
        file.rules
            .push(parse(text, action).map_err(|e| format!("{path}:{}: {e}", n + 1))?);
    }
    if file.none && !file.rules.is_empty() {
        return Err(format!(
            "{path}: says '{NO_RULES}' but holds {} too; remove one or the other",
            crate::console::count(file.rules.len() as u64, "rule")
        ));
    }
    if file.rules.is_empty() && !file.none {
        return Err(format!(
            "{path} holds no rules; if that is meant, write a line '{NO_RULES}' in it"
        ));
    }
    Ok(file)
}
