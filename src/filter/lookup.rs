//! What the BPF tables do, in Rust ([`Compiled::lookup`]): the tests hold
//! it to the rules' meaning, and the BPF program to it.
use super::candidates::CLASS_FIELDS;
use super::compile::{Compiled, RuleRef, ShapeKey};
use super::model::{PacketFields, L3_NONE, SHAPE_CLAUSE, SHAPE_L3, SHAPE_PROTO};

impl Compiled {
    /// A frame's fields as the tables see them: those present (NP_SHAPE_*
    /// bits), and the value or class of each (l3, proto, src, dst, sport,
    /// dport; 0 where absent, or where no rule covers it, but `L3_NONE` for
    /// a frame without l3).
    fn frame_classes(&self, p: &PacketFields) -> (u8, [u32; 6]) {
        let addr_class =
            |addr: Option<[u8; 16]>| addr.map_or(0, |a| self.addr.class(p.family, &a, 4));
        let port_class = |port: Option<u16>| -> u32 {
            port.and_then(|port| self.port_classes.get(usize::from(port)).copied())
                .unwrap_or(0)
        };
        let values = [
            p.l3.map(u32::from),
            p.proto.map(u32::from),
            Some(addr_class(p.saddr)).filter(|c| *c != 0),
            Some(addr_class(p.daddr)).filter(|c| *c != 0),
            Some(port_class(p.sport)).filter(|c| *c != 0),
            Some(port_class(p.dport)).filter(|c| *c != 0),
        ];
        let found = (0..6)
            .filter(|&f| values[f].is_some())
            .fold(0u8, |acc, f| acc | 1 << f);
        let [l3, rest @ ..] = values.map(|v| v.unwrap_or(0));
        let l3 = p.l3.map_or(u32::from(L3_NONE), |_| l3);
        let [proto, src, dst, sport, dport] = rest;
        (found, [l3, proto, src, dst, sport, dport])
    }

    /// The shapes the program probes for a frame (bit i: shape i), and
    /// the frame's values and classes (as [`Self::frame_classes`]).
    pub(super) fn candidates(&self, p: &PacketFields) -> (u64, [u32; 6]) {
        let (found, values) = self.frame_classes(p);
        let [l3, proto, classes @ ..] = values;
        let probed =
            self.masks
                .candidates(self.row_fields(), found, l3 as u8, proto as u8, classes);
        (probed, values)
    }

    /// What the BPF tables do, in Rust: the first table rule a packet with
    /// these fields matches (programs are not run here), on a frame that
    /// holds every field libpcap's programs may read (a shape of clauses is
    /// not probed on one cut short).
    pub fn lookup(&self, p: &PacketFields) -> Option<RuleRef> {
        let (candidates, values) = self.candidates(p);
        let value = |bit: u8| values[bit.trailing_zeros() as usize];
        self.shapes
            .iter()
            .zip(&self.columns)
            .enumerate()
            .filter(|(i, _)| candidates >> i & 1 != 0)
            .filter_map(|(_, (&shape, columns))| {
                let pick = |bit: u8| if shape & bit != 0 { value(bit) } else { 0 };
                // A shape of clauses has a cell for the classes no rule
                // of it covers, where a `not` holds.
                let clause = shape & SHAPE_CLAUSE != 0;
                // The shape's own class of each field; none: no rule of
                // the shape covers it.
                let mut local = CLASS_FIELDS.map(pick);
                let rows = [
                    &self.addr_rows,
                    &self.addr_rows,
                    &self.port_rows,
                    &self.port_rows,
                ];
                for (f, ((class, column), rows)) in
                    local.iter_mut().zip(columns).zip(rows).enumerate()
                {
                    if *column != 0 {
                        // The program reads no row for address class 0.
                        if f >= 2 || *class != 0 {
                            *class = rows[*class as usize][usize::from(*column)];
                        }
                        if *class == 0 && !clause {
                            return None;
                        }
                    }
                }
                let [src, dst, sport, dport] = local;
                let key = ShapeKey {
                    shape,
                    l3: pick(SHAPE_L3) as u8,
                    proto: pick(SHAPE_PROTO) as u8,
                    src,
                    dst,
                    sport,
                    dport,
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
