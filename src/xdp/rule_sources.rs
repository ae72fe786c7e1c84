//! Where the rules of a run come from (`--drop`, `--rules-file`, `--match`),
//! so that SIGHUP can read them again.
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use crate::cli::XdpArgs;
use crate::error::UsageError;
use crate::filter::{self, Action, Rule};

/// Where the rules come from, so that SIGHUP can rebuild the list.
pub struct RuleSources {
    pub drop: Vec<Rule>,
    pub file: Option<PathBuf>,
    pub redirect: Vec<Rule>,
}

impl RuleSources {
    pub fn parse(args: &XdpArgs) -> Result<RuleSources> {
        let mut redirect = filter::parse_args(&args.match_rules, Action::Redirect)?;
        if args.redirect.is_some() && redirect.is_empty() {
            redirect.push(filter::parse("", Action::Redirect).map_err(|e| anyhow!("{e}"))?);
        }
        Ok(RuleSources {
            drop: filter::parse_args(&args.drop, Action::Drop)?,
            file: args.rules_file.clone(),
            redirect,
        })
    }

    /// Every rule in force, in matching order: --drop, the file, --match.
    pub fn all(&self) -> Result<Vec<Rule>> {
        let mut all = self.drop.clone();
        if let Some(path) = &self.file {
            all.extend(read_rules_file(path)?);
        }
        all.extend(self.redirect.iter().cloned());
        Ok(all)
    }
}

fn read_rules_file(path: &Path) -> Result<Vec<Rule>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading rules file {}", path.display()))?;
    filter::parse_file(&path.display().to_string(), &text, Action::Drop)
        .map_err(|e| UsageError(e).into())
}
