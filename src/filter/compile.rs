//! Compiling a rule set into the tables the BPF matcher reads: address
//! classes (see [`super::addr`]), an array of port classes, and a cell or
//! hash entry per shape keyed by the classes; and the libpcap programs of the rules
//! the tables cannot hold. `Compiled::lookup` is what the BPF tables do, in
//! Rust.
use std::collections::{BTreeMap, HashMap};

use super::addr::AddrTables;
use super::model::{
    Action, PacketFields, PortRange, Prefix, Rule, SHAPE_DPORT, SHAPE_DST, SHAPE_L3, SHAPE_PROTO,
    SHAPE_SPORT, SHAPE_SRC,
};
use super::pcap::Insn;

/// Distinct shapes a rule set may use; each costs one lookup per packet.
pub const MAX_SHAPES: usize = 64;
/// Hash entries a rule set may compile into.
pub const MAX_ENTRIES: usize = 4 << 20;
/// Rules a rule set may hold as libpcap programs (`NP_MAX_PROGRAMS`): each
/// costs its run time on every packet that no earlier rule matched.
pub const MAX_PROGRAMS: usize = 64;

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

/// What a hash entry points at: the first rule with that key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub rule: u32,
    pub action: Action,
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
    pub programs: Vec<(RuleRef, Vec<Insn>)>,
    /// How each shape (in `shapes` order) is stored: as dense cells, or
    /// (None) in the hash.
    pub dense: Vec<Option<Dense>>,
    /// The dense cells that hold a rule, by index.
    pub cells: Vec<(u32, RuleRef)>,
    /// Cells the dense shapes take in all.
    pub cell_count: u32,
    /// IP protocol -> its class in dense cells (0: no rule names it).
    pub proto_class: Vec<u8>,
}

/// Where a dense shape's cells begin, and each field's stride (l3, proto,
/// src, dst, sport, dport; 0 for a field the shape does not constrain).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dense {
    pub base: u32,
    pub stride: [u32; 6],
}

impl Dense {
    /// The cell of a key, as rules.h computes it.
    fn cell(&self, key: &ShapeKey, proto_class: &[u8]) -> u32 {
        let classes = [
            u32::from(key.l3),
            u32::from(proto_class[usize::from(key.proto)]),
            key.src,
            key.dst,
            key.sport,
            key.dport,
        ];
        self.base
            + classes
                .iter()
                .zip(self.stride)
                .map(|(c, s)| c * s)
                .sum::<u32>()
    }
}

/// Cells one shape may take as dense cells; a shape whose classes combine
/// into more stays in the hash.
pub const MAX_CELLS_PER_SHAPE: u64 = 1 << 20;
/// Dense cells a rule set may take in all.
pub const MAX_CELLS: u64 = 1 << 21;

/// Prefixes indexed so that "all prefixes inside P" is a range scan:
/// (group, first value, last value), where group keeps IPv4 and IPv6 apart.
struct PrefixIndex<K: Ord + Copy> {
    /// (group, first, last, key, class), sorted.
    sorted: Vec<(u8, u128, u128, K, u32)>,
}

impl<K: Ord + Copy> PrefixIndex<K> {
    fn new(items: impl Iterator<Item = (u8, u128, u128, K)>) -> PrefixIndex<K> {
        let mut sorted: Vec<(u8, u128, u128, K, u32)> =
            items.map(|(g, s, e, k)| (g, s, e, k, 0)).collect();
        sorted.sort();
        sorted.dedup_by(|a, b| a.3 == b.3);
        for (i, item) in sorted.iter_mut().enumerate() {
            item.4 = i as u32 + 1;
        }
        PrefixIndex { sorted }
    }

    /// Classes of the indexed prefixes lying within `(group, first, last)`.
    fn within(&self, (group, first, last): (u8, u128, u128)) -> impl Iterator<Item = u32> + '_ {
        let from = self
            .sorted
            .partition_point(|item| (item.0, item.1) < (group, first));
        self.sorted[from..]
            .iter()
            .take_while(move |item| item.0 == group && item.1 <= last)
            .filter(move |item| item.2 <= last)
            .map(|item| item.4)
    }

    fn classes(&self) -> Vec<(K, u32)> {
        self.sorted.iter().map(|item| (item.3, item.4)).collect()
    }
}

