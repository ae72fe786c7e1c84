//! Reporting: every hook fills the same [`Snapshot`], and one printer per
//! format shows it: a live table for people ([`table`]), JSON lines for
//! scripts ([`json`]), a Prometheus exposition ([`prometheus`]); a captured
//! frame becomes one line ([`decode`]).
pub mod decode;
pub mod json;
pub mod prometheus;
pub mod snapshot;
pub mod table;
#[cfg(test)]
mod tests;

use std::io::Write;

use json::JsonPrinter;
pub use snapshot::{
    latency_buckets, protocol_rates, rule_hits, CaptureCounts, FunctionReport, Named, Printer,
    Rate, RuleHits, Snapshot, Source, SourceHits,
};
use table::TablePrinter;

/// Picks the printer for the flags: JSON lines, or a table that refreshes
/// in place on a terminal and is appended otherwise.
pub fn printer(json: bool, out: Box<dyn Write + Send>, terminal: bool) -> Box<dyn Printer> {
    if json {
        Box::new(JsonPrinter { out })
    } else {
        Box::new(TablePrinter::new(out, terminal))
    }
}
