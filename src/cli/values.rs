//! The values flags take: the types they produce and the parsers that
//! check them, so that a bad value is refused before anything is loaded.
use std::net::SocketAddr;
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

/// The longest duration taken: ten years. Far longer ones (`--duration
/// 18446744073709551615s`) cannot even be added to a clock reading.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// A duration such as `10s`, `250ms` or `1m30s`, or a bare number of
/// seconds (`1`, `0.5`) as ping, timeout and the bcc tools read it; must be
/// positive and at most [`MAX_DURATION`].
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!(
            "'{s}' is negative; give a duration like 10, 0.5, 10s or 500ms"
        ));
    }
    let d = match s.parse::<f64>() {
        Ok(secs) if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
        }
        _ => humantime::parse_duration(s).map_err(|e| {
            format!("'{s}' is not a duration like 10 (seconds), 0.5, 10s, 500ms or 2m ({e})")
        })?,
    };
    if d.is_zero() {
        return Err(format!("'{s}' must be longer than zero"));
    }
    if d > MAX_DURATION {
        return Err(format!("'{s}' is longer than the ten-year maximum"));
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

/// Where `--prometheus` listens: `PORT` and `:PORT` mean loopback, as does
/// `localhost:PORT`; otherwise an IP address and port (`[::1]:9435` for
/// IPv6). Names are not looked up: a listening address must not depend on
/// DNS, and `256.0.0.1:80` is simply not an address.
pub fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    let port = s
        .strip_prefix(':')
        .or_else(|| s.strip_prefix("localhost:"))
        .unwrap_or(s);
    if let Ok(port) = port.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|_| format!("'{s}' is not an address like 9435, 127.0.0.1:9435 or [::1]:9435"))
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
        assert!(parse_interval("0.005")
            .unwrap_err()
            .contains("10ms minimum"));
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse_positive_duration("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(
            parse_positive_duration("2.5"),
            Ok(Duration::from_millis(2500))
        );
        assert!(parse_positive_duration("0")
            .unwrap_err()
            .contains("longer than zero"));
        // Not numbers: inf, NaN and exponents go to the duration parser and fail.
        for s in ["inf", "NaN", "1e3", "1.2.3"] {
            assert!(parse_positive_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        for s in [
            "18446744073709551615s",
            "18446744073709551615",
            "11y",
            "99999999999999999999999",
        ] {
            let e = parse_positive_duration(s).unwrap_err();
            assert!(
                e.contains("maximum") || e.contains("not a duration"),
                "{s}: {e}"
            );
        }
        assert_eq!(parse_positive_duration("3650d"), Ok(MAX_DURATION));
        let e = parse_positive_duration("-1s").unwrap_err();
        assert!(e.contains("negative"), "{e}");
    }

    #[test]
    fn metrics_addresses_need_no_dns() {
        let loopback = Ok(SocketAddr::from(([127, 0, 0, 1], 9435)));
        for s in ["9435", ":9435", "localhost:9435", "127.0.0.1:9435"] {
            assert_eq!(parse_metrics_addr(s), loopback, "{s}");
        }
        assert_eq!(
            parse_metrics_addr("[::1]:0"),
            Ok(SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 0)))
        );
        for s in ["256.0.0.1:80", "example.com:80", "9435x", "127.0.0.1", ""] {
            let e = parse_metrics_addr(s).unwrap_err();
            assert!(e.contains("is not an address like"), "{s}: {e}");
        }
    }
}
