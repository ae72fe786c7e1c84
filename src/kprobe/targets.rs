//! What to trace: the functions the command line names, expanded against
//! the kernel's list, and which of them are connect attempts.
use anyhow::Result;

use crate::error::UsageError;
use crate::kernel::symbols::{glob_match, FunctionList};

/// Functions one run may trace (each is a program instance).
pub const MAX_FUNCTIONS: usize = 32;
/// The functions whose calls are connect attempts, with their family.
const CONNECT_FUNCTIONS: [(&str, u16); 2] = [("tcp_v4_connect", 2), ("tcp_v6_connect", 10)];

/// Expands the patterns on the command line into function names.
pub fn expand(patterns: &[String], list: &FunctionList) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for pattern in patterns {
        let matches: Vec<&String> = if pattern.contains(['*', '?']) {
            list.names
                .iter()
                .filter(|n| glob_match(pattern, n))
                .collect()
        } else {
            list.names.get(pattern).into_iter().collect()
        };
        if matches.is_empty() {
            let what = if pattern.contains(['*', '?']) {
                "pattern"
            } else {
                "function"
            };
            return Err(UsageError(format!(
                "no traceable kernel {what} '{pattern}' (checked {}; try netprobe list '{pattern}')",
                list.source
            ))
            .into());
        }
        for m in matches {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
        if out.len() > MAX_FUNCTIONS {
            return Err(UsageError(format!(
                "with '{pattern}' there are {} functions to trace, and netprobe traces at most {MAX_FUNCTIONS} at once; \
                 narrow the pattern",
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
        assert_eq!(
            expand(&["tcp_v4_connect".into()], &list).unwrap(),
            vec!["tcp_v4_connect"]
        );
        assert_eq!(
            expand(&["f0?".into(), "f01".into()], &list).unwrap().len(),
            10
        );
        let e = expand(&["f*".into()], &list).unwrap_err().to_string();
        assert!(e.contains("at most 32"), "{e}");
        let e = expand(&["nosuch_fn".into()], &list)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no traceable kernel function 'nosuch_fn'"),
            "{e}"
        );
    }
}
