//! Rules of clauses (a `not`, or an `or` of terms reading different
//! fields) in the tables. Each clause takes a shape of its own, keyed by
//! every field any of its conjunctions reads, and always stored as dense
//! cells: a cell is one combination of the fields' classes, and within it
//! every prefix, port range, l3 value and protocol of the rule set holds or
//! fails alike for every frame, so the clause is true or false for the
//! whole cell. A field a frame lacks has class 0, which no prefix or range
//! covers: a conjunction on it fails, as on a frame without the field.
//! The cells are filled here by evaluating each clause on each cell its
//! `must` leaves possible.
//!
//! That is the clause's meaning on a frame holding every field libpcap's
//! program may read. On a frame cut short the rule's program decides (a
//! read past the end rejects the frame, which `not` does not undo), so the
//! BPF program skips these shapes there (`np_rules_config.clause_shapes`).
use std::collections::HashMap;

use super::classes::{block_range, prefix_range, Dense, PrefixIndex};
use super::model::{
    Clause, Conjunction, PortRange, Prefix, RuleRef, L3_IPV4, L3_IPV6, L3_NONE, SHAPE_CLAUSE,
    SHAPE_DPORT, SHAPE_DST, SHAPE_L3, SHAPE_PROTO, SHAPE_SPORT, SHAPE_SRC,
};

/// Cells that filling the clause cells of a rule set may evaluate in all;
/// a rule set needing more keeps its clauses in libpcap's programs.
const MAX_CLAUSE_WORK: u64 = 1 << 24;

/// A clause's shape: the fields its conjunctions read, and l3 wherever
/// the protocol is, as a frame without an IP header reads as protocol 0,
/// which only its l3 tells apart from IP's protocol 0.
pub(super) fn clause_shape(c: &Clause) -> u8 {
    let fields = c
        .must_not
        .iter()
        .fold(c.must.shape(), |acc, n| acc | n.shape());
    let l3 = if fields & SHAPE_PROTO != 0 {
        SHAPE_L3
    } else {
        0
    };
    fields | l3 | SHAPE_CLAUSE
}

/// A clause's conjunctions, `must` first.
pub(super) fn conjunctions(c: &Clause) -> impl Iterator<Item = &Conjunction> {
    std::iter::once(&c.must).chain(&c.must_not)
}

