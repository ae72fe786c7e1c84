//! The rule language: tcpdump's filter expressions. A rule made of the
//! fields the tables hold is parsed ([`grammar`]), given its meaning
//! ([`model`]), compiled ([`compile`]) into the lookup tables the BPF
//! programs match with (src/bpf/rules.h) and written into them
//! ([`tables`]); any other rule is compiled by libpcap ([`pcap`]) into the
//! classic BPF program src/bpf/cbpf.h runs. A rule of those fields with
//! `not`, or an `or` of terms reading different fields, also becomes
//! clauses ([`boolean`]), which XDP's direct path compares ([`direct`]).
//!
//! Several rules mean OR; a packet counts for the first rule it matches.
//! The tables read each field where libpcap's programs read it, so a table
//! rule matches what tcpdump's filter for it matches; they also look
//! through up to two VLAN tags.
//!
//! Matching never scans table rules. An address is mapped to the most
//! specific rule prefix covering it by an array slot of its leading 16 bits
//! and arrays by its next bytes below it (to /32 for IPv4, /64 for IPv6),
//! past them by an exact-match hash per longer prefix length in use there
//! ([`addr`]); a port by an array indexed by the port. Each rule alternative ("conjunction") constrains some set of
//! fields, its *shape*; for every shape in use whose fields the packet has
//! there is one lookup keyed by the packet's classes: an array cell when the
//! shape's classes combine into few enough cells, else a hash entry. The
//! cost per packet grows with the number of distinct shapes (at most
//! [`compile::MAX_SHAPES`]), not with the number of rules.
pub mod addr;
pub mod boolean;
pub mod candidates;
pub mod capacity;
pub mod classes;
mod clause_cells;
#[cfg(test)]
mod clause_tests;
pub mod compile;
pub mod direct;
pub mod field_rules;
pub mod grammar;
#[cfg(test)]
mod grammar_tests;
mod lookup;
pub mod model;
pub mod pcap;
pub mod rules_file;
mod table_types;
pub mod tables;
#[cfg(test)]
mod tests;
pub mod words;

pub use compile::Compiled;
pub use grammar::parse;
pub use model::{Action, Rule};
pub use rules_file::{parse_file, RulesFile, NO_RULES};
pub use words::RuleError;

use crate::error::UsageError;

/// Parses rules given on the command line; a bad one is a usage error. An
/// empty one is refused too: it would match every packet, which an empty
/// shell variable must not do to a drop rule.
pub fn parse_args(texts: &[String], action: Action) -> anyhow::Result<Vec<Rule>> {
    texts
        .iter()
        .map(|t| {
            if t.trim().is_empty() {
                return Err(UsageError(
                    "empty rule: it would match every packet; give at least one primitive".into(),
                )
                .into());
            }
            parse(t, action).map_err(|e| UsageError(e.to_string()).into())
        })
        .collect()
}

/// Compiles rules; a rule set too complex to compile is a usage error.
pub fn compile_args(rules: &[Rule]) -> anyhow::Result<Compiled> {
    Compiled::compile(rules).map_err(|e| UsageError(e).into())
}
