//! Class spaces: prefixes and port blocks numbered so that "every rule
//! value inside this one" is a range scan, and the choice of the fields a
//! large shape keys by classes of its own (`own_classes`), with the rows
//! that map the rule set's classes to them (`PrefixIndex::fill_column`).
use super::model::Prefix;

/// Cells one shape may take as dense cells; a shape whose classes combine
/// into more stays in the hash.
pub const MAX_CELLS_PER_SHAPE: u64 = 1 << 20;

/// Columns of a row of shape classes (`NP_COLUMNS`): column 0 is the
/// rule set's class, so 7 shape fields of each kind (addresses, ports) may
/// have classes of their own; the others are keyed by the rule set's.
pub const COLUMNS: usize = 8;

/// Prefixes indexed so that "all prefixes inside P" is a range scan:
/// (group, first value, last value), where group keeps IPv4 and IPv6 apart.
pub(super) struct PrefixIndex<K: Ord + Copy> {
    /// (group, first, last, key, class), sorted.
    sorted: Vec<(u8, u128, u128, K, u32)>,
}

impl<K: Ord + Copy> PrefixIndex<K> {
    pub(super) fn new(items: impl Iterator<Item = (u8, u128, u128, K)>) -> PrefixIndex<K> {
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
    pub(super) fn within(
        &self,
        (group, first, last): (u8, u128, u128),
    ) -> impl Iterator<Item = u32> + '_ {
        let from = self
            .sorted
            .partition_point(|item| (item.0, item.1) < (group, first));
        self.sorted[from..]
            .iter()
            .take_while(move |item| item.0 == group && item.1 <= last)
            .filter(move |item| item.2 <= last)
            .map(|item| item.4)
    }

    pub(super) fn classes(&self) -> Vec<(K, u32)> {
        self.sorted.iter().map(|item| (item.3, item.4)).collect()
    }

    pub(super) fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The item whose class is `class`; none for class 0.
    pub(super) fn item(&self, class: u32) -> Option<K> {
        let i = usize::try_from(class).ok()?.checked_sub(1)?;
        self.sorted.get(i).map(|item| item.3)
    }

    /// Writes into column `column` of `rows` (one row per class of
    /// `self`, plus row 0) the class in `local` (an index of some of
    /// `self`'s items) of each of `self`'s classes: that of the longest
    /// item of `local` containing it, 0 for none. The class of an address
    /// in `self` names the longest of its prefixes covering the address,
    /// and prefixes covering one address nest, so this is the longest item
    /// of `local` covering the address.
    pub(super) fn fill_column(
        &self,
        local: &PrefixIndex<K>,
        rows: &mut Vec<[u32; COLUMNS]>,
        column: usize,
    ) {
        rows.resize(self.len() + 1, [0; COLUMNS]);
        let mut widest_first: Vec<&(u8, u128, u128, K, u32)> = local.sorted.iter().collect();
        widest_first.sort_by_key(|item| std::cmp::Reverse(item.2 - item.1));
        for &(group, first, last, _, class) in widest_first {
            for inner in self.within((group, first, last)) {
                rows[inner as usize][column] = class;
            }
        }
    }
}

/// Where a dense shape's cells begin, and each field's stride (l3, proto,
/// src, dst, sport, dport; 0 for a field the shape does not constrain).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dense {
    pub base: u32,
    pub stride: [u32; 6],
}

impl Dense {
    /// The cell of these classes (l3, proto class, src, dst, sport, dport).
    pub(super) fn cell_of(&self, classes: [u32; 6]) -> u32 {
        self.base
            + classes
                .iter()
                .zip(self.stride)
                .map(|(c, s)| c * s)
                .sum::<u32>()
    }
}

/// Values of the l3 field (`enum np_match_l3`) a shape keyed on it
/// meets: a frame without one has no cell there.
pub(super) const L3_VALUES: u64 = 4;
/// The same for a shape of clauses, which a frame of another EtherType
/// (`L3_NONE`) may match.
pub(super) const CLAUSE_L3_VALUES: u64 = 5;
/// A shape of at most this many cells keeps the rule set's classes: its
/// own would cost an array lookup per field and packet, to save memory
/// that is small already.
const SMALL_SHAPE: u64 = 1 << 16;

/// Which fields of a shape get classes of their own. A shape's cells
/// number the combinations of its fields' classes (times `fixed`, those of
/// l3 and proto). Keyed by the rule set's classes (`global` per field), a
/// shape of few rules can need more cells than fit, and falls back to the
/// hash; keyed by its own (`own`), each packet pays one more array lookup
/// for each such field. So fields switch to their own classes, the one that
/// shrinks the shape most first, while the shape is larger than
/// `SMALL_SHAPE` and either too large to be dense or shrinks at least
/// fourfold; `left` is the columns left for addresses and for ports. With
/// `always`, every field that has fewer classes of its own switches.
pub(super) fn own_classes(
    fixed: u64,
    keyed: [bool; 4],
    global: [usize; 4],
    own: [usize; 4],
    left: &mut [usize; 2],
    always: bool,
) -> [bool; 4] {
    let mut chosen = [false; 4];
    let size = |chosen: &[bool; 4]| {
        (0..4)
            .filter(|&f| keyed[f])
            .map(|f| (if chosen[f] { own[f] } else { global[f] }) as u64 + 1)
            .fold(fixed, u64::saturating_mul)
    };
    while always || size(&chosen) > SMALL_SHAPE {
        let gain = |f: usize| (global[f] as u64 + 1) as f64 / (own[f] as u64 + 1) as f64;
        let Some(best) = (0..4)
            .filter(|&f| keyed[f] && !chosen[f] && left[f / 2] > 0 && own[f] < global[f])
            .max_by(|&a, &b| gain(a).total_cmp(&gain(b)))
        else {
            break;
        };
        if !always && gain(best) < 4.0 && size(&chosen) <= MAX_CELLS_PER_SHAPE {
            break;
        }
        chosen[best] = true;
        left[best / 2] -= 1;
    }
    chosen
}

/// An address prefix as (family, first address, last address), addresses
/// read as 128-bit numbers (IPv4 in the top 32 bits, as stored).
pub(super) fn prefix_range(p: &Prefix) -> (u8, u128, u128) {
    let first = u128::from_be_bytes(p.addr);
    let host_bits = u128::MAX.checked_shr(u32::from(p.len)).unwrap_or(0);
    (p.family, first, first | host_bits)
}

/// An address prefix as an item of a [`PrefixIndex`].
pub(super) fn addr_item(p: Prefix) -> (u8, u128, u128, Prefix) {
    let (g, s, e) = prefix_range(&p);
    (g, s, e, p)
}

/// A port block as an item of a [`PrefixIndex`].
pub(super) fn port_item((port, len): (u16, u8)) -> (u8, u128, u128, (u16, u8)) {
    let (g, s, e) = block_range(port, len);
    (g, s, e, (port, len))
}

/// Every port's class from the classes of port blocks: the longest block
/// covering a port wins, as in a longest-prefix match.
pub(super) fn port_classes(blocks: &[((u16, u8), u32)]) -> Vec<u32> {
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
