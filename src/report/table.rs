//! The live table for people: redrawn in place on a terminal, appended
//! otherwise.
use std::io::{self, Write};

use super::snapshot::{FunctionReport, Named, Printer, Snapshot};

/// Rules shown in the table at most; JSON has them all.
const TABLE_RULES: usize = 20;

pub struct TablePrinter {
    out: Box<dyn Write + Send>,
    terminal: bool,
    lines_shown: usize,
}

/// `1234567` as `1.23M`: three significant digits and an SI prefix.
pub fn si(value: f64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (scale, unit) in UNITS {
        if value >= scale {
            let v = value / scale;
            let digits = if v >= 100.0 {
                0
            } else if v >= 10.0 {
                1
            } else {
                2
            };
            return format!("{v:.digits$}{unit}");
        }
    }
    if value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

impl TablePrinter {
    pub(super) fn render(snapshot: &Snapshot) -> String {
        let mut s = String::new();
        let what = if snapshot.is_final {
            "final summary"
        } else {
            "live"
        };
        s += &format!(
            "{}  {what}, {:.1}s\n",
            snapshot.source.title(),
            snapshot.elapsed.as_secs_f64()
        );
        match snapshot.cost_ns_per_packet {
            Some(Some(cost)) => s += &format!("program cost: {cost:.1} ns/packet\n"),
            Some(None) => s += "program cost: no packets yet\n",
            None => {}
        }
        let rate_label = if snapshot.is_final { "avg" } else { "now" };
        if let Some(protocols) = &snapshot.protocols {
            s += &format!(
                "{:<10} {:>14} {:>16} {:>12} {:>12}\n",
                "PROTOCOL",
                "PACKETS",
                "BYTES",
                format!("PKT/S {rate_label}"),
                format!("BIT/S {rate_label}")
            );
            for (name, r) in &protocols.0 {
                s += &format!(
                    "{name:<10} {:>14} {:>16} {:>12} {:>12}\n",
                    r.packets,
                    r.bytes,
                    si(r.pps),
                    si(r.bps)
                );
            }
        }
        if let Some(functions) = &snapshot.functions {
            s += &Self::render_functions(functions, rate_label);
        }
        if let Some(lost) = snapshot.events_lost.filter(|&n| n > 0) {
            s += &format!("events lost (ring buffer full): {lost}\n");
        }
        if let Some(verdicts) = &snapshot.verdicts {
            s += &format!("{:<10} {:>14} {:>16}\n", "VERDICT", "PACKETS", "BYTES");
            for (name, c) in &verdicts.0 {
                s += &format!("{name:<10} {:>14} {:>16}\n", c.packets, c.bytes);
            }
        }
        if let Some(c) = &snapshot.capture {
            s += &format!(
                "frames: {} seen by the filter, {} matched, {} delivered, {} dropped by the socket, {} captured\n",
                c.seen, c.matched, c.delivered, c.socket_drops, c.captured
            );
        }
        if let Some(rules) = &snapshot.rules {
            s += &format!(
                "{:<10} {:>14} {:>16}  {}\n",
                "ACTION", "PACKETS", "BYTES", "RULE"
            );
            for r in rules.iter().take(TABLE_RULES) {
                let text = if r.rule.is_empty() {
                    "(every packet)"
                } else {
                    &r.rule
                };
                s += &format!(
                    "{:<10} {:>14} {:>16}  {text}\n",
                    r.action.replace('_', " "),
                    r.packets,
                    r.bytes
                );
            }
            if rules.len() > TABLE_RULES {
                s += &format!(
                    "... and {} more (all of them in --json)\n",
                    crate::console::count((rules.len() - TABLE_RULES) as u64, "rule")
                );
            }
        }
        if let Some(top) = &snapshot.top_sources {
            s += &format!("{:<40} {:>14} {:>16}\n", "SOURCE", "PACKETS", "BYTES");
            for t in top {
                s += &format!("{:<40} {:>14} {:>16}\n", t.addr, t.packets, t.bytes);
            }
        }
        s
    }
}

impl TablePrinter {
    fn render_functions(functions: &Named<FunctionReport>, rate_label: &str) -> String {
        let mut s = format!(
            "{:<32} {:>14} {:>12}\n",
            "FUNCTION",
            "CALLS",
            format!("CALLS/S {rate_label}")
        );
        for (name, f) in &functions.0 {
            s += &format!("{name:<32} {:>14} {:>12}\n", f.calls, si(f.per_sec));
        }
        for (name, f) in &functions.0 {
            if let Some(returns) = &f.returns {
                s += &format!("\n{name} returned:\n");
                for (value, count) in &returns.0 {
                    s += &format!("  {value:<20} {count:>12}\n");
                }
            }
            if let Some(buckets) = &f.latency {
                let max = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
                s += &format!(
                    "\n{name} latency:\n{:>26}     : count     distribution\n",
                    "nsecs"
                );
                for b in buckets {
                    let stars = (b.count * 40).div_ceil(max) as usize;
                    s += &format!(
                        "{:>12} -> {:<12} : {:<9} |{:<40}|\n",
                        b.lo_ns,
                        b.hi_ns,
                        b.count,
                        "*".repeat(stars.min(40))
                    );
                }
            }
        }
        s
    }
}

impl TablePrinter {
    pub fn new(out: Box<dyn Write + Send>, terminal: bool) -> TablePrinter {
        TablePrinter {
            out,
            terminal,
            lines_shown: 0,
        }
    }
}

impl Printer for TablePrinter {
    fn print(&mut self, snapshot: &Snapshot) -> io::Result<()> {
        let text = Self::render(snapshot);
        if self.terminal && self.lines_shown > 0 {
            // Back to the first line of the previous table, clear to the end.
            write!(self.out, "\x1b[{}F\x1b[J", self.lines_shown)?;
        } else if !self.terminal && self.lines_shown > 0 {
            writeln!(self.out)?;
        }
        self.out.write_all(text.as_bytes())?;
        self.lines_shown = text.lines().count();
        self.out.flush()
    }
}
