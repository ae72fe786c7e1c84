//! Completions and man pages, generated from the same clap definitions that
//! parse the command line.
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::Cli;

/// Writes the completion script for `shell` to `out`, from the same
/// definitions that parse the command line.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "netprobe", out);
}

/// Writes netprobe.1 and netprobe-SUBCOMMAND.1 into `dir`.
pub fn manpages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    let mut pages = vec![("netprobe".to_string(), cmd.clone())];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("netprobe-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_cover_every_subcommand() {
        let mut out = Vec::new();
        completions(clap_complete::Shell::Bash, &mut out);
        let text = String::from_utf8(out).unwrap();
        for word in [
            "xdp",
            "sockfilter",
            "kprobe",
            "list",
            "check",
            "--rules-file",
            "--prometheus",
            "--backend",
        ] {
            assert!(text.contains(word), "{word} missing from bash completion");
        }
    }

    #[test]
    fn man_pages_for_every_subcommand() {
        let dir = std::env::temp_dir().join(format!("netprobe-man-{}", std::process::id()));
        manpages(&dir).unwrap();
        for page in [
            "netprobe",
            "netprobe-xdp",
            "netprobe-sockfilter",
            "netprobe-kprobe",
            "netprobe-list",
            "netprobe-check",
        ] {
            let text = std::fs::read_to_string(dir.join(format!("{page}.1"))).unwrap();
            assert!(
                text.starts_with(".ie") || text.contains(".TH"),
                "{page}: {}",
                &text[..80.min(text.len())]
            );
        }
        let xdp = std::fs::read_to_string(dir.join("netprobe-xdp.1")).unwrap();
        // roff escapes hyphens: --dry-run is written \-\-dry\-run.
        assert!(
            xdp.contains(r"dry\-run"),
            "--dry-run missing from netprobe-xdp.1"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
