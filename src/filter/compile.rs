//! Compiling a rule set into the tables the BPF matcher reads: address
//! classes (see [`super::addr`]), an array of port classes, and a cell or
//! hash entry per shape keyed by the classes; and the libpcap programs of
//! the rules the tables cannot hold. A large shape may be keyed by classes
//! of its own for a field (its rules' prefixes or ports only, read from a
//! row per class of the rule set's), so that it stays dense cells, not
//! hash entries, however many other rules share the field (`own_classes`).
//! A rule set of a few alternatives also gets them as a list the program
//! compares one by one (`direct`), cheaper than the lookups; the tables
//! hold it all the same. `Compiled::lookup` is what the BPF tables do, in
//! Rust.
use std::collections::HashMap;

use super::addr::AddrTables;
use super::candidates::{ShapeMasks, CLASS_FIELDS};
pub use super::classes::Dense;
use super::classes::{
    addr_item, block_range, own_classes, port_classes, port_item, prefix_range, PrefixIndex,
    CLAUSE_L3_VALUES, COLUMNS, L3_VALUES, MAX_CELLS_PER_SHAPE,
};
use super::clause_cells::{clause_shape, conjunctions, ClauseSpace};
use super::direct::direct_tests;
pub use super::direct::{DirectTest, MAX_DIRECT};
pub use super::model::RuleRef;
use super::model::{
    Conjunction, PortRange, Prefix, Rule, SHAPE_CLAUSE, SHAPE_DPORT, SHAPE_DST, SHAPE_FIELDS,
    SHAPE_L3, SHAPE_PROTO, SHAPE_SPORT, SHAPE_SRC,
};
use super::pcap::Insn;

/// Distinct shapes a rule set may use; each costs one lookup per packet.
pub const MAX_SHAPES: usize = 64;
/// Hash entries a rule set may compile into.
pub const MAX_ENTRIES: usize = 4 << 20;
/// Rules a rule set may hold as libpcap programs that run on every frame
/// (`NP_MAX_PROGRAMS`): each costs its run time on every packet that no
/// earlier rule matched.
pub const MAX_PROGRAMS: usize = 64;
/// Program slots in all (`NP_MAX_PROGRAM_SLOTS`): the others hold the
/// programs of rules of clauses, which XDP runs only on frames cut short
/// (`RuleProgram::held`).
pub const MAX_PROGRAM_SLOTS: usize = 512;
/// What the errors of too many programs say after their count.
const NEED_PROGRAMS: &str = " rules need a libpcap program";

/// The key of one hash entry: a shape and the classes it constrains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShapeKey {
    pub shape: u8,
    pub l3: u8,
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
    pub sport: u32,
    pub dport: u32,
}

/// A rule set compiled into table entries (generation-free; the maps
/// module adds the generation byte).
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// Every rule prefix and its class id (1-based).
    pub addr_classes: Vec<(Prefix, u32)>,
    /// The same, laid out for the kernel.
    pub addr: AddrTables,
    /// The class of every port (0: no rule range covers it): the most
    /// specific prefix-aligned block of a rule's port range covering it.
    /// Empty when no rule names a port.
    pub port_classes: Vec<u32>,
    /// Shapes in use, in the order the program tries them.
    pub shapes: Vec<u8>,
    pub entries: HashMap<ShapeKey, RuleRef>,
    /// Rules matched by their libpcap program, in rule order.
    pub programs: Vec<RuleProgram>,
    /// How each shape (in `shapes` order) is stored: as dense cells, or
    /// (None) in the hash.
    pub dense: Vec<Option<Dense>>,
    /// The dense cells that hold a rule, by index.
    pub cells: Vec<(u32, RuleRef)>,
    /// Cells the dense shapes take in all.
    pub cell_count: u32,
    /// IP protocol -> its class in dense cells (0: no rule names it).
    pub proto_class: Vec<u8>,
    /// Per shape (in `shapes` order) and field (src, dst, sport, dport):
    /// the column of `addr_rows` or `port_rows` holding the shape's own
    /// classes of that field, or 0: the rule set's classes.
    pub columns: Vec<[u8; 4]>,
    /// By address class: the class of each column's shape (0: none of the
    /// shape's prefixes covers it). Column 0 is unused. Empty when no
    /// shape has address classes of its own.
    pub addr_rows: Vec<[u32; COLUMNS]>,
    /// The same by port class.
    pub port_rows: Vec<[u32; COLUMNS]>,
    /// Every table alternative and clause in rule order, when the BPF
    /// program compares them one by one instead of using the tables (see
    /// `direct::direct_tests`); empty otherwise.
    pub direct: Vec<DirectTest>,
    /// Which shapes a frame can match, by its fields and classes.
    pub masks: ShapeMasks,
}

