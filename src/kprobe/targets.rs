//! What to trace: the functions and tracepoints the command line names,
//! expanded against the kernel's lists, and which of them are connect
//! attempts.
use std::fmt;

use anyhow::Result;

use super::events::Flow;
use crate::error::UsageError;
use crate::kernel::symbols::{glob_match, FunctionList};

/// Functions and tracepoints one run may trace (each is a program instance).
pub const MAX_FUNCTIONS: usize = 32;
/// The functions whose calls are connect attempts, with their family.
const CONNECT_FUNCTIONS: [(&str, u16); 2] = [("tcp_v4_connect", 2), ("tcp_v6_connect", 10)];
/// How a tracepoint is named, on the command line and in `netprobe list`.
pub const TRACEPOINT: &str = "tp:";

/// One thing to trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Function(String),
    /// A raw tracepoint, by its name in kernel BTF.
    Tracepoint(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Function(name) => f.write_str(name),
            Target::Tracepoint(name) => write!(f, "{TRACEPOINT}{name}"),
        }
    }
}

/// The names `pattern` (a name, or a `*`/`?` glob) matches in `names`.
fn matching<'a>(pattern: &str, names: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    if pattern.contains(['*', '?']) {
        names.filter(|n| glob_match(pattern, n)).collect()
    } else {
        names.filter(|n| *n == pattern).collect()
    }
}

/// Expands the patterns on the command line: plain patterns against the
/// traceable functions, `tp:` patterns against the tracepoints.
pub fn expand(
    patterns: &[String],
    functions: &FunctionList,
    tracepoints: &[String],
) -> Result<Vec<Target>> {
    let mut out: Vec<Target> = Vec::new();
    for pattern in patterns {
        let glob = pattern.contains(['*', '?']);
        let found: Vec<Target> = match pattern.strip_prefix(TRACEPOINT) {
            Some(tp) => matching(tp, tracepoints.iter())
                .into_iter()
                .map(|n| Target::Tracepoint(n.clone()))
                .collect(),
            None => matching(pattern, functions.names.iter())
                .into_iter()
                .map(|n| Target::Function(n.clone()))
                .collect(),
        };
        if found.is_empty() {
            let what = match (pattern.starts_with(TRACEPOINT), glob) {
                (true, true) => "tracepoint pattern",
                (true, false) => "tracepoint",
                (false, true) => "function pattern",
                (false, false) => "function",
            };
            // A tracepoint named like a function: say how to name it.
            let hint = if !pattern.starts_with(TRACEPOINT)
                && !matching(pattern, tracepoints.iter()).is_empty()
            {
                format!("; for the tracepoint, name it {TRACEPOINT}{pattern}")
            } else {
                format!("; try netprobe list '{pattern}'")
            };
            return Err(UsageError(format!(
                "no traceable kernel {what} '{pattern}' (checked {} and kernel BTF){hint}",
                functions.source
            ))
            .into());
        }
        for t in found {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        if out.len() > MAX_FUNCTIONS {
            return Err(UsageError(format!(
                "with '{pattern}' there are {} functions and tracepoints to trace, and netprobe traces \
                 at most {MAX_FUNCTIONS} at once; narrow the pattern",
                out.len()
            ))
            .into());
        }
    }
    Ok(out)
}

/// The address family of a connect function's events, if it is one.
pub fn connect_family(function: &str) -> Option<u16> {
    CONNECT_FUNCTIONS
        .iter()
        .find(|(f, _)| *f == function)
        .map(|&(_, family)| family)
}

/// Tracepoints that carry a socket or a packet, and how their arguments are
/// laid out: they give an event with the flow for every call.
const FLOW_TRACEPOINTS: [(&str, Flow); 6] = [
    ("tcp_retransmit_skb", Flow::SockSkb),
    ("tcp_send_reset", Flow::SockSkb),
    ("tcp_receive_reset", Flow::Sock),
    ("inet_sock_set_state", Flow::State),
    ("sock_exceed_buf_limit", Flow::Sock),
    ("kfree_skb", Flow::SkbDrop),
];

/// Whether a target gives flow events, and their layout.
pub fn flow_events(target: &Target) -> Option<Flow> {
    match target {
        Target::Tracepoint(name) => FLOW_TRACEPOINTS
            .iter()
            .find(|(tp, _)| tp == name)
            .map(|&(_, flow)| flow),
        Target::Function(_) => None,
    }
}

/// The address family of a target's connect events, if it has them.
pub fn connect_events(target: &Target) -> Option<u16> {
    match target {
        Target::Function(f) => connect_family(f),
        Target::Tracepoint(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_limits_and_errors() {
        let list = FunctionList {
            names: (0..40)
                .map(|i| format!("f{i:02}"))
                .chain(["tcp_v4_connect".to_string()])
                .collect(),
            source: "test",
        };
        let tps = vec!["tcp_probe".to_string(), "tcp_retransmit_skb".to_string()];
        assert_eq!(
            expand(&["tcp_v4_connect".into()], &list, &tps).unwrap(),
            vec![Target::Function("tcp_v4_connect".into())]
        );
        assert_eq!(
            expand(&["f0?".into(), "f01".into()], &list, &tps)
                .unwrap()
                .len(),
            10
        );
        assert_eq!(
            expand(&["tp:tcp_*".into()], &list, &tps).unwrap(),
            vec![
                Target::Tracepoint("tcp_probe".into()),
                Target::Tracepoint("tcp_retransmit_skb".into())
            ]
        );
        let e = expand(&["f*".into()], &list, &tps).unwrap_err().to_string();
        assert!(e.contains("at most 32"), "{e}");
        let e = expand(&["nosuch_fn".into()], &list, &tps)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no traceable kernel function 'nosuch_fn'"),
            "{e}"
        );
        // A tracepoint named like a function is pointed to its spelling.
        let e = expand(&["tcp_probe".into()], &list, &tps)
            .unwrap_err()
            .to_string();
        assert!(e.contains("name it tp:tcp_probe"), "{e}");
        let e = expand(&["tp:nosuch".into()], &list, &tps)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no traceable kernel tracepoint 'tp:nosuch'"),
            "{e}"
        );
        assert_eq!(
            Target::Tracepoint("tcp_probe".into()).to_string(),
            "tp:tcp_probe"
        );
    }
}
