//! Writes a compiled rule set into the BPF tables of `src/bpf/rules.h`, and
//! reads the per-rule hit counters back.
//!
//! Reloading is atomic per packet: every key carries a generation byte and
//! the program reads the generation in force (`rules_active`) once per
//! packet. A reload fills the other generation completely (address slots
//! and prefixes, port classes, cells, hash, config, zeroed hit counters), then flips `rules_active` with one 4-byte
//! write. A packet sees the old rule set or the new one, never a mix. The
//! old generation's entries stay untouched until the next reload clears
//! them, long after any packet that started under them has finished.
use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use super::addr::{self, AddrTables, BLOCK, MAX_LENS, SLOTS};
use super::capacity::{Capacity, PORTS};
use super::compile::{Compiled, DirectTest, MAX_DIRECT, MAX_SHAPES};
use super::model::{Rule, SHAPE_FIELDS};
use super::pcap::{Insn, MAX_INSNS};
use super::table_types::{
    bytes, AddrKey, AddrSlot, ClassRow, Direct, Program, RuleRef, RulesConfig, ShapeKey,
    DIRECT_CLAUSES, DIRECT_WIDE, NOT_DENSE, PROGRAM_HELD, PROGRAM_UNTAGGED,
};
use crate::kernel::counters::{sum_percpu, Counter};

/// `np_rules_config.direct_flags` for these direct comparisons: whether
/// any masks more than an address's first 64 bits (an IPv6 prefix longer
/// than /64), and whether any is negated or one of several in a
/// clause (else the program takes its cheaper loop).
fn direct_flags(direct: &[DirectTest]) -> u32 {
    let wide = direct
        .iter()
        .flat_map(|t| [t.conjunction.src, t.conjunction.dst])
        .flatten()
        .any(|p| p.len > 64);
    let clauses = direct.iter().any(|t| t.negate || !t.end || t.held);
    let mut flags = 0;
    if wide {
        flags |= DIRECT_WIDE;
    }
    if clauses {
        flags |= DIRECT_CLAUSES;
    }
    flags
}

/// Writes `zero` (an array map's empty value) at each of `indices`.
fn zero_entries<M: MapCore>(map: &M, indices: &[u32], zero: &[u8], what: &str) -> Result<()> {
    let mut batch = Batch::new(map, format!("clearing the {what}"));
    for index in indices {
        batch.push(&index.to_ne_bytes(), zero);
    }
    batch.write()
}

/// Entries for one map, written with one system call
/// (`BPF_MAP_UPDATE_BATCH`) instead of one each: 100,000 rules write some
/// 150,000 entries.
struct Batch<'m, M: MapCore> {
    map: &'m M,
    /// What the write is, for its error: "writing the address slots".
    doing: String,
    keys: Vec<u8>,
    values: Vec<u8>,
}

impl<'m, M: MapCore> Batch<'m, M> {
    fn new(map: &'m M, doing: impl Into<String>) -> Self {
        Self {
            map,
            doing: doing.into(),
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, key: &[u8], value: &[u8]) {
        self.keys.extend_from_slice(key);
        self.values.extend_from_slice(value);
    }

    fn write(self) -> Result<()> {
        let count = self.keys.len() / self.map.key_size() as usize;
        if count == 0 {
            return Ok(());
        }
        self.map
            .update_batch(
                &self.keys,
                &self.values,
                count as u32,
                MapFlags::ANY,
                MapFlags::ANY,
            )
            .context(self.doing)
    }
}

/// The maps of `rules.h` in one loaded program.
pub struct RuleTables<'a, M: MapCore> {
    pub addr_slots: &'a M,
    pub addr_prefixes: &'a M,
    pub addr_blocks: &'a M,
    pub port_class: &'a M,
    pub shape_table: &'a M,
    pub rules_config: &'a M,
    pub rules_active: &'a M,
    pub rule_stats: &'a M,
    pub programs: &'a M,
    pub dense_cells: &'a M,
    pub addr_rows: &'a M,
    pub port_rows: &'a M,
}

/// The rule tables of any loaded skeleton whose program includes `rules.h`.
#[macro_export]
macro_rules! rule_tables {
    ($skel:expr) => {
        $crate::filter::tables::RuleTables {
            addr_slots: &$skel.maps.addr_slots,
            addr_prefixes: &$skel.maps.addr_prefixes,
            addr_blocks: &$skel.maps.addr_blocks,
            port_class: &$skel.maps.port_class,
            shape_table: &$skel.maps.shape_table,
            rules_config: &$skel.maps.rules_config,
            rules_active: &$skel.maps.rules_active,
            rule_stats: &$skel.maps.rule_stats,
            programs: &$skel.maps.programs,
            dense_cells: &$skel.maps.dense_cells,
            addr_rows: &$skel.maps.addr_rows,
            port_rows: &$skel.maps.port_rows,
        }
    };
}

