//! The structs of `src/bpf/netprobe.h` that the rule tables hold, mirrored
//! with `#[repr(C)]` + `plain`; their sizes are checked against the
//! skeleton's at compile time.
use super::addr;
use super::addr::MAX_LENS;
use super::classes::COLUMNS;
use super::compile::{DirectTest, MAX_DIRECT, MAX_SHAPES};
use super::model::{Conjunction, PortRange, Prefix};
use super::pcap::{Insn, MAX_INSNS};

/// `struct np_addr_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct AddrKey {
    pub(super) gen: u8,
    pub(super) family: u8,
    pub(super) len: u8,
    pub(super) pad: u8,
    pub(super) addr: [u8; 16],
}

/// `struct np_addr_slot`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct AddrSlot {
    pub(super) class: u32,
    pub(super) longer: u32,
    pub(super) block: u32,
}

impl AddrSlot {
    /// The slot as generation `gen` of tables of `max_blocks` blocks each
    /// holds it ([`addr::entry_in_map`]).
    pub(super) fn of(slot: &super::addr::Slot, gen: u8, max_blocks: u32) -> AddrSlot {
        AddrSlot {
            class: slot.class,
            longer: slot.longer,
            block: slot.block_in_map(gen, max_blocks),
        }
    }
}

/// `struct np_shape_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ShapeKey {
    pub(super) gen: u8,
    pub(super) shape: u8,
    pub(super) l3: u8,
    pub(super) proto: u8,
    pub(super) src: u32,
    pub(super) dst: u32,
    pub(super) sport: u32,
    pub(super) dport: u32,
}

/// `struct np_rule_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RuleRef {
    pub(super) rule: u32,
    pub(super) action: u32,
}

/// `struct np_rules_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(super) struct RulesConfig {
    pub(super) n_shapes: u32,
    pub(super) fields: u32,
    pub(super) n_programs: u32,
    pub(super) n_direct: u32,
    pub(super) direct_flags: u32,
    pub(super) held_programs: u32,
    pub(super) direct: [Direct; MAX_DIRECT],
    pub(super) shape: [u8; MAX_SHAPES],
    pub(super) dense_base: [u32; MAX_SHAPES],
    pub(super) stride: [[u32; 6]; MAX_SHAPES],
    pub(super) column: [[u8; 4]; MAX_SHAPES],
    pub(super) by_found: [u64; 64],
    pub(super) by_l3: [u64; 4],
    pub(super) by_proto: [u64; 256],
    pub(super) keyed: [u64; 4],
    pub(super) clause_shapes: u64,
    pub(super) proto_class: [u8; 256],
    pub(super) addr_len: [[u8; MAX_LENS]; 2],
    pub(super) addr_mask: [[[[u8; 4]; 4]; MAX_LENS]; 2],
    pub(super) addr_below: [[u32; super::addr::LEVELS]; 2],
}

/// `struct np_direct`, aligned as its 64-bit fields there.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Direct {
    pub(super) rule: u32,
    pub(super) action: u32,
    /// l3, protocol, family, the fields needed and the address words
    /// needed of src and dst (bit w: more than w), a byte each.
    pub(super) meta: [u8; 8],
    pub(super) meta_mask: [u8; 8],
    /// The same for the test's `unless`.
    pub(super) unless: [u8; 8],
    pub(super) unless_mask: [u8; 8],
    pub(super) negate: u8,
    pub(super) end: u8,
    pub(super) held: u8,
    pub(super) pad: [u8; 5],
    /// Addresses and masks in network order, as the frame holds them.
    pub(super) src: [u8; 16],
    pub(super) src_mask: [u8; 16],
    pub(super) dst: [u8; 16],
    pub(super) dst_mask: [u8; 16],
    pub(super) sport_lo: u16,
    pub(super) sport_span: u16,
    pub(super) dport_lo: u16,
    pub(super) dport_span: u16,
}

/// The 32-bit words a prefix masks, at least one (as the tables read it),
/// as the bit the frame's words byte must have; its address and mask.
fn prefix_words(p: Option<Prefix>) -> ([u8; 16], [u8; 16], u8) {
    p.map_or(([0; 16], [0; 16], 0), |p| {
        let mask = addr::mask(p.len);
        let words = p.len.div_ceil(32).max(1);
        let mask: [u8; 16] = std::array::from_fn(|i| mask[i / 4][i % 4]);
        let addr = std::array::from_fn(|i| p.addr[i] & mask[i]);
        (addr, mask, 1 << (words - 1))
    })
}