/// An address prefix as (family, first address, last address), addresses
/// read as 128-bit numbers (IPv4 in the top 32 bits, as stored).
fn prefix_range(p: &Prefix) -> (u8, u128, u128) {
    let first = u128::from_be_bytes(p.addr);
    let host_bits = u128::MAX.checked_shr(u32::from(p.len)).unwrap_or(0);
    (p.family, first, first | host_bits)
}

/// Every port's class from the classes of port blocks: the longest block
/// covering a port wins, as in a longest-prefix match.
fn port_classes(blocks: &[((u16, u8), u32)]) -> Vec<u32> {
    if blocks.is_empty() {
        return Vec::new();
    }
    let mut by_length = blocks.to_vec();
    by_length.sort_by_key(|((_, len), _)| *len);
    let mut classes = vec![0u32; 1 << 16];
    for ((port, len), class) in by_length {
        let (_, first, last) = block_range(port, len);
        classes[first as usize..=last as usize].fill(class);
    }
    classes
}

/// A port block as (0, first port, last port).
pub(super) fn block_range(port: u16, len: u8) -> (u8, u128, u128) {
    let span = (1u32 << (16 - u32::from(len))) - 1;
    (0, u128::from(port), u128::from(u32::from(port) | span))
}

impl Compiled {
    pub fn compile(rules: &[Rule]) -> Result<Compiled, String> {
        let alternatives = || {
            rules
                .iter()
                .enumerate()
                .flat_map(|(i, r)| r.alternatives.iter().map(move |c| (i, r.action, c)))
        };
        let addr_index = PrefixIndex::new(
            alternatives()
                .flat_map(|(_, _, c)| [c.src, c.dst])
                .flatten()
                .map(|p| {
                    let (g, s, e) = prefix_range(&p);
                    (g, s, e, p)
                }),
        );
        let port_index = PrefixIndex::new(
            alternatives()
                .flat_map(|(_, _, c)| [c.sport, c.dport])
                .flatten()
                .flat_map(PortRange::blocks)
                .map(|(port, len)| {
                    let (g, s, e) = block_range(port, len);
                    (g, s, e, (port, len))
                }),
        );
        let addr_within = |p: &Prefix| -> Vec<u32> { addr_index.within(prefix_range(p)).collect() };
        let port_within = |r: &PortRange| -> Vec<u32> {
            let mut out: Vec<u32> = r
                .blocks()
                .iter()
                .flat_map(|&(port, len)| {
                    port_index
                        .within(block_range(port, len))
                        .collect::<Vec<_>>()
                })
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        };

        let mut shapes: BTreeMap<u8, usize> = BTreeMap::new();
        let mut entries: HashMap<ShapeKey, RuleRef> = HashMap::new();
        for (rule, action, c) in alternatives() {
            let shape = c.shape();
            let order = shapes.len();
            shapes.entry(shape).or_insert(order);
            if shapes.len() > MAX_SHAPES {
                return Err(format!(
                    "the rules use more than {MAX_SHAPES} different combinations of fields; \
                     netprobe matches at most {MAX_SHAPES}"
                ));
            }
            let any = vec![0u32];
            let src = c.src.as_ref().map_or_else(|| any.clone(), addr_within);
            let dst = c.dst.as_ref().map_or_else(|| any.clone(), addr_within);
            let sport = c.sport.as_ref().map_or_else(|| any.clone(), port_within);
            let dport = c.dport.as_ref().map_or_else(|| any.clone(), port_within);
            for &s in &src {
                for &d in &dst {
                    for &sp in &sport {
                        for &dp in &dport {
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
                                    "the rules compile into more than {MAX_ENTRIES} table entries \
                                     (many nested prefixes or wide port ranges); split or simplify them"
                                ));
                            }
                        }
                    }
                }
            }
        }
        let programs: Vec<(RuleRef, Vec<Insn>)> = rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let rule = RuleRef {
                    rule: i as u32,
                    action: r.action,
                };
                r.program.clone().map(|p| (rule, p))
            })
            .collect();
        if programs.len() > MAX_PROGRAMS {
            return Err(format!(
                "{} rules need libpcap's compiler (not, or, vlan, ether, packet data...); \
                 netprobe runs at most {MAX_PROGRAMS} such rules, and any number of the others",
                programs.len()
            ));
        }
        let mut shape_order: Vec<(usize, u8)> = shapes.into_iter().map(|(s, o)| (o, s)).collect();
        shape_order.sort();
        let addr_classes = addr_index.classes();
        Ok(Compiled {
            addr: AddrTables::build(&addr_classes)?,
            addr_classes,
            port_classes: port_classes(&port_index.classes()),
            shapes: shape_order.into_iter().map(|(_, s)| s).collect(),
            entries,
            programs,
            ..Default::default()
        }
        .with_dense_cells())
    }

    /// How `shape` is stored, if as dense cells.
    fn dense_of(&self, shape: u8) -> Option<Dense> {
        let i = self.shapes.iter().position(|s| *s == shape)?;
        self.dense.get(i).copied().flatten()
    }

    /// Lays out as dense cells every shape whose classes combine into few
    /// enough cells, and moves its entries there.
    fn with_dense_cells(mut self) -> Compiled {
        let mut protos: Vec<u8> = self
            .entries
            .keys()
            .filter(|k| k.shape & SHAPE_PROTO != 0)
            .map(|k| k.proto)
            .collect();
        protos.sort_unstable();
        protos.dedup();
        self.proto_class = vec![0u8; 256];
        for (i, p) in protos.iter().enumerate() {
            // At most 255 protocols: class 0 is "none".
            self.proto_class[usize::from(*p)] = i as u8 + 1;
        }
        let addrs = self.addr_classes.len() as u64 + 1;
        let ports = u64::from(self.port_classes.iter().copied().max().unwrap_or(0)) + 1;
        // Values each field's class takes: l3, proto, src, dst, sport, dport.
        let values = [4, protos.len() as u64 + 1, addrs, addrs, ports, ports];
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
            .map(|&shape| {
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

    /// What the BPF tables do, in Rust: the first table rule a packet with
    /// these fields matches (programs are not run here).
    pub fn lookup(&self, p: &PacketFields) -> Option<RuleRef> {
        let addr_class =
            |addr: Option<[u8; 16]>| addr.map_or(0, |a| self.addr.class(p.family, &a, 4));
        let port_class = |port: Option<u16>| -> u32 {
            port.and_then(|port| self.port_classes.get(usize::from(port)).copied())
                .unwrap_or(0)
        };
        let classes = [
            (SHAPE_L3, p.l3.map(u32::from)),
            (SHAPE_PROTO, p.proto.map(u32::from)),
            (SHAPE_SRC, Some(addr_class(p.saddr)).filter(|c| *c != 0)),
            (SHAPE_DST, Some(addr_class(p.daddr)).filter(|c| *c != 0)),
            (SHAPE_SPORT, Some(port_class(p.sport)).filter(|c| *c != 0)),
            (SHAPE_DPORT, Some(port_class(p.dport)).filter(|c| *c != 0)),
        ];
        let found = classes
            .iter()
            .filter(|(_, v)| v.is_some())
            .fold(0u8, |acc, (bit, _)| acc | bit);
        let value = |bit: u8| {
            classes
                .iter()
                .find(|(b, _)| *b == bit)
                .and_then(|(_, v)| *v)
                .unwrap_or(0)
        };
        self.shapes
            .iter()
            .filter(|&&shape| shape & !found == 0)
            .filter_map(|&shape| {
                let pick = |bit: u8| if shape & bit != 0 { value(bit) } else { 0 };
                let key = ShapeKey {
                    shape,
                    l3: pick(SHAPE_L3) as u8,
                    proto: pick(SHAPE_PROTO) as u8,
                    src: pick(SHAPE_SRC),
                    dst: pick(SHAPE_DST),
                    sport: pick(SHAPE_SPORT),
                    dport: pick(SHAPE_DPORT),
                };
                match self.dense_of(shape) {
                    Some(d) => {
                        let cell = d.cell(&key, &self.proto_class);
                        self.cells
                            .binary_search_by_key(&cell, |(c, _)| *c)
                            .ok()
                            .map(|i| self.cells[i].1)
                    }
                    None => self.entries.get(&key).copied(),
                }
            })
            .min_by_key(|r| r.rule)
    }
}
