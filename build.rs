//! Compiles every `src/bpf/*.bpf.c` into a libbpf-rs skeleton in `OUT_DIR`.
use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("no vmlinux.h for target arch {other}: run `make vmlinux`"),
        Err(_) => panic!("CARGO_CFG_TARGET_ARCH is set by cargo"),
    };
    let vmlinux_dir = Path::new("vmlinux").join(arch);
    let bpf_dir = Path::new("src/bpf");

    println!("cargo:rerun-if-changed={}", vmlinux_dir.display());
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    let mut sources: Vec<PathBuf> = fs::read_dir(bpf_dir)
        .expect("src/bpf exists")
        .map(|entry| entry.expect("readable src/bpf entry").path())
        .collect();
    sources.sort();
    for path in &sources {
        // Headers are rebuilt through every program that includes them.
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for src in sources
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
    {
        let name = src
            .file_name()
            .and_then(OsStr::to_str)
            .and_then(|n| n.strip_suffix(".bpf.c"))
            .expect("file name ends in .bpf.c");
        SkeletonBuilder::new()
            .source(src)
            .clang_args([
                OsStr::new("-I"),
                vmlinux_dir.as_os_str(),
                OsStr::new("-Wall"),
                OsStr::new("-Werror"),
            ])
            .build_and_generate(out_dir.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
    }
}
