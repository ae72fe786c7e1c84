//! How large the rule tables are made before load: enough for a rule set
//! in both generations, and, reloadable, for one that grows.
use super::addr::{most_hashed, MAX_BLOCKS};
use super::compile::{Compiled, MAX_PROGRAMS, MAX_PROGRAM_SLOTS};
use super::model::Rule;

/// Ports per generation in the `port_class` array (`NP_PORTS`).
pub const PORTS: u32 = 1 << 16;

/// `row_fields` with every field, and with the ports.
const ALL_ROW_FIELDS: u32 = 0xf;
const PORT_ROW_FIELDS: u32 = 0xc;

/// Sizes the rule tables of an open skeleton, before load; its program's
/// `max_rules`, `max_programs`, `max_cells`, `max_addr_rows` and `row_fields` must be set
/// to the capacity's too.
#[macro_export]
macro_rules! size_rule_tables {
    ($maps:expr, $capacity:expr) => {{
        let cap: $crate::filter::capacity::Capacity = $capacity;
        $maps.programs.set_max_entries(2 * cap.programs)?;
        $maps.dense_cells.set_max_entries(2 * cap.cells)?;
        $maps
            .addr_rows
            .set_max_entries((2 * cap.addr_rows).max(1))?;
        $maps.port_rows.set_max_entries(if cap.port_rows() {
            2 * $crate::filter::capacity::PORTS
        } else {
            1
        })?;
        $maps.addr_prefixes.set_max_entries(cap.entries)?;
        // A program loaded without rules needs no port or slot table.
        let none = cap == $crate::filter::capacity::Capacity::NONE;
        $maps.port_class.set_max_entries(if none {
            1
        } else {
            2 * $crate::filter::capacity::PORTS
        })?;
        $maps
            .addr_blocks
            .set_max_entries(2 * cap.blocks * $crate::filter::addr::BLOCK as u32)?;
        $maps.addr_slots.set_max_entries(if none {
            1
        } else {
            4 * $crate::filter::addr::SLOTS
        })?;
        $maps.shape_table.set_max_entries(cap.entries)?;
        $maps.rule_stats.set_max_entries(2 * cap.rules)?;
    }};
}

/// Table sizes to create the maps with, before load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Rules per generation (the stride of `rule_stats`).
    pub rules: u32,
    /// Entries per table, both generations together.
    pub entries: u32,
    /// Program slots per generation.
    pub programs: u32,
    /// Dense cells per generation.
    pub cells: u32,
    /// Address blocks (of either family) per generation.
    pub blocks: u32,
    /// Rows of shape classes per generation, by address class (those by
    /// port are one per port, where `row_fields` has a port).
    pub addr_rows: u32,
    /// Bit f: field f (src, dst, sport, dport) may have shape classes, and
    /// the program looks its row up (`row_fields`).
    pub row_fields: u32,
}

impl Capacity {
    /// Room for `compiled` in both generations; with `reloadable`, also for
    /// a rule set that grows to twice its size.
    pub fn for_rules(rules: &[Rule], compiled: &Compiled, reloadable: bool) -> Capacity {
        let largest = compiled
            .entries
            .len()
            .max(most_hashed(&compiled.addr_classes));
        let grow = if reloadable { 2 } else { 1 };
        let floor = if reloadable { 4096 } else { 16 };
        Capacity {
            rules: (rules.len() * grow).max(floor) as u32,
            entries: (2 * largest * grow).max(floor) as u32,
            // Each slot takes 32 KiB: room for more than MAX_PROGRAMS only
            // where the rule set has them.
            programs: if reloadable {
                (compiled.programs.len() * grow).clamp(MAX_PROGRAMS, MAX_PROGRAM_SLOTS)
            } else {
                compiled.programs.len().max(1)
            } as u32,
            cells: (compiled.cell_count as usize * grow).max(floor) as u32,
            // A reloaded rule set that needs more blocks keeps the
            // prefixes below the entries that get none in the hash.
            blocks: (compiled.addr.blocks.len() * grow)
                .max(if reloadable { 64 } else { 1 })
                .min(MAX_BLOCKS) as u32,
            addr_rows: (compiled.addr_rows.len() * grow).max(floor) as u32,
            // The program looks up rows only for the fields that need
            // them; a reloaded rule set may need any.
            row_fields: if reloadable {
                ALL_ROW_FIELDS
            } else {
                compiled.row_fields()
            },
        }
    }

    /// The smallest tables, for a program loaded without rules.
    pub const NONE: Capacity = Capacity {
        rules: 1,
        entries: 1,
        programs: 1,
        cells: 1,
        blocks: 1,
        addr_rows: 0,
        row_fields: 0,
    };

    /// Whether the program reads port classes from rows by port.
    pub fn port_rows(&self) -> bool {
        self.row_fields & PORT_ROW_FIELDS != 0
    }
}
