//! Address classes without a trie. The class of an address is that of the
//! longest rule prefix covering it (0: none). The kernel's LPM trie walks
//! deeper as it fills, and even one exact-match hash lookup costs about as
//! much as the rest of the matcher; this layout costs array lookups at any
//! size, and a hash lookup only where a rule prefix longer than /24 (IPv4)
//! or /16 (IPv6) lies close to the address:
//!
//! - a slot per family and leading 16 bits (an array lookup) holds the
//!   class of the longest rule prefix of at most 16 bits covering them;
//! - for IPv4, where a rule prefix of 17 to 32 bits lies below a slot, the
//!   slot names a block of 256 entries indexed by the third byte (a second
//!   array lookup), each the class of the longest rule prefix of at most 24
//!   bits covering it;
//! - for IPv4, where a rule prefix of 25 to 32 bits lies below a block
//!   entry, the entry names another block, indexed by the fourth byte (a
//!   third array lookup), each entry the class of the longest rule prefix
//!   covering the address: a /24 of listed hosts costs no hash lookup;
//! - past [`MAX_HOST_BLOCKS`] of those (the /24s with the most longer
//!   prefixes get them), an IPv4 block entry, and an IPv6 slot, have a bit
//!   for each longer prefix length that has a rule prefix below it; one
//!   exact-match hash holds those prefixes, keyed by length and masked
//!   address, and is probed once per length named, longest first, until
//!   one is found. Measured on the mixed 10,000-rule set, that probe cost
//!   a frame to a listed host's neighbour 48 ns, the fourth-byte block
//!   nothing measurable (BENCHMARKS.md).
//!
//! `AddrTables::class` is what `np_addr_class` in rules.h does, in Rust.
use std::collections::{BTreeMap, HashMap};

use super::model::Prefix;

/// Leading bits a slot is indexed by.
const SLOT_BITS: u8 = 16;
/// Slots per family (`NP_ADDR_SLOTS`).
pub const SLOTS: u32 = 1 << SLOT_BITS;
/// Entries in an IPv4 block (`NP_ADDR_BLOCK`), indexed by the third byte.
pub const BLOCK: usize = 256;
/// The longest IPv4 prefix a block entry holds the class of.
const BLOCK_BITS: u8 = 24;
/// Prefix lengths one family may have in the hash (`NP_ADDR_LENS`).
pub const MAX_LENS: usize = 32;
/// A block entry is a class in its low bits, or with [`HOSTS`] the block
/// by the fourth byte below it; and the longer lengths below it in the hash
/// in its top 8 (IPv4 has at most 8 lengths over /24).
const LENS_SHIFT: u32 = 24;
/// The block entry names a block by the fourth byte (`NP_ADDR_HOSTS`).
const HOSTS: u32 = 1 << 23;
/// Classes a block entry can hold.
pub const MAX_CLASSES: usize = HOSTS as usize - 1;
/// Blocks by the fourth byte a rule set may take (1 KiB each per
/// generation); the /24s past them keep their longer prefixes in the hash.
pub const MAX_HOST_BLOCKS: usize = 16 << 10;

/// `struct np_addr_slot`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub class: u32,
    /// IPv6: bit j, a rule prefix of `lens[1][j]` bits lies below.
    pub longer: u32,
    /// IPv4: 1 + the block of the third byte, 0 for none.
    pub block: u32,
}

/// The address classes of a rule set, laid out as rules.h reads them.
#[derive(Clone, Debug, Default)]
pub struct AddrTables {
    /// Per family index (0: IPv4, 1: IPv6): the lengths in the hash,
    /// longest first.
    pub lens: [Vec<u8>; 2],
    /// The slots that are not empty, by family index * SLOTS + leading 16
    /// bits, in index order.
    pub slots: Vec<(u32, Slot)>,
    /// IPv4 blocks, by the third byte (class, or HOSTS | the block by the
    /// fourth byte; | bits of the lengths over /24 in the hash << 24), then
    /// by the fourth byte (class).
    pub blocks: Vec<[u32; BLOCK]>,
    /// The prefixes in the hash, addresses masked, and their classes.
    pub long: HashMap<Prefix, u32>,
}

/// 0 for IPv4, 1 for IPv6: the family's place in the slots and config.
pub fn family_index(family: u8) -> usize {
    usize::from(family == 6)
}

fn leading16(addr: &[u8; 16]) -> u32 {
    u32::from(addr[0]) << 8 | u32::from(addr[1])
}