/// How a clause shape's cells are numbered: its dense layout, the classes of its addresses and ports (the rule set's
/// or the shape's own), and the protocols by class (class k from 1 is
/// `protos[k - 1]`; 0 any other).
pub(super) struct ClauseSpace<'a> {
    pub(super) dense: Dense,
    pub(super) addrs: [&'a PrefixIndex<Prefix>; 2],
    pub(super) ports: [&'a PrefixIndex<(u16, u8)>; 2],
    pub(super) protos: &'a [u8],
}

/// What every frame of a cell has: its l3 (none: another EtherType), its
/// protocol (256: one no rule names; none: not IP), and of each address
/// and port the prefix or block naming its class (none: class 0).
struct Cell {
    l3: Option<u8>,
    proto: Option<u16>,
    addrs: [Option<Prefix>; 2],
    ports: [Option<(u16, u8)>; 2],
}

fn holds(c: &Conjunction, cell: &Cell) -> bool {
    let addr = |want: Option<Prefix>, have: Option<Prefix>| {
        want.is_none_or(|p| have.is_some_and(|q| q.within(&p)))
    };
    let port = |want: Option<PortRange>, have: Option<(u16, u8)>| {
        want.is_none_or(|r| {
            have.is_some_and(|(port, len)| {
                let (_, first, last) = block_range(port, len);
                u128::from(r.lo) <= first && last <= u128::from(r.hi)
            })
        })
    };
    c.l3.is_none_or(|l3| cell.l3 == Some(l3))
        && c.proto.is_none_or(|p| cell.proto == Some(u16::from(p)))
        && addr(c.src, cell.addrs[0])
        && addr(c.dst, cell.addrs[1])
        && port(c.sport, cell.ports[0])
        && port(c.dport, cell.ports[1])
}

impl ClauseSpace<'_> {
    /// The values each field's class may take where `must` holds (only
    /// 0 for a field the shape has not): l3, proto, src, dst, sport, dport.
    fn values(&self, shape: u8, must: &Conjunction) -> [Vec<u32>; 6] {
        let has = |bit: u8| shape & bit != 0;
        let all = |n: usize| (0..=n as u32).collect::<Vec<u32>>();
        let l3 = match must.l3 {
            _ if !has(SHAPE_L3) => vec![0],
            Some(l3) => vec![u32::from(l3)],
            None => all(usize::from(L3_NONE)),
        };
        let proto = match must.proto {
            _ if !has(SHAPE_PROTO) => vec![0],
            Some(p) => self
                .protos
                .iter()
                .position(|&q| q == p)
                .map(|k| vec![k as u32 + 1])
                .unwrap_or_default(),
            None => all(self.protos.len()),
        };
        let addr = |f: usize, bit: u8, want: Option<Prefix>| match want {
            _ if !has(bit) => vec![0],
            Some(p) => self.addrs[f].within(prefix_range(&p)).collect(),
            None => all(self.addrs[f].len()),
        };
        let port = |f: usize, bit: u8, want: Option<PortRange>| match want {
            _ if !has(bit) => vec![0],
            Some(r) => {
                let mut classes: Vec<u32> = r
                    .blocks()
                    .into_iter()
                    .flat_map(|(port, len)| self.ports[f].within(block_range(port, len)))
                    .collect();
                classes.sort_unstable();
                classes.dedup();
                classes
            }
            None => all(self.ports[f].len()),
        };
        [
            l3,
            proto,
            addr(0, SHAPE_SRC, must.src),
            addr(1, SHAPE_DST, must.dst),
            port(0, SHAPE_SPORT, must.sport),
            port(1, SHAPE_DPORT, must.dport),
        ]
    }

    /// The frames of the cell of these classes.
    fn cell(&self, [l3, proto, src, dst, sport, dport]: [u32; 6]) -> Cell {
        let l3 = u8::try_from(l3).ok().filter(|&l3| l3 != L3_NONE);
        let ip = matches!(l3, Some(L3_IPV4 | L3_IPV6));
        let proto = match proto {
            0 => 256,
            k => u16::from(self.protos[k as usize - 1]),
        };
        Cell {
            l3,
            proto: ip.then_some(proto),
            addrs: [self.addrs[0].item(src), self.addrs[1].item(dst)],
            ports: [self.ports[0].item(sport), self.ports[1].item(dport)],
        }
    }

    /// Fills `cells` (index -> rule) with the cells where each clause of
    /// `clauses` (of this shape, in rule order) holds: the first rule wins
    /// a cell. `work` counts the cells evaluated, against the limit.
    pub(super) fn fill<'c>(
        &self,
        shape: u8,
        clauses: impl Iterator<Item = (RuleRef, &'c Clause)>,
        cells: &mut HashMap<u32, RuleRef>,
        work: &mut u64,
    ) -> Result<(), String> {
        for (rule, clause) in clauses {
            let values = self.values(shape, &clause.must);
            *work += values.iter().map(|v| v.len() as u64).product::<u64>();
            if *work > MAX_CLAUSE_WORK {
                return Err("the rules' clauses take too many cells".into());
            }
            if values.iter().any(Vec::is_empty) {
                continue;
            }
            let mut at = [0usize; 6];
            loop {
                let classes: [u32; 6] = std::array::from_fn(|f| values[f][at[f]]);
                let cell = self.cell(classes);
                if holds(&clause.must, &cell) && !clause.must_not.iter().any(|n| holds(n, &cell)) {
                    let index = self.dense.cell_of(classes);
                    cells.entry(index).or_insert(rule);
                }
                if !next_combination(&mut at, &values) {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Steps `at` (an index into each of `values`) to the next combination,
/// the last field fastest; false after the last.
fn next_combination(at: &mut [usize; 6], values: &[Vec<u32>; 6]) -> bool {
    for f in (0..6).rev() {
        at[f] += 1;
        if at[f] < values[f].len() {
            return true;
        }
        at[f] = 0;
    }
    false
}
