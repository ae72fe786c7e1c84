//! The command line: one definition per flag drives parsing and `--help`.
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub mod docs;
mod values;

use values::{parse_count, parse_interval, parse_metrics_addr};
pub use values::{parse_positive_duration, BackendArg, XdpModeArg};

#[derive(Debug, Parser)]
#[command(
    name = "netprobe",
    version,
    about = "Put eBPF programs on the Linux network path and see, live and exactly, what passes",
    long_about = "Put eBPF programs on the Linux network path and see, live and exactly, what \
passes.\n\nEach subcommand is one hook. Counters live in per-CPU BPF maps that netprobe polls \
and sums every --interval; Ctrl-C or SIGTERM detaches and prints a final summary. Programs \
are attached through bpf_links, so nothing stays attached once netprobe exits, even after \
kill -9.",
    after_help = "Examples:\n  \
netprobe xdp eth1                      live per-protocol table for eth1\n  \
netprobe xdp eth1 --mode auto --json   JSON lines, native XDP if the driver has it\n  \
netprobe xdp eth1 --duration 10s --cost\n\nNeeds root, or exactly: xdp CAP_BPF CAP_PERFMON CAP_NET_ADMIN (with --cost: CAP_NET_ADMIN \
CAP_SYS_ADMIN); sockfilter CAP_BPF CAP_PERFMON CAP_NET_RAW; kprobe CAP_BPF CAP_PERFMON."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Show libbpf's log on stderr: -v is --log-level info, -vv is --log-level debug
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// How much of libbpf's log to show on stderr: off (errors still come as
    /// netprobe's one line, with the verifier's reasons), warn, info, or debug
    /// (with the verifier's log of every program loaded)
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Off, value_name = "LEVEL")]
    pub log_level: LogLevel,
}

/// How much of libbpf's log reaches stderr; ordered from quiet to chatty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum LogLevel {
    Off,
    Warn,
    Info,
    Debug,
}