/// `addr` with the bits past `len` cleared.
fn masked(addr: &[u8; 16], len: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, word) in mask(len).iter().enumerate() {
        for (j, m) in word.iter().enumerate() {
            out[4 * i + j] = addr[4 * i + j] & m;
        }
    }
    out
}

/// The mask of a `len`-bit prefix as four 32-bit words in network order
/// (`addr_mask` in the rules config).
pub fn mask(len: u8) -> [[u8; 4]; 4] {
    let mut words = [[0u8; 4]; 4];
    for (w, word) in words.iter_mut().enumerate() {
        let bits = u32::from(len).saturating_sub(32 * w as u32).min(32);
        let value = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        *word = value.to_be_bytes();
    }
    words
}

/// The first and last index of `p`'s leading `bits` bits (past the
/// leading `skip` bits), for a prefix no longer than `bits`.
fn span(p: &Prefix, skip: u8, bits: u8) -> std::ops::RangeInclusive<u32> {
    let a = u32::from_be_bytes([p.addr[0], p.addr[1], p.addr[2], p.addr[3]]);
    let within = (a << skip) >> (32 - (bits - skip));
    let free = bits - p.len.max(skip);
    let first = (within >> free) << free;
    first..=first + (1 << free) - 1
}

/// The lengths over `above` of a family's prefixes, longest first.
fn lengths<'a>(prefixes: impl Iterator<Item = &'a Prefix>, above: u8) -> Vec<u8> {
    let mut lens: Vec<u8> = prefixes.filter(|p| p.len > above).map(|p| p.len).collect();
    lens.sort_unstable_by(|a, b| b.cmp(a));
    lens.dedup();
    lens
}

/// The prefixes of `classes` the hash holds where no /24 gets a block by
/// the fourth byte: what the tables make room for, so that a reloaded
/// rule set past the blocks they hold still fits.
pub fn most_hashed(classes: &[(Prefix, u32)]) -> usize {
    classes
        .iter()
        .filter(|(p, _)| p.len > if p.family == 4 { BLOCK_BITS } else { SLOT_BITS })
        .count()
}

impl AddrTables {
    /// Lays out `classes` (each distinct rule prefix and its class).
    pub fn build(classes: &[(Prefix, u32)]) -> Result<AddrTables, String> {
        AddrTables::build_within(classes, usize::MAX)
    }

