//! Where the rules of a run come from (`--drop`, `--rules-file`, `--match`),
//! so that SIGHUP can read them again.
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::XdpArgs;
use crate::console;
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

/// The largest rules file read (a block list of a million rules fits).
pub const MAX_RULES_FILE_BYTES: u64 = 64 << 20;
/// A rules file changed more recently than this may still be being written.
const QUIET: Duration = Duration::from_millis(50);
/// How long a read waits for the file to stop changing before giving up.
const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// What identifies one version of a file: if this is the same before and
/// after a read, nothing wrote to the file meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: SystemTime,
}

fn version(meta: &fs::Metadata) -> io::Result<Version> {
    Ok(Version {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime: meta.modified()?,
    })
}

/// How long ago the file last changed; a time stamp in the future (set by
/// hand, not by a writer) counts as long ago.
fn age(mtime: SystemTime) -> Duration {
    match SystemTime::now().duration_since(mtime) {
        Ok(age) => age,
        Err(e) if e.duration() > QUIET => QUIET,
        Err(_) => Duration::ZERO,
    }
}

/// Reads at most [`MAX_RULES_FILE_BYTES`] of `path` as text.
fn read_bounded(path: &Path, meta: &fs::Metadata) -> Result<String> {
    if meta.file_type().is_fifo() {
        console::note(format!(
            "waiting for a writer on the FIFO {}",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_RULES_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RULES_FILE_BYTES {
        bail!(
            "it is larger than {} MiB, the most netprobe reads",
            MAX_RULES_FILE_BYTES >> 20
        );
    }
    String::from_utf8(bytes).map_err(|_| anyhow!("it is not text (UTF-8)"))
}

/// The text of the rules file once nobody is writing it: a regular file is
/// read when it has not changed for [`QUIET`], and only if it is the same
/// file, with the same size and time stamp, after the read as before. Editors
/// and shell redirections rewrite a file in place (truncate, then write); a
/// read in between would see it empty or cut. A file that keeps changing
/// for [`SETTLE_LIMIT`] is an error, and the rules in force stay.
fn read_settled(path: &Path) -> Result<String> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let meta = fs::metadata(path)?;
        if !meta.is_file() {
            return read_bounded(path, &meta);
        }
        let before = version(&meta)?;
        let quiet_for = age(before.mtime);
        if quiet_for >= QUIET {
            let text = read_bounded(path, &meta)?;
            if version(&fs::metadata(path)?)? == before {
                return Ok(text);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "it is still being written (it changed within every {}ms for {}s); write the \
                 new rules to another file and rename it over this one",
                QUIET.as_millis(),
                SETTLE_LIMIT.as_secs()
            );
        }
        let wait = QUIET
            .saturating_sub(quiet_for)
            .max(Duration::from_millis(5));
        thread::sleep(wait.min(deadline - now));
    }
}

fn read_rules_file(path: &Path) -> Result<Vec<Rule>> {
    let text =
        read_settled(path).with_context(|| format!("reading rules file {}", path.display()))?;
    filter::parse_file(&path.display().to_string(), &text, Action::Drop)
        .map(|file| file.rules)
        .map_err(|e| UsageError(e).into())
}
