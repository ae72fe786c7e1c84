//! What there is to trace in this kernel: its traceable functions and its
//! network tracepoints.
use std::collections::BTreeSet;
use std::fs;

use anyhow::{Context, Result};

/// `*` and `?` glob matching.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ni;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The kernel's traceable functions and where the list came from.
pub struct FunctionList {
    pub names: BTreeSet<String>,
    pub source: &'static str,
}

/// Traceable functions: ftrace's list where readable, else every text
/// symbol in /proc/kallsyms.
pub fn traceable_functions() -> Result<FunctionList> {
    for path in [
        "/sys/kernel/tracing/available_filter_functions",
        "/sys/kernel/debug/tracing/available_filter_functions",
    ] {
        if let Ok(text) = fs::read_to_string(path) {
            let names = text
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_string)
                .collect();
            return Ok(FunctionList {
                names,
                source: "available_filter_functions",
            });
        }
    }
    let text = fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    Ok(FunctionList {
        names: parse_kallsyms(&text),
        source: "/proc/kallsyms",
    })
}

fn parse_kallsyms(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            // Text symbols; compiler clones (foo.isra.0, foo.cold) are not
            // functions anyone names.
            // __pfx_ symbols are padding in front of functions, not functions.
            (matches!(kind, "t" | "T") && !name.contains('.') && !name.starts_with("__pfx_"))
                .then(|| name.to_string())
        })
        .collect()
}

/// Raw tracepoints in kernel BTF (`btf_trace_<name>`) about networking.
pub fn network_tracepoints() -> Vec<String> {
    tracepoints()
        .into_iter()
        .filter(|n| is_network_tracepoint(n))
        .collect()
}

/// Whether a tracepoint is about networking, by its name.
fn is_network_tracepoint(name: &str) -> bool {
    const NET: [&str; 16] = [
        "sock_",
        "inet_",
        "tcp_",
        "udp_",
        "net_",
        "netif_",
        "napi_",
        "skb_",
        "kfree_skb",
        "consume_skb",
        "xdp_",
        "neigh_",
        "fib",
        "qdisc_",
        "icmp",
        "page_pool",
    ];
    NET.iter().any(|p| name.starts_with(p))
}

/// Every raw tracepoint in kernel BTF (`btf_trace_<name>`): what a raw
/// tracepoint program attaches to by name, with no tracefs.
pub fn tracepoints() -> Vec<String> {
    let Ok(btf) = libbpf_rs::btf::Btf::from_vmlinux() else {
        return Vec::new();
    };
    let mut names: Vec<String> = btf
        .type_by_kind::<libbpf_rs::btf::types::Typedef<'_>>()
        .filter_map(|t| {
            t.name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("btf_trace_"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("tcp_v4_*", "tcp_v4_connect"));
        assert!(glob_match("tcp_v?_connect", "tcp_v6_connect"));
        assert!(glob_match("*connect", "tcp_v4_connect"));
        assert!(!glob_match("tcp_v4_*", "tcp_v6_connect"));
        assert!(glob_match("*", "x"));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("a*b*c", "axxbyyc"));
    }

    #[test]
    fn kallsyms_keeps_text_symbols_without_clones() {
        let text = "ffffffff81000000 T _text\nffffffff81001000 t tcp_v4_connect\nffffffff81002000 t foo.isra.0\n\
                    ffffffff81003000 D some_data\nffffffff81004000 T tcp_v6_connect\t[ipv6]\n";
        let names = parse_kallsyms(text);
        assert!(
            names.contains("tcp_v4_connect")
                && names.contains("tcp_v6_connect")
                && names.contains("_text")
        );
        assert!(!names.contains("foo.isra.0") && !names.contains("some_data"));
    }
}
