//! What this kernel offers, asked without loading anything: its build
//! configuration and the kprobe PMU.
use std::fs;
use std::io::Read;
use std::path::Path;

/// A value from the kernel's build configuration (/proc/config.gz), if readable.
pub fn kernel_config_value(name: &str) -> Option<String> {
    let raw = fs::read("/proc/config.gz").ok()?;
    let mut text = String::new();
    flate_decode(&raw, &mut text)?;
    let prefix = format!("{name}=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .or_else(|| {
            text.lines()
                .any(|l| l == format!("# {name} is not set"))
                .then(|| "n".to_string())
        })
}

/// Decompresses gzip with the system's zcat; netprobe carries no inflater.
fn flate_decode(raw: &[u8], out: &mut String) -> Option<()> {
    let mut child = std::process::Command::new("zcat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let data = raw.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    child.stdout.take()?.read_to_string(out).ok()?;
    writer.join().ok()?.ok()?;
    child.wait().ok()?.success().then_some(())
}

/// Whether kprobes work here, and if not, why (for one line to the user).
pub fn kprobe_support() -> std::result::Result<(), String> {
    if Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        return Ok(());
    }
    let config = kernel_config_value("CONFIG_KPROBES");
    Err(match config.as_deref() {
        Some("y") => "the kprobe PMU is missing from /sys/bus/event_source/devices".to_string(),
        _ => "has no kprobes (CONFIG_KPROBES is not set)".to_string(),
    })
}
