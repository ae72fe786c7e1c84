//! Shared by the integration tests: frames, namespaces, and netprobe runs.
#![allow(dead_code)]
pub mod frames;
pub mod netns;
pub mod process;
pub mod traffic;

/// Integration tests load BPF programs and make namespaces: root only.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (BPF and network namespaces); run `make test` as root"
    );
}