impl Dense {
    /// The cell of a key, as rules.h computes it.
    pub(super) fn cell(&self, key: &ShapeKey, proto_class: &[u8]) -> u32 {
        self.cell_of([
            u32::from(key.l3),
            u32::from(proto_class[usize::from(key.proto)]),
            key.src,
            key.dst,
            key.sport,
            key.dport,
        ])
    }
}

/// A rule's libpcap program, as the BPF program runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleProgram {
    pub rule: RuleRef,
    pub insns: Vec<Insn>,
    /// The rule is made of fields: its program sees the frame without
    /// its VLAN tags, as the tables and the direct path do.
    pub untagged: bool,
    /// The direct path holds the rule's clauses: where it runs, the
    /// program runs only on frames cut short.
    pub held: bool,
}

/// Dense cells a rule set may take in all.
pub const MAX_CELLS: u64 = 1 << 21;

/// How a rule set is laid out for the program.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Direct alternatives where the rule set is small enough, else tables.
    Best,
    /// Tables whatever the size.
    Tables,
    /// Tables, with every shape field that can have classes of its own
    /// given them.
    OwnClasses,
}

impl Compiled {
    pub fn compile(rules: &[Rule]) -> Result<Compiled, String> {
        Compiled::compile_as(rules, Layout::Best)
    }

    /// The same, into the tables even where the rule set is small enough
    /// to be matched directly: the tests check the tables on small rule
    /// sets, and the bench compares the two.
    pub fn compile_tables_only(rules: &[Rule]) -> Result<Compiled, String> {
        Compiled::compile_as(rules, Layout::Tables)
    }

    /// Into the tables, with every shape field that can have classes of
    /// its own given them, however small the shape: the tests check that
    /// path on rule sets small enough to check exhaustively.
    pub fn compile_with_own_classes(rules: &[Rule]) -> Result<Compiled, String> {
        Compiled::compile_as(rules, Layout::OwnClasses)
    }

    /// Rules of clauses go into the tables where their cells fit (see
    /// [`super::clause_cells`]); else their programs match them on every
    /// frame.
    fn compile_as(rules: &[Rule], layout: Layout) -> Result<Compiled, String> {
        match Compiled::build(rules, layout, true) {
            // Without clauses in the tables, no program is held: there would
            // be more to run on every frame, not fewer.
            Err(e) if e.contains(NEED_PROGRAMS) => Err(e),
            Err(_) => Compiled::build(rules, layout, false),
            compiled => compiled,
        }
    }

