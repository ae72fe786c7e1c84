//! The values flags take: the types they produce and the parsers that
//! check them, so that a bad value is refused before anything is loaded.
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// How the XDP program is attached, as the user asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeArg {
    /// In the driver, before an skb exists (fails if the driver lacks XDP).
    Native,
    /// Generic XDP on the skb: works on every interface, slower.
    Skb,
    /// Native if the driver supports it, else skb.
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// The best this kernel allows: fentry, else kprobe, else (connect only) tracepoint
    Auto,
    /// kprobe and kretprobe
    Kprobe,
    /// fentry and fexit (BTF trampolines)
    Fentry,
    /// the sock:inet_sock_set_state tracepoint (tcp_v4_connect and tcp_v6_connect only)
    Tracepoint,
}

/// A duration such as `10s`, `250ms` or `1m30s`; must be positive.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration like 10s, 500ms or 2m ({e})"))?;
    if d.is_zero() {
        return Err(format!("'{s}' must be longer than zero"));
    }
    Ok(d)
}

pub fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_positive_duration(s)?;
    if d < Duration::from_millis(10) {
        return Err(format!("'{s}' is shorter than the 10ms minimum"));
    }
    Ok(d)
}

/// Where `--prometheus` listens: `PORT` and `:PORT` mean loopback.
pub fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    let with_host = if s.parse::<u16>().is_ok() {
        format!("127.0.0.1:{s}")
    } else if let Some(port) = s.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else {
        s.to_string()
    };
    with_host
        .to_socket_addrs()
        .map_err(|e| format!("'{s}' is not an address like 127.0.0.1:9435 ({e})"))?
        .next()
        .ok_or_else(|| format!("'{s}' names no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_positive_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(
            parse_positive_duration("1m30s"),
            Ok(Duration::from_secs(90))
        );
        assert!(parse_positive_duration("0s")
            .unwrap_err()
            .contains("longer than zero"));
        assert!(parse_positive_duration("ten")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_interval("5ms").unwrap_err().contains("10ms minimum"));
    }
}