impl Cli {
    /// The level in force: the more verbose of --log-level and -v/-vv.
    pub fn log_level(&self) -> LogLevel {
        let from_v = match self.verbose {
            0 => LogLevel::Off,
            1 => LogLevel::Info,
            _ => LogLevel::Debug,
        };
        self.log_level.max(from_v)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Count every frame arriving on an interface, per protocol and verdict, in XDP;
    /// drop, redirect or answer by rule
    #[command(after_help = XDP_AFTER_HELP)]
    Xdp(XdpArgs),

    /// See frames through a socket filter on an AF_PACKET socket: count them, and
    /// print or write to pcap the ones a filter lets through
    #[command(after_help = SOCKFILTER_AFTER_HELP)]
    Sockfilter(SockfilterArgs),

    /// Count calls of kernel functions (kprobe, fentry or tracepoint); return values,
    /// latency, and one event per TCP connect
    #[command(after_help = KPROBE_AFTER_HELP)]
    Kprobe(KprobeArgs),

    /// List what netprobe can attach to here: kernel functions, network tracepoints,
    /// interfaces and their XDP modes
    List(ListArgs),

    /// Show what this kernel offers netprobe, and how each answer was found
    Check(CheckArgs),

    /// Print a shell completion script: netprobe completions bash > /etc/bash_completion.d/netprobe
    Completions(CompletionsArgs),

    /// Write the man pages (netprobe.1 and one per subcommand) into DIR
    #[command(hide = true)]
    Manpages(ManpagesArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManpagesArgs {
    /// Where to write the pages
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

const KPROBE_AFTER_HELP: &str = "\
Backends: kprobe (kprobe/kretprobe), fentry (fentry/fexit, BTF trampolines, cheapest), and \
tracepoint: for tcp_v4_connect and tcp_v6_connect only, the sock:inet_sock_set_state \
tracepoint from CLOSE to SYN_SENT, which has the addresses and the caller but not the return \
value, nor the source port when the kernel has not picked it yet. auto uses the best one \
this kernel loads and says in one line when it falls back, and why.

For tcp_v4_connect and tcp_v6_connect netprobe prints one line per connect, like tcpconnect \
(PID COMM IP SADDR DADDR DPORT RET), or with --json one {\"event\":\"connect\",...} line each.

Examples:
  netprobe kprobe tcp_v4_connect
  netprobe kprobe tcp_v4_connect tcp_v6_connect --json -p 1234
  netprobe kprobe 'tcp_sendmsg*' --ret --latency --duration 10s
  netprobe kprobe ip_rcv --backend kprobe
  netprobe kprobe 'tp:tcp_*' --duration 10s          (tracepoints, as netprobe list names them)";

#[derive(Debug, Args)]
pub struct KprobeArgs {
    /// Kernel functions to trace, or tracepoints as tp:NAME (counted through raw
    /// tracepoints, which work where kprobes do not); '*' and '?' expand against the
    /// traceable functions, or the tracepoints in kernel BTF
    #[arg(value_name = "FUNC", required = true)]
    pub functions: Vec<String>,

    /// How to attach
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,

    /// Count return values: 0, each errno, and positive values
    #[arg(long)]
    pub ret: bool,

    /// Log2 histogram of each function's latency, as funclatency prints it
    #[arg(long)]
    pub latency: bool,

    /// Only calls from process PID
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pid: Option<u32>,

    /// Only calls from user UID
    #[arg(short = 'u', long = "uid", value_name = "UID")]
    pub uid: Option<u32>,

    /// Only events (connects, and flows of tp:NAME) to destination port N
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,

    /// Print events at most D after they happen: events do not wake netprobe one by
    /// one (which would cost the traced program a context switch each), the ring is
    /// drained every D, or sooner when it is half full
    #[arg(long, value_name = "D", default_value = "100ms", value_parser = parse_interval,
          allow_hyphen_values = true)]
    pub event_delay: Duration,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only names matching PATTERN ('*' and '?'; a plain word matches as a substring)
    #[arg(value_name = "PATTERN")]
    pub pattern: Option<String>,

    /// Only what netprobe kprobe can attach to on this kernel
    #[arg(long)]
    pub attachable: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// One JSON object instead of the table
    #[arg(long)]
    pub json: bool,
}

const SOCKFILTER_AFTER_HELP: &str = "\
The filter program counts every frame it sees per protocol (the same classes as netprobe xdp), \
then returns what user space gets: nothing for frames no --filter rule matches, otherwise the \
first SNAPLEN bytes. Output: one line per frame (time in UTC, interface, direction, protocol, \
addresses, ports, length); with -w, a pcap file instead and the counters table; with \
--counts-only, only the counters. The summary says how many frames the filter saw, how many \
it matched, how many the socket delivered or dropped, and how many netprobe captured.

--filter takes the rule language of netprobe xdp: tcpdump's expressions (see netprobe xdp \
--help). A VLAN tag the kernel took off into the packet's metadata is put back, for the filter \
and in what is written, as tcpdump does.

Examples:
  netprobe sockfilter -i eth0 --filter 'udp and dst port 53'
  netprobe sockfilter -i eth0 --filter 'tcp and port 443' -s 128 -w tls.pcap -c 1000
  netprobe sockfilter -i eth0 -w - | tcpdump -nr -
  netprobe sockfilter --counts-only --json --interval 5s
  netprobe sockfilter --replay capture.pcapng --filter 'tcp and port 443' -w tls.pcap";

const XDP_AFTER_HELP: &str = "\
Protocols: every frame counts in exactly one of ipv4, ipv6, arp, other and malformed; an IP \
frame whose transport header netprobe parsed also counts in one of tcp, udp, icmp and icmpv6. \
malformed means a truncated or inconsistent header. Bytes are frame lengths as XDP sees them.

Rules (--drop, --rules-file, --match) are tcpdump's filter expressions (pcap-filter(7)),
matching what tcpdump matches:
  not port 22                        host 198.18.0.1 or host 10.1.2.3
  tcp[tcpflags] & tcp-syn != 0       vlan 10 and udp dst port 53
Rules made only of these, joined by 'and' ('&&'), or by 'or' ('||') where every term reads
the same fields ('src host A or B', '(tcp or udp) and dst port 53'), compile into tables
whose cost does not grow with the number of rules:
  tcp | udp | sctp | icmp | icmp6 | igmp | gre | esp | ah | arp | rarp | ip | ip6 | [ip|ip6] proto N
  [ip|ip6|arp|rarp] [src|dst] host ADDR | [ip|ip6|arp|rarp] [src|dst] net CIDR
  [tcp|udp|sctp] [src|dst] port N | [tcp|udp|sctp] [src|dst] portrange N-M
  They also match frames under up to two VLAN tags, where tcpdump needs 'vlan'. Any other
  rule runs as the program libpcap compiles for it (at most 64 such rules; rules of these
  fields with 'not' count only up to 512, as their programs run on frames cut short).
  Several rules mean OR; a packet counts for the first rule it matches (drop rules before
  --match rules).

Examples:
  netprobe xdp eth1
  netprobe xdp veth0 --mode skb --json --interval 500ms
  netprobe xdp eth1 --drop 'udp and dst port 9' --drop 'src net 203.0.113.0/24' --for 10m
  netprobe xdp eth1 --rules-file blocklist.txt --dry-run     (kill -HUP re-reads the file)
  netprobe xdp eth1 --redirect eth2 --match 'tcp and dst port 80'
  netprobe xdp eth1 --reply icmp --top 10
  netprobe xdp --replay yesterday.pcap --rules-file blocklist.txt --write-passed left.pcap";

/// Flags every hook shares: how often and how long, and in which format.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print one JSON object per line per interval instead of a table
    #[arg(long)]
    pub json: bool,

    /// How often to read the counters and print: seconds (1, 0.5) or with a
    /// unit (250ms, 2s)
    #[arg(long, default_value = "1s", value_parser = parse_interval, value_name = "D",
          allow_hyphen_values = true)]
    pub interval: Duration,