    /// The same in at most `max_blocks` blocks, if the blocks by the third
    /// byte fit: the /24s that get no block by the fourth byte keep their
    /// longer prefixes in the hash.
    pub fn build_within(
        classes: &[(Prefix, u32)],
        max_blocks: usize,
    ) -> Result<AddrTables, String> {
        if classes.len() > MAX_CLASSES {
            return Err(format!(
                "the rules name {} different address prefixes; netprobe matches at most {MAX_CLASSES}",
                classes.len()
            ));
        }
        let of = |family: u8| classes.iter().filter(move |(p, _)| p.family == family);
        let lens = [
            lengths(of(4).map(|(p, _)| p), BLOCK_BITS),
            lengths(of(6).map(|(p, _)| p), SLOT_BITS),
        ];
        if lens[1].len() > MAX_LENS {
            return Err(format!(
                "the rules use {} different IPv6 prefix lengths over /16; netprobe matches at \
                 most {MAX_LENS}",
                lens[1].len()
            ));
        }
        let mut by_length: Vec<&(Prefix, u32)> = classes.iter().collect();
        // Shortest first: a longer prefix overwrites what it covers.
        by_length.sort_by_key(|(p, _)| p.len);
        let mut slots: BTreeMap<u32, Slot> = BTreeMap::new();
        let slot_index = |p: &Prefix, i: u32| family_index(p.family) as u32 * SLOTS + i;
        for (p, class) in by_length.iter().filter(|(p, _)| p.len <= SLOT_BITS) {
            let first = leading16(&masked(&p.addr, p.len));
            for i in first..first + (1u32 << (SLOT_BITS - p.len)) {
                slots.entry(slot_index(p, i)).or_default().class = *class;
            }
        }
        // IPv4 blocks, in the order of their slots.
        let mut block_of: BTreeMap<u32, usize> = BTreeMap::new();
        for (p, _) in of(4).filter(|(p, _)| p.len > SLOT_BITS) {
            let next = block_of.len();
            block_of.entry(leading16(&p.addr)).or_insert(next);
        }
        let mut blocks = vec![[0u32; BLOCK]; block_of.len()];
        for (&at, &b) in &block_of {
            let slot = slots.entry(at).or_default();
            slot.block = b as u32 + 1;
            blocks[b] = [slot.class; BLOCK];
        }
        let v4_block = |p: &Prefix| block_of[&leading16(&p.addr)];
        for (p, class) in by_length
            .iter()
            .filter(|(p, _)| p.family == 4 && p.len > SLOT_BITS && p.len <= BLOCK_BITS)
        {
            for i in span(p, SLOT_BITS, BLOCK_BITS) {
                blocks[v4_block(p)][i as usize] = *class;
            }
        }
        if blocks.len() > max_blocks {
            return Err(format!(
                "the rules need {} IPv4 address blocks; the tables hold {max_blocks}",
                blocks.len()
            ));
        }
        // The /24s with the most longer prefixes below get blocks by the
        // fourth byte, each entry first the class of the /24's own.
        let mut per24: BTreeMap<[u8; 3], usize> = BTreeMap::new();
        for (p, _) in of(4).filter(|(p, _)| p.len > BLOCK_BITS) {
            *per24.entry([p.addr[0], p.addr[1], p.addr[2]]).or_default() += 1;
        }
        let mut dense: Vec<([u8; 3], usize)> = per24.into_iter().collect();
        dense.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        dense.truncate(MAX_HOST_BLOCKS.min(max_blocks - blocks.len()));
        let mut host_block: HashMap<[u8; 3], usize> = HashMap::new();
        for (at, _) in dense {
            let next = blocks.len();
            let entry = &mut blocks[block_of[&(u32::from(at[0]) << 8 | u32::from(at[1]))]]
                [usize::from(at[2])];
            let of24 = std::mem::replace(entry, HOSTS | next as u32);
            blocks.push([of24; BLOCK]);
            host_block.insert(at, next);
        }
        let mut long = HashMap::new();
        for (p, class) in by_length.iter().filter(|(p, _)| p.len > SLOT_BITS) {
            let f = family_index(p.family);
            if f == 0 {
                if p.len <= BLOCK_BITS {
                    continue;
                }
                // Shortest first: a longer prefix overwrites what it covers.
                if let Some(&b) = host_block.get(&[p.addr[0], p.addr[1], p.addr[2]]) {
                    for i in span(p, BLOCK_BITS, 32) {
                        blocks[b][i as usize] = *class;
                    }
                    continue;
                }
                // Classes are all set before the bits: longer prefixes
                // come after every prefix of at most 24 bits.
                let bit = lens[0].iter().position(|l| *l == p.len).unwrap_or(0);
                blocks[v4_block(p)][usize::from(p.addr[2])] |= 1 << (LENS_SHIFT + bit as u32);
            } else {
                let bit = lens[1].iter().position(|l| *l == p.len).unwrap_or(0);
                slots
                    .entry(slot_index(p, leading16(&p.addr)))
                    .or_default()
                    .longer |= 1 << bit;
            }
            let key = Prefix {
                addr: masked(&p.addr, p.len),
                ..*p
            };
            long.insert(key, *class);
        }
        Ok(AddrTables {
            lens,
            slots: slots.into_iter().collect(),
            blocks,
            long,
        })
    }

    /// The class of `addr` when the frame holds its first `words` 32-bit
    /// words (4 for a whole IPv6 address, 1 for IPv4): what rules.h does.
    pub fn class(&self, family: u8, addr: &[u8; 16], words: u8) -> u32 {
        if words == 0 {
            return 0;
        }
        let f = family_index(family);
        let index = f as u32 * SLOTS + leading16(addr);
        let Ok(at) = self.slots.binary_search_by_key(&index, |(i, _)| *i) else {
            return 0;
        };
        let slot = self.slots[at].1;
        let (class, longer) = match slot.block {
            0 => (slot.class, slot.longer),
            b => {
                let entry = self.blocks[b as usize - 1][usize::from(addr[2])];
                if entry & HOSTS != 0 {
                    return self.blocks[(entry & MAX_CLASSES as u32) as usize]
                        [usize::from(addr[3])];
                }
                (entry & MAX_CLASSES as u32, entry >> LENS_SHIFT)
            }
        };
        self.lens[f]
            .iter()
            .enumerate()
            .filter(|(j, len)| longer >> j & 1 == 1 && u32::from(**len) <= 32 * u32::from(words))
            .find_map(|(_, &len)| {
                self.long.get(&Prefix {
                    family,
                    addr: masked(addr, len),
                    len,
                })
            })
            .copied()
            .unwrap_or(class)
    }
}