    fn build(rules: &[Rule], layout: Layout, clauses: bool) -> Result<Compiled, String> {
        let own_always = layout == Layout::OwnClasses;
        let alternatives = || {
            rules
                .iter()
                .enumerate()
                .flat_map(|(i, r)| r.alternatives.iter().map(move |c| (i, r.action, c)))
        };
        let clause_rules = || {
            rules
                .iter()
                .enumerate()
                .filter(move |_| clauses)
                .flat_map(|(i, r)| {
                    let rule = RuleRef {
                        rule: i as u32,
                        action: r.action,
                    };
                    r.clauses.iter().map(move |c| (rule, c))
                })
        };
        let of_clause_shape =
            move |shape: u8| clause_rules().filter(move |(_, c)| clause_shape(c) == shape);
        let every_conjunction = || {
            alternatives()
                .map(|(_, _, c)| c)
                .chain(clause_rules().flat_map(|(_, c)| conjunctions(c)))
        };
        let addr_index = PrefixIndex::new(
            every_conjunction()
                .flat_map(|c| [c.src, c.dst])
                .flatten()
                .map(addr_item),
        );
        let port_index = PrefixIndex::new(
            every_conjunction()
                .flat_map(|c| [c.sport, c.dport])
                .flatten()
                .flat_map(PortRange::blocks)
                .map(port_item),
        );
        // Shapes in the order of their first rule, then those of clauses.
        let mut shapes: Vec<u8> = Vec::new();
        for shape in alternatives()
            .map(|(_, _, c)| c.shape())
            .chain(clause_rules().map(|(_, c)| clause_shape(c)))
        {
            if !shapes.contains(&shape) {
                shapes.push(shape);
            }
        }
        if shapes.len() > MAX_SHAPES {
            return Err(format!(
                "the rules use more than {MAX_SHAPES} different combinations of fields; \
                 netprobe matches at most {MAX_SHAPES}"
            ));
        }
        let (mut addr_rows, mut addr_column) = (Vec::new(), 0usize);
        let (mut port_rows, mut port_column) = (Vec::new(), 0usize);
        let mut protos: Vec<u8> = every_conjunction().filter_map(|c| c.proto).collect();
        protos.sort_unstable();
        protos.dedup();
        let mut columns = Vec::new();
        let mut class_counts = Vec::new();
        let mut entries: HashMap<ShapeKey, RuleRef> = HashMap::new();
        // A shape of clauses is probed where the frame has the fields
        // every `must` of it needs.
        let needs: Vec<u8> = shapes
            .iter()
            .map(|&shape| {
                if shape & SHAPE_CLAUSE == 0 {
                    return shape;
                }
                of_clause_shape(shape).fold(SHAPE_FIELDS, |acc, (_, c)| acc & c.must.shape())
            })
            .collect();
        let mut masks = ShapeMasks::new(&shapes, &needs, addr_index.len(), port_index.len());
        let mut own_of_clauses = Vec::new();
        for (i, &shape) in shapes.iter().enumerate() {
            let clause = shape & SHAPE_CLAUSE != 0;
            let of_shape = || alternatives().filter(move |(_, _, c)| c.shape() == shape);
            let shape_conjunctions = || -> Box<dyn Iterator<Item = &Conjunction>> {
                if clause {
                    Box::new(of_clause_shape(shape).flat_map(|(_, c)| conjunctions(c)))
                } else {
                    Box::new(of_shape().map(|(_, _, c)| c))
                }
            };
            let keyed = CLASS_FIELDS.map(|bit| shape & bit != 0);
            let own_addrs = |pick: fn(&Conjunction) -> Option<Prefix>| {
                PrefixIndex::new(shape_conjunctions().filter_map(pick).map(addr_item))
            };
            let own_ports = |pick: fn(&Conjunction) -> Option<PortRange>| {
                PrefixIndex::new(
                    shape_conjunctions()
                        .filter_map(pick)
                        .flat_map(PortRange::blocks)
                        .map(port_item),
                )
            };
            let (own_src, own_dst) = (own_addrs(|c| c.src), own_addrs(|c| c.dst));
            let (own_sport, own_dport) = (own_ports(|c| c.sport), own_ports(|c| c.dport));
            let global = [
                addr_index.len(),
                addr_index.len(),
                port_index.len(),
                port_index.len(),
            ];
            let own = [
                own_src.len(),
                own_dst.len(),
                own_sport.len(),
                own_dport.len(),
            ];
            let mut fixed = 1u64;
            if shape & SHAPE_L3 != 0 {
                fixed *= if clause { CLAUSE_L3_VALUES } else { L3_VALUES };
            }
            if shape & SHAPE_PROTO != 0 {
                fixed *= protos.len() as u64 + 1;
            }
            let mut left = [COLUMNS - 1 - addr_column, COLUMNS - 1 - port_column];
            let column_of = own_classes(fixed, keyed, global, own, &mut left, own_always);
            let mut column = [0u8; 4];
            for f in 0..4 {
                if !column_of[f] {
                    continue;
                }
                let (rows, next) = if f < 2 {
                    (&mut addr_rows, &mut addr_column)
                } else {
                    (&mut port_rows, &mut port_column)
                };
                *next += 1;
                column[f] = *next as u8;
                match f {
                    0 => addr_index.fill_column(&own_src, rows, *next),
                    1 => addr_index.fill_column(&own_dst, rows, *next),
                    2 => port_index.fill_column(&own_sport, rows, *next),
                    _ => port_index.fill_column(&own_dport, rows, *next),
                }
                // The shape covers the classes its own column names.
                for (class, row) in rows.iter().enumerate() {
                    if row[*next] != 0 && !clause {
                        masks.cover(i, f, class as u32);
                    }
                }
            }
            columns.push(column);
            let counts = [0, 1, 2, 3].map(|f| if column[f] != 0 { own[f] } else { global[f] });
            class_counts.push(counts);
            if clause {
                own_of_clauses.push((i, [own_src, own_dst], [own_sport, own_dport]));
                continue;
            }
            let [src, dst] =
                [(0, &own_src), (1, &own_dst)]
                    .map(|(f, own)| if column[f] != 0 { own } else { &addr_index });
            let [sport, dport] = [(2, &own_sport), (3, &own_dport)].map(|(f, own)| {
                if column[f] != 0 {
                    own
                } else {
                    &port_index
                }
            });
            let addr_within = |index: &PrefixIndex<Prefix>, p: &Prefix| -> Vec<u32> {
                index.within(prefix_range(p)).collect()
            };
            let port_within = |index: &PrefixIndex<(u16, u8)>, r: &PortRange| -> Vec<u32> {
                let mut out: Vec<u32> = r
                    .blocks()
                    .iter()
                    .flat_map(|&(port, len)| {
                        index.within(block_range(port, len)).collect::<Vec<_>>()
                    })
                    .collect();
                out.sort_unstable();
                out.dedup();
                out
            };
            for (rule, action, c) in of_shape() {
                let any = vec![0u32];
                let srcs = c.src.map_or_else(|| any.clone(), |p| addr_within(src, &p));
                let dsts = c.dst.map_or_else(|| any.clone(), |p| addr_within(dst, &p));
                let sports = c
                    .sport
                    .map_or_else(|| any.clone(), |r| port_within(sport, &r));
                let dports = c
                    .dport
                    .map_or_else(|| any.clone(), |r| port_within(dport, &r));
                masks.cover_values(i, c.l3, c.proto);
                for (f, classes) in [&srcs, &dsts, &sports, &dports].into_iter().enumerate() {
                    if shape & CLASS_FIELDS[f] != 0 && column[f] == 0 {
                        for &class in classes {
                            masks.cover(i, f, class);
                        }
                    }
                }
                for &s in &srcs {
                    for &d in &dsts {
                        for &sp in &sports {
                            for &dp in &dports {
                                let key = ShapeKey {
                                    shape,
                                    l3: c.l3.unwrap_or(0),
                                    proto: c.proto.unwrap_or(0),
                                    src: s,
                                    dst: d,
                                    sport: sp,
                                    dport: dp,
                                };
                                // The first rule wins a shared key.
                                entries.entry(key).or_insert(RuleRef {
                                    rule: rule as u32,
                                    action,
                                });
                                if entries.len() > MAX_ENTRIES {
                                    return Err(format!(
                                        "the rules compile into more than {MAX_ENTRIES} table \
                                         entries (many nested prefixes or wide port ranges); \
                                         split or simplify them"
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        let direct = if layout == Layout::Best {
            direct_tests(rules)
        } else {
            Vec::new()
        };
        let programs: Vec<RuleProgram> = rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let insns = r.program.clone()?;
                Some(RuleProgram {
                    rule: RuleRef {
                        rule: i as u32,
                        action: r.action,
                    },
                    insns,
                    untagged: r.looks_through_vlan(),
                    held: !r.clauses.is_empty() && (!direct.is_empty() || clauses),
                })
            })
            .collect();
        let every_frame = programs.iter().filter(|p| !p.held).count();
        if every_frame > MAX_PROGRAMS {
            return Err(format!(
                "{every_frame}{NEED_PROGRAMS} on every frame (vlan, ether, packet data...); \
                 netprobe runs at most {MAX_PROGRAMS} such rules, and any number of \
                 the others"
            ));
        }
        if programs.len() > MAX_PROGRAM_SLOTS {
            return Err(format!(
                "{}{NEED_PROGRAMS} (vlan, ether, packet data...; a rule with \
                 `not`, for frames cut short); netprobe holds at most {MAX_PROGRAM_SLOTS} \
                 such rules, and any number of the others",
                programs.len()
            ));
        }
        let addr_classes = addr_index.classes();
        let mut compiled = Compiled {
            addr: AddrTables::build(&addr_classes)?,
            addr_classes,
            port_classes: port_classes(&port_index.classes()),
            shapes,
            entries,
            programs,
            columns,
            addr_rows,
            port_rows,
            direct,
            masks,
            ..Default::default()
        };
        // A row for every address class where rows tell shapes apart.
        if compiled.row_fields() & 3 != 0 {
            compiled
                .addr_rows
                .resize(addr_index.len() + 1, [0; COLUMNS]);
        }
        let mut compiled = compiled.with_dense_cells(&class_counts, &protos);
        let mut cells = HashMap::new();
        let mut work = 0;
        for (i, own_addrs, own_ports) in &own_of_clauses {
            let shape = compiled.shapes[*i];
            let dense = compiled.dense[*i].ok_or("a clause takes too many cells")?;
            let column = compiled.columns[*i];
            let pick = |f: usize| column[f] != 0;
            let space = ClauseSpace {
                dense,
                addrs: [0, 1].map(|f| if pick(f) { &own_addrs[f] } else { &addr_index }),
                ports: [0, 1].map(|f| {
                    if pick(f + 2) {
                        &own_ports[f]
                    } else {
                        &port_index
                    }
                }),
                protos: &protos,
            };
            space.fill(shape, of_clause_shape(shape), &mut cells, &mut work)?;
        }
        compiled.cells.extend(cells);
        compiled.cells.sort_by_key(|(cell, _)| *cell);
        Ok(compiled)
    }

    /// How `shape` is stored, if as dense cells.
    pub(super) fn dense_of(&self, shape: u8) -> Option<Dense> {
        let i = self.shapes.iter().position(|s| *s == shape)?;
        self.dense.get(i).copied().flatten()
    }

    /// Lays out as dense cells every shape whose classes combine into few
    /// enough cells, and moves its entries there. `class_counts` are the
    /// classes of each shape's src, dst, sport and dport.
    fn with_dense_cells(mut self, class_counts: &[[usize; 4]], protos: &[u8]) -> Compiled {
        self.proto_class = vec![0u8; 256];
        for (i, p) in protos.iter().enumerate() {
            // At most 255 protocols: class 0 is "none".
            self.proto_class[usize::from(*p)] = i as u8 + 1;
        }
        let bits = [
            SHAPE_L3,
            SHAPE_PROTO,
            SHAPE_SRC,
            SHAPE_DST,
            SHAPE_SPORT,
            SHAPE_DPORT,
        ];
        let mut next = 0u64;
        self.dense = self
            .shapes
            .iter()
            .zip(class_counts)
            .map(|(&shape, counts)| {
                // Values each field's class takes: l3, proto, src, dst,
                // sport, dport.
                let [src, dst, sport, dport] = counts.map(|n| n as u64 + 1);
                let l3 = if shape & SHAPE_CLAUSE != 0 {
                    CLAUSE_L3_VALUES
                } else {
                    L3_VALUES
                };
                let values = [l3, protos.len() as u64 + 1, src, dst, sport, dport];
                let mut stride = [0u32; 6];
                let mut size = 1u64;
                for f in 0..6 {
                    if shape & bits[f] != 0 {
                        stride[f] = u32::try_from(size).ok()?;
                        size = size.checked_mul(values[f])?;
                    }
                }
                if size > MAX_CELLS_PER_SHAPE || next + size > MAX_CELLS {
                    return None;
                }
                let dense = Dense {
                    base: next as u32,
                    stride,
                };
                next += size;
                Some(dense)
            })
            .collect();
        self.cell_count = next as u32;
        let mut cells = Vec::new();
        for (key, rule) in std::mem::take(&mut self.entries) {
            match self.dense_of(key.shape) {
                Some(d) => cells.push((d.cell(&key, &self.proto_class), rule)),
                None => {
                    self.entries.insert(key, rule);
                }
            }
        }
        cells.sort_by_key(|(cell, _)| *cell);
        self.cells = cells;
        self
    }

    /// The shapes of clauses (bit i: shape i), which the program does
    /// not probe on a frame cut short.
    pub fn clause_shapes(&self) -> u64 {
        self.shapes
            .iter()
            .enumerate()
            .filter(|(_, &s)| s & SHAPE_CLAUSE != 0)
            .fold(0, |acc, (i, _)| acc | 1 << i)
    }

    /// Bit f: the program reads the rows of field f (src, dst, sport,
    /// dport), as some shape has classes of its own for it, or the rows'
    /// masks tell the shapes keyed on it apart.
    pub fn row_fields(&self) -> u32 {
        let own = self
            .columns
            .iter()
            .flat_map(|c| c.iter().enumerate())
            .filter(|(_, column)| **column != 0)
            .fold(0, |acc, (f, _)| acc | 1 << f);
        (0..4)
            .filter(|&f| self.masks.worth_rows(f))
            .fold(own, |acc, f| acc | 1 << f)
    }
}