    /// Stop after this long: seconds (10) or with a unit (10s, 5m); default:
    /// until Ctrl-C or SIGTERM
    #[arg(long, value_parser = parse_positive_duration, value_name = "D",
          allow_hyphen_values = true)]
    pub duration: Option<Duration>,

    /// Serve the counters at http://ADDR/metrics for Prometheus; a bare PORT or
    /// :PORT means loopback (127.0.0.1:PORT); port 0 picks a free one
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
    pub prometheus: Option<std::net::SocketAddr>,

    /// Print no counters (errors still go to stderr); with --prometheus, serve only
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct XdpArgs {
    /// Interface to attach to (in netprobe's network namespace); with --replay, only
    /// the interface whose addresses --reply answers for
    #[arg(value_name = "IFACE", required_unless_present = "replay")]
    pub iface: Option<String>,

    /// Run the program over the frames of FILE (pcap or pcapng; - for stdin) instead
    /// of attaching it: what these rules and actions would have done to that traffic
    #[arg(long, value_name = "FILE", conflicts_with_all = ["mode", "replace", "cost", "for_duration"])]
    pub replay: Option<PathBuf>,

    /// With --replay: write the frames the program let through (passed, sent back or
    /// redirected), as it left them, to FILE (pcapng if it ends in .pcapng, else pcap)
    #[arg(long, value_name = "FILE", requires = "replay")]
    pub write_passed: Option<PathBuf>,

    /// With --replay: write the frames the program dropped to FILE
    #[arg(long, value_name = "FILE", requires = "replay")]
    pub write_dropped: Option<PathBuf>,

    /// native: in the driver (fails if it lacks XDP); skb: generic XDP, works everywhere;
    /// auto: native if possible, else skb
    #[arg(long, value_enum, default_value_t = XdpModeArg::Native)]
    pub mode: XdpModeArg,

    /// Replace an XDP program already attached to IFACE (it is detached, not restored)
    #[arg(long)]
    pub replace: bool,

    /// Show the program's own average run time per packet (kernel BPF statistics,
    /// enabled only while netprobe runs)
    #[arg(long)]
    pub cost: bool,

    /// Drop packets matching RULE (repeatable); see Rules below
    #[arg(long = "drop", value_name = "RULE")]
    pub drop: Vec<String>,

    /// Drop packets matching any rule in FILE (one per line, # comments);
    /// re-read on SIGHUP and swapped in atomically
    #[arg(long, value_name = "FILE")]
    pub rules_file: Option<PathBuf>,

    /// Drop nothing: count packets the drop rules match as verdict would_drop
    #[arg(long)]
    pub dry_run: bool,

    /// Detach by itself after D, even if nobody is watching (a guard against
    /// locking yourself out with a drop rule)
    #[arg(long = "for", value_name = "D", value_parser = parse_positive_duration,
          allow_hyphen_values = true)]
    pub for_duration: Option<Duration>,

    /// Send matching packets (all of them without --match) out of IFACE2 (XDP_REDIRECT)
    #[arg(long, value_name = "IFACE2")]
    pub redirect: Option<String>,

    /// With --redirect: redirect only packets matching RULE (repeatable)
    #[arg(long = "match", value_name = "RULE", requires = "redirect")]
    pub match_rules: Vec<String>,

    /// Answer ICMP and ICMPv6 echo requests to IFACE's own addresses from XDP (XDP_TX)
    #[arg(long, value_enum, value_name = "PROTO")]
    pub reply: Option<ReplyProto>,

    /// Show the N busiest source addresses (packets, bytes)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub top: Option<u32>,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SockfilterArgs {
    /// Capture on IFACE only (default: every interface, both directions)
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub iface: Option<String>,

    /// Run the filter over the frames of FILE (pcap or pcapng; - for stdin) instead
    /// of a live socket
    #[arg(long, value_name = "FILE", conflicts_with = "iface")]
    pub replay: Option<PathBuf>,

    /// Deliver only frames matching RULE (repeatable: frames matching any);
    /// default: every frame
    #[arg(long = "filter", value_name = "RULE")]
    pub filter: Vec<String>,

    /// A filter rule given as tcpdump takes its expression, among the options
    /// (`netprobe sockfilter -i eth0 udp and port 53`): the words joined with
    /// spaces, one more rule beside any --filter
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,

    /// Deliver at most the first N bytes of each frame (0: the whole frame)
    #[arg(short = 's', long = "snaplen", value_name = "N", default_value_t = 0)]
    pub snaplen: u32,

    /// Write delivered frames to FILE as pcap (nanosecond time stamps); - for stdout
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// Stop after capturing N frames
    #[arg(short = 'c', long = "count", value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,

    /// Deliver nothing, only count per protocol in the kernel (cheap on busy links)
    #[arg(long, conflicts_with_all = ["write", "count", "filter", "expression"])]
    pub counts_only: bool,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// What `--reply` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplyProto {
    /// ICMP and ICMPv6 echo requests
    Icmp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn xdp_defaults() {
        let cli = Cli::try_parse_from(["netprobe", "xdp", "eth1"]).unwrap();
        let Command::Xdp(args) = cli.command else {
            panic!("not xdp")
        };
        assert_eq!(args.mode, XdpModeArg::Native);
        assert_eq!(args.output.interval, Duration::from_secs(1));
        assert!(!args.output.json && !args.replace && !args.cost);
        assert!(args.output.duration.is_none());
    }

    #[test]
    fn log_level_is_the_more_verbose_of_the_two_flags() {
        let level = |args: &[&str]| {
            let mut argv = vec!["netprobe"];
            argv.extend_from_slice(args);
            argv.push("check");
            Cli::try_parse_from(argv).unwrap().log_level()
        };
        assert_eq!(level(&[]), LogLevel::Off);
        assert_eq!(level(&["-v"]), LogLevel::Info);
        assert_eq!(level(&["-vv"]), LogLevel::Debug);
        assert_eq!(level(&["--log-level", "warn"]), LogLevel::Warn);
        assert_eq!(level(&["--log-level", "debug", "-v"]), LogLevel::Debug);
        assert_eq!(level(&["--log-level", "warn", "-v"]), LogLevel::Info);
        assert!(Cli::try_parse_from(["netprobe", "--log-level", "loud", "check"]).is_err());
    }

    #[test]
    fn a_mistyped_flag_gets_a_tip_on_its_own_line() {
        let err = Cli::try_parse_from(["netprobe", "xdp", "eth1", "--dorp", "udp"]).unwrap_err();
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "error: unexpected argument '--dorp' found",
            "{text}"
        );
        assert!(
            lines.contains(&"  tip: a similar argument exists: '--drop'"),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("Usage: netprobe xdp")),
            "{text}"
        );
    }
}