/// `np_direct.meta` and its mask for `c`.
fn meta_of(c: &Conjunction) -> ([u8; 8], [u8; 8]) {
    // An alternative on addresses of two families matches no frame: its
    // family is none a frame has.
    let (family, family_mask) = match (c.src, c.dst) {
        (Some(s), Some(d)) if s.family != d.family => (u8::MAX, u8::MAX),
        (Some(p), _) | (None, Some(p)) => (p.family, u8::MAX),
        (None, None) => (0, 0),
    };
    let byte = |v: Option<u8>| v.map_or((0, 0), |v| (v, u8::MAX));
    let ((l3, l3_mask), (proto, proto_mask)) = (byte(c.l3), byte(c.proto));
    let (fields, src_words, dst_words) = (c.shape(), prefix_words(c.src).2, prefix_words(c.dst).2);
    (
        [l3, proto, family, fields, src_words, dst_words, 0, 0],
        [
            l3_mask,
            proto_mask,
            family_mask,
            fields,
            src_words,
            dst_words,
            0,
            0,
        ],
    )
}

/// An `unless` no frame equals: byte 6 of a frame's meta is 0.
const NO_FRAME: [u8; 8] = [0, 0, 0, 0, 0, 0, u8::MAX, 0];

impl Direct {
    pub(super) fn of(test: &DirectTest) -> Direct {
        let (rule, c) = (&test.rule, &test.conjunction);
        // A port range as its first port and span; the ports outside
        // `except` (which has no port 0) as the range that wraps around it.
        let range = |r: Option<PortRange>, except: Option<PortRange>| match (r, except) {
            (Some(r), _) => (r.lo, r.hi - r.lo),
            (None, Some(e)) => (e.hi.wrapping_add(1), u16::MAX - 1 - (e.hi - e.lo)),
            (None, None) => (0, u16::MAX),
        };
        let ((src, src_mask, _), (dst, dst_mask, _)) = (prefix_words(c.src), prefix_words(c.dst));
        let ((sport_lo, sport_span), (dport_lo, dport_span)) = (
            range(c.sport, test.except_sport),
            range(c.dport, test.except_dport),
        );
        let (meta, meta_mask) = meta_of(c);
        let (unless, unless_mask) = test.unless.as_ref().map_or((NO_FRAME, NO_FRAME), meta_of);
        Direct {
            rule: rule.rule,
            action: rule.action as u32,
            meta,
            meta_mask,
            unless,
            unless_mask,
            negate: u8::from(test.negate),
            end: u8::from(test.end),
            held: u8::from(test.held),
            pad: [0; 5],
            src,
            src_mask,
            dst,
            dst_mask,
            sport_lo,
            sport_span,
            dport_lo,
            dport_span,
        }
    }
}

/// `NP_NOT_DENSE`.
pub(super) const NOT_DENSE: u32 = u32::MAX;

/// `struct np_class_row`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct ClassRow {
    pub(super) class: [u32; COLUMNS],
    pub(super) shapes: [u64; 2],
}

/// `NP_DIRECT_WIDE` and `NP_DIRECT_CLAUSES`.
pub(super) const DIRECT_WIDE: u32 = 1;
pub(super) const DIRECT_CLAUSES: u32 = 2;

/// `NP_PROGRAM_UNTAGGED` and `NP_PROGRAM_HELD`.
pub(super) const PROGRAM_UNTAGGED: u32 = 1;
pub(super) const PROGRAM_HELD: u32 = 2;

/// `struct np_program`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Program {
    pub(super) rule: u32,
    pub(super) action: u32,
    pub(super) len: u32,
    pub(super) flags: u32,
    pub(super) held_run: u32,
    pub(super) insn: [Insn; MAX_INSNS],
}

// SAFETY: plain integers and byte arrays with explicit padding fields.
unsafe impl plain::Plain for AddrKey {}
unsafe impl plain::Plain for AddrSlot {}
unsafe impl plain::Plain for ShapeKey {}
unsafe impl plain::Plain for RuleRef {}
unsafe impl plain::Plain for RulesConfig {}
unsafe impl plain::Plain for Direct {}
unsafe impl plain::Plain for Program {}
unsafe impl plain::Plain for ClassRow {}

const _: () = {
    use crate::skel::xdp::types;
    use std::mem::size_of;
    assert!(size_of::<AddrKey>() == size_of::<types::np_addr_key>());
    assert!(size_of::<AddrSlot>() == size_of::<types::np_addr_slot>());
    assert!(size_of::<ShapeKey>() == size_of::<types::np_shape_key>());
    assert!(size_of::<RuleRef>() == size_of::<types::np_rule_ref>());
    assert!(size_of::<RulesConfig>() == size_of::<types::np_rules_config>());
    assert!(size_of::<Direct>() == size_of::<types::np_direct>());
    assert!(size_of::<Program>() == size_of::<types::np_program>());
    assert!(size_of::<ClassRow>() == size_of::<types::np_class_row>());
};

/// A mirror's bytes, as a map update takes them.
pub(super) fn bytes<T: plain::Plain>(v: &T) -> &[u8] {
    // SAFETY: T is Plain: every byte is initialized, padding is explicit.
    unsafe { plain::as_bytes(v) }
}
