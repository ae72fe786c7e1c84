//! `make install` puts the binary, the man pages and the completions, all
//! generated from the same clap definitions, under DESTDIR and PREFIX.
mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn install_honours_prefix_and_destdir() {
    let dest = std::env::temp_dir().join(common::netns::unique("destdir"));
    let status = Command::new("make")
        .args(["-s", "install-files"])
        .arg(format!("NETPROBE={}", common::process::BIN))
        .arg(format!("DESTDIR={}", dest.display()))
        .arg("PREFIX=/opt/np")
        .status()
        .expect("make");
    assert!(status.success());
    let root = dest.join("opt/np");
    for file in [
        "bin/netprobe",
        "share/man/man1/netprobe.1",
        "share/man/man1/netprobe-xdp.1",
        "share/man/man1/netprobe-sockfilter.1",
        "share/man/man1/netprobe-kprobe.1",
        "share/bash-completion/completions/netprobe",
        "share/zsh/site-functions/_netprobe",
        "share/fish/vendor_completions.d/netprobe.fish",
    ] {
        assert!(root.join(file).is_file(), "{file} not installed");
    }
    let fish = std::fs::read_to_string(root.join("share/fish/vendor_completions.d/netprobe.fish"))
        .unwrap();
    assert!(
        fish.contains("rules-file"),
        "fish completion lacks --rules-file"
    );
    assert!(!Path::new("/opt/np").exists(), "nothing outside DESTDIR");
    std::fs::remove_dir_all(&dest).unwrap();
}
