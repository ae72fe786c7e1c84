//! The socket filter program: loading it with its settings, and reading
//! what it counted.
use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapMut, OpenObject};

use crate::filter::capacity::Capacity;
use crate::filter::tables::RuleTables;
use crate::kernel::counters::{read_percpu, Stats};
use crate::skel::sockfilter::{SockfilterSkel, SockfilterSkelBuilder};

/// What the program is loaded with.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Room for filter rules; `None`: every frame matches.
    pub rules: Option<Capacity>,
    pub counts_only: bool,
    /// Bytes delivered per frame; 0 for the whole frame.
    pub snaplen: u32,
    /// A rule runs as a libpcap program, which may read any byte of the
    /// frame: its first NP_FRAME_COPY bytes are copied (the rest are read
    /// from the socket buffer); otherwise only headers are copied.
    pub whole_frames: bool,
}

/// What the parser and the tables read at most, and `NP_FRAME_COPY`.
const HEADER_BYTES: u32 = 1088;
const FRAME_COPY: u32 = 16384;

pub fn load<'obj>(
    storage: &'obj mut MaybeUninit<OpenObject>,
    opts: &LoadOptions,
) -> Result<SockfilterSkel<'obj>> {
    let mut open = SockfilterSkelBuilder::default()
        .open(storage)
        .context("opening the socket filter object")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("no .rodata in the socket filter object")?;
    rodata.rules_enabled = opts.rules.is_some();
    rodata.counts_only = opts.counts_only;
    rodata.copy_limit = if opts.whole_frames {
        FRAME_COPY
    } else {
        HEADER_BYTES
    };
    // The filter's return value is how many bytes the socket keeps.
    rodata.snaplen = if opts.snaplen == 0 {
        u32::MAX
    } else {
        opts.snaplen
    };
    let cap = opts.rules.unwrap_or(Capacity::NONE);
    rodata.max_rules = cap.rules;
    rodata.max_programs = cap.programs;
    rodata.max_cells = cap.cells;
    rodata.max_addr_rows = cap.addr_rows;
    rodata.row_fields = cap.row_fields;
    crate::size_rule_tables!(open.maps, cap);
    open.load()
        .context("loading the socket filter into the kernel")
}

pub fn rule_tables<'a, 'obj>(skel: &'a SockfilterSkel<'obj>) -> RuleTables<'a, MapMut<'obj>> {
    crate::rule_tables!(skel)
}

pub fn read_stats(skel: &SockfilterSkel<'_>) -> Result<Stats> {
    read_percpu(&skel.maps.sock_stats)
}

/// The verdict index of frames handed to the socket (NP_VERDICT_PASS).
pub const PASSED: usize = 2;
/// The verdict index of frames the filter kept from the socket (NP_VERDICT_DROP).
pub const FILTERED: usize = 1;
