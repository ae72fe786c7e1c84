//! Which shapes a frame can match, as bit masks (bit i: shape i, in the
//! order the program holds them): a shape is probed only if the frame has
//! every field it is keyed on, and some rule of the shape covers the
//! frame's value of each (its l3, its protocol, the rule set's class of
//! each address and port). A class that only other shapes' rules cover
//! costs no probe. A shape of clauses (src/filter/clause_cells.rs) is
//! probed wherever the frame has the fields its clauses' `must` need: a
//! `not` matches frames that have no value of its rules. `np_candidate_shapes()`
//! in rules.h computes the same.
use super::model::{
    SHAPE_CLAUSE, SHAPE_DPORT, SHAPE_DST, SHAPE_L3, SHAPE_PROTO, SHAPE_SPORT, SHAPE_SRC,
};

/// The fields with classes (src, dst, sport, dport) as shape bits.
pub(super) const CLASS_FIELDS: [u8; 4] = [SHAPE_SRC, SHAPE_DST, SHAPE_SPORT, SHAPE_DPORT];

#[derive(Clone, Debug)]
pub struct ShapeMasks {
    /// By the fields a frame has (NP_SHAPE_* bits): the shapes keyed on no
    /// other field.
    pub by_found: [u64; 64],
    /// By l3 value, and by IP protocol: the shapes not keyed on the field,
    /// and those with a rule for the value.
    pub by_l3: [u64; 4],
    pub by_proto: [u64; 256],
    /// Per class field: the shapes keyed on it.
    pub keyed: [u64; 4],
    /// By the rule set's address class: of the shapes keyed on src, and
    /// on dst, those with a rule covering the class.
    pub addr: Vec<[u64; 2]>,
    /// The same by port class, for sport and dport.
    pub port: Vec<[u64; 2]>,
}

impl Default for ShapeMasks {
    fn default() -> ShapeMasks {
        ShapeMasks::new(&[], &[], 0, 0)
    }
}

impl ShapeMasks {
    /// For `shapes` (NP_SHAPE_* bits), which a frame can match only with
    /// the fields of `needs` (each shape's own fields, but for a shape of
    /// clauses), with `addr_classes` and `port_classes` classes besides 0,
    /// and as yet no rule covering any value: [`cover`](Self::cover) adds
    /// them.
    pub(super) fn new(
        shapes: &[u8],
        needs: &[u8],
        addr_classes: usize,
        port_classes: usize,
    ) -> ShapeMasks {
        // The fields a shape is keyed on by value: none of a shape of
        // clauses.
        let keys = |s: u8| if s & SHAPE_CLAUSE != 0 { 0 } else { s };
        let of = |keep: &dyn Fn(u8) -> bool| {
            shapes
                .iter()
                .enumerate()
                .filter(|(_, &s)| keep(keys(s)))
                .fold(0u64, |acc, (i, _)| acc | 1 << i)
        };
        ShapeMasks {
            by_found: std::array::from_fn(|found| {
                needs
                    .iter()
                    .enumerate()
                    .filter(|(_, &n)| usize::from(n) & !found == 0)
                    .fold(0u64, |acc, (i, _)| acc | 1 << i)
            }),
            by_l3: [of(&|s| s & SHAPE_L3 == 0); 4],
            by_proto: [of(&|s| s & SHAPE_PROTO == 0); 256],
            keyed: CLASS_FIELDS.map(|bit| of(&|s| s & bit != 0)),
            addr: vec![[0; 2]; addr_classes + 1],
            port: vec![[0; 2]; port_classes + 1],
        }
    }

    /// Shape `shape` has a rule covering class `class` of class field
    /// `field` (0 to 3: src, dst, sport, dport).
    pub(super) fn cover(&mut self, shape: usize, field: usize, class: u32) {
        let by_class = if field < 2 {
            &mut self.addr
        } else {
            &mut self.port
        };
        by_class[class as usize][field % 2] |= 1 << shape;
    }

    /// Shape `shape` has a rule with l3 value `l3`, and protocol `proto`.
    pub(super) fn cover_values(&mut self, shape: usize, l3: Option<u8>, proto: Option<u8>) {
        if let Some(l3) = l3 {
            self.by_l3[usize::from(l3)] |= 1 << shape;
        }
        if let Some(proto) = proto {
            self.by_proto[usize::from(proto)] |= 1 << shape;
        }
    }

    /// Of the shapes covering a class of field `field`, those the row of
    /// `class` holds (`np_class_row.shapes`): none for address class 0,
    /// whose row the program does not read.
    pub(super) fn row(&self, field: usize, class: usize) -> u64 {
        if field < 2 && class == 0 {
            return 0;
        }
        let by_class = if field < 2 { &self.addr } else { &self.port };
        by_class.get(class).map_or(0, |m| m[field % 2])
    }

    /// The shapes a frame can match: with the fields `found`, the l3 value
    /// and protocol (0 where absent) and the classes of src, dst, sport
    /// and dport (0: none covers it, or absent); rows are read only for
    /// the class fields in `row_fields`.
    pub(super) fn candidates(
        &self,
        row_fields: u32,
        found: u8,
        l3: u8,
        proto: u8,
        classes: [u32; 4],
    ) -> u64 {
        let keyed = self.keyed_in(row_fields);
        let mut cand = self.by_found[usize::from(found & 63)]
            & self.by_l3[usize::from(l3 & 3)]
            & self.by_proto[usize::from(proto)];
        for (f, class) in classes.iter().enumerate() {
            cand &= !keyed[f] | self.row(f, *class as usize);
        }
        cand
    }

    /// `keyed` for the fields whose rows the rule set fills
    /// (`row_fields`), 0 for the others: a program loaded for rule sets
    /// to come may read rows of a field that this one leaves empty, and
    /// must not take them to rule shapes out.
    pub(super) fn keyed_in(&self, row_fields: u32) -> [u64; 4] {
        std::array::from_fn(|f| {
            if row_fields >> f & 1 != 0 {
                self.keyed[f]
            } else {
                0
            }
        })
    }

    /// Whether telling the shapes keyed on class field `field` apart by
    /// class can spare a probe: when two or more are keyed on it, a class
    /// one's rules cover may be one the other's do not.
    pub(super) fn worth_rows(&self, field: usize) -> bool {
        self.keyed[field].count_ones() >= 2
    }
}