/// What one generation holds, to clear it before it is reused.
#[derive(Default)]
struct Generation {
    addr_keys: Vec<AddrKey>,
    /// Address slots that are not empty, likewise.
    slots: Vec<u32>,
    /// Address block entries that are not empty, likewise.
    block_entries: Vec<u32>,
    /// Ports with a class, to zero before the generation is reused.
    ports: Vec<u32>,
    /// Dense cells holding a rule, likewise.
    cells: Vec<u32>,
    /// Rows of shape classes written, likewise.
    addr_rows: Vec<u32>,
    port_rows: Vec<u32>,
    shape_keys: Vec<ShapeKey>,
    rules: usize,
}

/// The rule set in force and how to replace it.
pub struct RuleState {
    capacity: Capacity,
    active: u8,
    generations: [Generation; 2],
    installed: bool,
}

impl RuleState {
    pub fn new(capacity: Capacity) -> RuleState {
        RuleState {
            capacity,
            active: 0,
            generations: Default::default(),
            installed: false,
        }
    }

    /// Makes `rules` (compiled as `compiled`) the rule set in force.
    pub fn install<M: MapCore>(
        &mut self,
        maps: &RuleTables<'_, M>,
        rules: &[Rule],
        compiled: &Compiled,
    ) -> Result<()> {
        let gen = if self.installed {
            1 - self.active
        } else {
            self.active
        };
        let other = &self.generations[usize::from(1 - gen)];
        let cap = self.capacity;
        // A rule set of more blocks than the tables hold (a reload) keeps
        // the prefixes below the entries that get none in the hash.
        let rebuilt;
        let addr_tables = if compiled.addr.blocks.len() > cap.blocks as usize {
            rebuilt = AddrTables::build_within(&compiled.addr_classes, cap.blocks as usize)
                .map_err(|m| {
                    anyhow::anyhow!(
                        "the new rule set ({} rules): {m}; restart netprobe to load it",
                        rules.len()
                    )
                })?;
            &rebuilt
        } else {
            &compiled.addr
        };
        let needs = [
            ("rules", rules.len(), cap.rules as usize),
            (
                "shape table entries",
                compiled.entries.len() + other.shape_keys.len(),
                cap.entries as usize,
            ),
            (
                "address table entries",
                addr_tables.long.len() + other.addr_keys.len(),
                cap.entries as usize,
            ),
            (
                "libpcap programs",
                compiled.programs.len(),
                cap.programs as usize,
            ),
            (
                "dense cells",
                compiled.cell_count as usize,
                cap.cells as usize,
            ),
            (
                "rows of shape classes",
                compiled.addr_rows.len(),
                cap.addr_rows as usize,
            ),
            (
                "fields keyed by shape classes the program was loaded without",
                (compiled.row_fields() & !cap.row_fields).count_ones() as usize,
                0,
            ),
        ];
        if let Some((what, need, room)) = needs.iter().find(|(_, need, room)| need > room) {
            bail!(
                "the new rule set ({} rules) needs {need} {what}, and the tables netprobe \
                 started with hold {room}; restart netprobe to load it",
                rules.len()
            );
        }
        self.clear(maps, gen)?;
        let mut written = Generation {
            rules: rules.len(),
            ..Default::default()
        };
        let mut slots = Batch::new(maps.addr_slots, "writing the address slots");
        for (index, slot) in &addr_tables.slots {
            let index = u32::from(gen) * 2 * SLOTS + index;
            slots.push(
                &index.to_ne_bytes(),
                bytes(&AddrSlot::of(slot, gen, cap.blocks)),
            );
            written.slots.push(index);
        }
        slots.write()?;
        let mut blocks = Batch::new(maps.addr_blocks, "writing the address blocks");
        for (b, block) in addr_tables.blocks.iter().enumerate() {
            for (byte, entry) in block.iter().enumerate() {
                if *entry == 0 {
                    continue;
                }
                let index = (u32::from(gen) * cap.blocks + b as u32) * BLOCK as u32 + byte as u32;
                let entry = addr::entry_in_map(*entry, gen, cap.blocks);
                blocks.push(&index.to_ne_bytes(), &entry.to_ne_bytes());
                written.block_entries.push(index);
            }
        }
        blocks.write()?;
        let mut prefixes = Batch::new(maps.addr_prefixes, "writing the address prefixes");
        for (prefix, class) in &addr_tables.long {
            let key = AddrKey {
                gen,
                family: prefix.family,
                len: prefix.len,
                pad: 0,
                addr: prefix.addr,
            };
            prefixes.push(bytes(&key), &class.to_ne_bytes());
            written.addr_keys.push(key);
        }
        prefixes.write()?;
        let mut ports = Batch::new(maps.port_class, "writing the port classes");
        for (port, class) in compiled.port_classes.iter().enumerate() {
            if *class == 0 {
                continue;
            }
            let index = u32::from(gen) * PORTS + port as u32;
            ports.push(&index.to_ne_bytes(), &class.to_ne_bytes());
            written.ports.push(index);
        }
        ports.write()?;
        let mut shapes = Batch::new(maps.shape_table, "writing the rule table");
        for (k, r) in &compiled.entries {
            let key = ShapeKey {
                gen,
                shape: k.shape,
                l3: k.l3,
                proto: k.proto,
                src: k.src,
                dst: k.dst,
                sport: k.sport,
                dport: k.dport,
            };
            let value = RuleRef {
                rule: r.rule,
                action: r.action as u32,
            };
            shapes.push(bytes(&key), bytes(&value));
            written.shape_keys.push(key);
        }
        shapes.write()?;
        // Held programs in a row from each slot, counted from the last.
        let mut held_runs = vec![0u32; compiled.programs.len() + 1];
        for (slot, p) in compiled.programs.iter().enumerate().rev() {
            held_runs[slot] = if p.held { held_runs[slot + 1] + 1 } else { 0 };
        }
        for (slot, p) in compiled.programs.iter().enumerate() {
            let mut program = Program {
                rule: p.rule.rule,
                action: p.rule.action as u32,
                len: p.insns.len() as u32,
                flags: if p.untagged { PROGRAM_UNTAGGED } else { 0 }
                    | if p.held { PROGRAM_HELD } else { 0 },
                held_run: held_runs[slot],
                insn: [Insn::default(); MAX_INSNS],
            };
            program.insn[..p.insns.len()].copy_from_slice(&p.insns);
            let index = u32::from(gen) * cap.programs + slot as u32;
            maps.programs
                .update(&index.to_ne_bytes(), bytes(&program), MapFlags::ANY)
                .context("writing a rule's program")?;
        }
        let mut cells = Batch::new(maps.dense_cells, "writing the dense cells");
        for (cell, r) in &compiled.cells {
            let index = u32::from(gen) * cap.cells + cell;
            let value = RuleRef {
                rule: r.rule,
                action: r.action as u32,
            };
            cells.push(&index.to_ne_bytes(), bytes(&value));
            written.cells.push(index);
        }
        cells.write()?;
        let masks = &compiled.masks;
        let mut addr_rows = Batch::new(maps.addr_rows, "writing the shape classes of addresses");
        for (class, row) in compiled.addr_rows.iter().enumerate() {
            let row = ClassRow {
                class: *row,
                shapes: [0, 1].map(|f| masks.row(f, class)),
            };
            if row.class.iter().all(|c| *c == 0) && row.shapes == [0; 2] {
                continue;
            }
            let index = u32::from(gen) * cap.addr_rows + class as u32;
            addr_rows.push(&index.to_ne_bytes(), bytes(&row));
            written.addr_rows.push(index);
        }
        addr_rows.write()?;
        if cap.port_rows() {
            // By port: column 0 is the port's class, as in port_class.
            let mut port_rows = Batch::new(maps.port_rows, "writing the shape classes of ports");
            for (port, class) in compiled.port_classes.iter().enumerate() {
                if *class == 0 {
                    continue;
                }
                let mut row = compiled
                    .port_rows
                    .get(*class as usize)
                    .copied()
                    .unwrap_or_default();
                row[0] = *class;
                let index = u32::from(gen) * PORTS + port as u32;
                let row = ClassRow {
                    class: row,
                    shapes: [2, 3].map(|f| masks.row(f, *class as usize)),
                };
                port_rows.push(&index.to_ne_bytes(), bytes(&row));
                written.port_rows.push(index);
            }
            port_rows.write()?;
        }
        let mut config = RulesConfig {
            n_shapes: compiled.shapes.len() as u32,
            fields: compiled
                .shapes
                .iter()
                .copied()
                .chain(compiled.direct.iter().map(DirectTest::fields))
                .fold(0, |acc, s| acc | u32::from(s & SHAPE_FIELDS)),
            n_programs: compiled.programs.len() as u32,
            n_direct: compiled.direct.len() as u32,
            direct_flags: direct_flags(&compiled.direct),
            held_programs: compiled.programs.iter().filter(|p| p.held).count() as u32,
            direct: [Direct::default(); MAX_DIRECT],
            shape: [0; MAX_SHAPES],
            dense_base: [NOT_DENSE; MAX_SHAPES],
            stride: [[0; 6]; MAX_SHAPES],
            column: [[0; 4]; MAX_SHAPES],
            by_found: masks.by_found,
            by_l3: masks.by_l3,
            by_proto: masks.by_proto,
            keyed: masks.keyed_in(compiled.row_fields()),
            clause_shapes: compiled.clause_shapes(),
            proto_class: [0; 256],
            addr_len: [[0; MAX_LENS]; 2],
            addr_mask: [[[[0; 4]; 4]; MAX_LENS]; 2],
            addr_below: [[0; addr::LEVELS]; 2],
        };
        for (family, lens) in addr_tables.lens.iter().enumerate() {
            for (j, len) in lens.iter().enumerate() {
                config.addr_len[family][j] = *len;
                config.addr_mask[family][j] = addr::mask(*len);
            }
            for (level, below) in config.addr_below[family].iter_mut().enumerate() {
                *below = addr_tables.below(family, level);
            }
        }
        for (slot, test) in config.direct.iter_mut().zip(&compiled.direct) {
            *slot = Direct::of(test);
        }
        config.shape[..compiled.shapes.len()].copy_from_slice(&compiled.shapes);
        for (i, dense) in compiled.dense.iter().enumerate() {
            if let Some(d) = dense {
                config.dense_base[i] = d.base;
                config.stride[i] = d.stride;
            }
        }
        config.column[..compiled.columns.len()].copy_from_slice(&compiled.columns);
        if !compiled.proto_class.is_empty() {
            config.proto_class.copy_from_slice(&compiled.proto_class);
        }
        maps.rules_config
            .update(&u32::from(gen).to_ne_bytes(), bytes(&config), MapFlags::ANY)
            .context("writing the rules config")?;
        // The switch: from the next packet on, the new generation is in force.
        maps.rules_active
            .update(
                &0u32.to_ne_bytes(),
                &u32::from(gen).to_ne_bytes(),
                MapFlags::ANY,
            )
            .context("switching to the new rules")?;
        self.generations[usize::from(gen)] = written;
        self.active = gen;
        self.installed = true;
        Ok(())
    }

