//! The XDP program: loading it with its settings, and reading what it
//! counted.
use std::mem::MaybeUninit;
use std::net::IpAddr;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapMut, OpenObject, ProgramMut};

use crate::filter::capacity::Capacity;
use crate::filter::tables::RuleTables;
use crate::kernel::counters::{read_percpu, sum_percpu, Counter, Stats};
use crate::report::SourceHits;
use crate::skel::xdp::{XdpSkel, XdpSkelBuilder};

/// Source addresses `--top` keeps counters for (least recently seen go first).
const TOP_SOURCES_TRACKED: u32 = 8192;
/// Own addresses `--reply` answers for.
const REPLY_ADDRS_MAX: u32 = 256;

/// What the program is loaded with; fixed until it is unloaded.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Room for rules; `None` loads the program without the rule matcher.
    pub rules: Option<Capacity>,
    pub dry_run: bool,
    pub reply_icmp: bool,
    pub count_sources: bool,
}

/// The entry points of the XDP object, each compiled with only what it
/// needs: code for a feature costs even where the feature is off.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EntryPoint {
    /// Counting only.
    Count,
    /// Counting and rules (`--drop`, `--redirect`).
    Rules,
    /// Counting, rules, `--reply` and `--top`.
    All,
}

fn entry_point(rules_enabled: bool, reply_icmp: bool, count_sources: bool) -> EntryPoint {
    match (rules_enabled, reply_icmp || count_sources) {
        (false, false) => EntryPoint::Count,
        (true, false) => EntryPoint::Rules,
        (_, true) => EntryPoint::All,
    }
}

/// Opens and loads the XDP program (verifier included) without attaching it.
pub fn load<'obj>(
    storage: &'obj mut MaybeUninit<OpenObject>,
    opts: &LoadOptions,
) -> Result<XdpSkel<'obj>> {
    let mut open = XdpSkelBuilder::default()
        .open(storage)
        .context("opening the XDP object")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("no .rodata in the XDP object")?;
    rodata.rules_enabled = opts.rules.is_some();
    rodata.dry_run = opts.dry_run;
    rodata.reply_icmp = opts.reply_icmp;
    rodata.count_sources = opts.count_sources;
    let entry = entry_point(opts.rules.is_some(), opts.reply_icmp, opts.count_sources);
    let cap = opts.rules.unwrap_or(Capacity::NONE);
    rodata.max_rules = cap.rules;
    rodata.max_programs = cap.programs;
    rodata.max_cells = cap.cells;
    rodata.max_addr_rows = cap.addr_rows;
    rodata.row_fields = cap.row_fields;
    crate::size_rule_tables!(open.maps, cap);
    let maps = &mut open.maps;
    maps.top_sources.set_max_entries(if opts.count_sources {
        TOP_SOURCES_TRACKED
    } else {
        1
    })?;
    maps.reply_addrs
        .set_max_entries(if opts.reply_icmp { REPLY_ADDRS_MAX } else { 1 })?;
    open.progs
        .xdp_netprobe
        .set_autoload(entry == EntryPoint::Count);
    open.progs
        .xdp_np_rules
        .set_autoload(entry == EntryPoint::Rules);
    open.progs
        .xdp_np_actions
        .set_autoload(entry == EntryPoint::All);
    open.load()
        .context("loading the XDP program into the kernel")
}

/// The one program `load` loaded.
pub fn program<'a, 'obj>(skel: &'a XdpSkel<'obj>) -> &'a ProgramMut<'obj> {
    let entry = skel.maps.rodata_data.map_or(EntryPoint::Count, |r| {
        entry_point(r.rules_enabled, r.reply_icmp, r.count_sources)
    });
    match entry {
        EntryPoint::Count => &skel.progs.xdp_netprobe,
        EntryPoint::Rules => &skel.progs.xdp_np_rules,
        EntryPoint::All => &skel.progs.xdp_np_actions,
    }
}

/// The rule tables of a loaded program.
pub fn rule_tables<'a, 'obj>(skel: &'a XdpSkel<'obj>) -> RuleTables<'a, MapMut<'obj>> {
    crate::rule_tables!(skel)
}

/// Sums the per-CPU counters of a loaded XDP program.
pub fn read_stats(skel: &XdpSkel<'_>) -> Result<Stats> {
    read_percpu(&skel.maps.xdp_stats)
}

/// `struct np_addr` for an address.
pub fn addr_key(ip: IpAddr) -> [u8; 20] {
    let mut key = [0u8; 20];
    match ip {
        IpAddr::V4(v4) => {
            key[0] = 4;
            key[4..8].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            key[0] = 6;
            key[4..20].copy_from_slice(&v6.octets());
        }
    }
    key
}

fn addr_of_key(key: &[u8]) -> Option<IpAddr> {
    match key.first()? {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(key.get(4..8)?).ok()?)),
        6 => Some(IpAddr::from(<[u8; 16]>::try_from(key.get(4..20)?).ok()?)),
        _ => None,
    }
}

/// The `n` busiest sources in a loaded program's `top_sources`.
pub fn top_sources(skel: &XdpSkel<'_>, n: usize) -> Result<Vec<SourceHits>> {
    let map = &skel.maps.top_sources;
    let mut all = Vec::new();
    for key in map.keys() {
        // An entry evicted between listing and reading is simply skipped.
        let Some(per_cpu) = map
            .lookup_percpu(&key, MapFlags::ANY)
            .context("reading top_sources")?
        else {
            continue;
        };
        let total: Counter = sum_percpu(&per_cpu)?;
        if let Some(addr) = addr_of_key(&key) {
            all.push(SourceHits {
                addr: addr.to_string(),
                packets: total.packets,
                bytes: total.bytes,
            });
        }
    }
    all.sort_by(|a, b| {
        b.packets
            .cmp(&a.packets)
            .then(b.bytes.cmp(&a.bytes))
            .then(a.addr.cmp(&b.addr))
    });
    all.truncate(n);
    Ok(all)
}