    /// Empties generation `gen`: its table entries, and zeroes its hit counters.
    fn clear<M: MapCore>(&mut self, maps: &RuleTables<'_, M>, gen: u8) -> Result<()> {
        let old = std::mem::take(&mut self.generations[usize::from(gen)]);
        for key in &old.addr_keys {
            maps.addr_prefixes
                .delete(bytes(key))
                .context("clearing the address prefixes")?;
        }
        zero_entries(
            maps.addr_blocks,
            &old.block_entries,
            &0u32.to_ne_bytes(),
            "address blocks",
        )?;
        zero_entries(
            maps.addr_slots,
            &old.slots,
            bytes(&AddrSlot::default()),
            "address slots",
        )?;
        zero_entries(
            maps.dense_cells,
            &old.cells,
            bytes(&RuleRef::default()),
            "dense cells",
        )?;
        let empty_row = ClassRow::default();
        zero_entries(
            maps.addr_rows,
            &old.addr_rows,
            bytes(&empty_row),
            "shape classes",
        )?;
        zero_entries(
            maps.port_rows,
            &old.port_rows,
            bytes(&empty_row),
            "shape classes",
        )?;
        zero_entries(
            maps.port_class,
            &old.ports,
            &0u32.to_ne_bytes(),
            "port classes",
        )?;
        for key in &old.shape_keys {
            maps.shape_table
                .delete(bytes(key))
                .context("clearing the rule table")?;
        }
        let cpus = libbpf_rs::num_possible_cpus().context("counting CPUs")?;
        let zero = vec![vec![0u8; std::mem::size_of::<Counter>()]; cpus];
        for rule in 0..old.rules as u32 {
            maps.rule_stats
                .update_percpu(
                    &self.stat_index(gen, rule).to_ne_bytes(),
                    &zero,
                    MapFlags::ANY,
                )
                .context("zeroing rule counters")?;
        }
        Ok(())
    }

    fn stat_index(&self, gen: u8, rule: u32) -> u32 {
        u32::from(gen) * self.capacity.rules + rule
    }

    /// Packets and bytes per rule of the set in force, in rule order.
    pub fn hits<M: MapCore>(&self, maps: &RuleTables<'_, M>) -> Result<Vec<Counter>> {
        let gen = self.active;
        (0..self.generations[usize::from(gen)].rules as u32)
            .map(|rule| {
                let per_cpu = maps
                    .rule_stats
                    .lookup_percpu(&self.stat_index(gen, rule).to_ne_bytes(), MapFlags::ANY)
                    .context("reading rule counters")?
                    .context("rule counter missing")?;
                sum_percpu(&per_cpu)
            })
            .collect()
    }
}
