//! Address classes without a trie whose depth grows with the table. The
//! class of an address is that of the longest rule prefix covering it (0:
//! none). The kernel's LPM trie walks deeper as it fills, and even one
//! exact-match hash lookup costs about as much as the rest of the matcher
//! (45 ns measured, BENCHMARKS.md); this layout costs array lookups, a
//! fixed number at most, whatever the number of rules:
//!
//! - a slot per family and leading 16 bits (an array lookup) holds the
//!   class of the longest rule prefix of at most 16 bits covering them;
//! - where longer rule prefixes lie below a slot, it names a block of 256
//!   entries indexed by the next byte (one more array lookup), each entry
//!   the class of the longest rule prefix covering it, and each entry with
//!   longer prefixes still below names a block for the byte after: down
//!   to the last byte for IPv4, to the eighth (/64) for IPv6;
//! - below an entry that names no block (an IPv6 prefix longer than /64,
//!   or past the [`MAX_BLOCKS`] blocks a rule set may take: 1 KiB each, the
//!   entries with the most prefixes below get them first, level by level),
//!   one exact-match hash holds the prefixes, keyed by length and masked
//!   address, and is probed once per longer length in use (a slot names
//!   those below it; a block entry, 4 bytes, only that some are), longest
//!   first, until one is found.
//!
//! A frame cut short inside an address walks only the bytes of the words
//! it holds: libpcap compares an address a 32-bit word at a time. An IPv6
//! frame cut after the first word may end on an entry that names a block
//! and holds no class; the hash holds every IPv6 prefix of up to /32 too,
//! for it.
//!
//! `AddrTables::class` is what `np_addr_class` in rules.h does, in Rust.
use std::collections::{BTreeMap, HashMap};

use super::model::Prefix;

/// Leading bits a slot is indexed by.
const SLOT_BITS: u8 = 16;
/// Slots per family (`NP_ADDR_SLOTS`).
pub const SLOTS: u32 = 1 << SLOT_BITS;
/// Entries in a block (`NP_ADDR_BLOCK`), indexed by one byte.
pub const BLOCK: usize = 256;
/// Per family index: how deep blocks go, in bits of the address
/// (`NP_ADDR_LEVELS`: levels of blocks below the slot).
const BLOCK_BITS: [u8; 2] = [32, 64];
/// Prefix lengths one family may have in the hash (`NP_ADDR_LENS`).
pub const MAX_LENS: usize = 32;
/// Classes an entry can hold.
pub const MAX_CLASSES: usize = (1 << 24) - 1;
/// Blocks a rule set may take (1 KiB each per generation).
pub const MAX_BLOCKS: usize = 64 << 10;
/// A block entry (`NP_ADDR_NEXT`, `NP_ADDR_HASHED`): the block by the next
/// byte in its low bits; or a class, with prefixes below it in the hash,
/// probed for each length the block's level names (`AddrTables::below`).
const NEXT: u32 = 1 << 31;
const HASHED: u32 = 1 << 30;
/// Levels of blocks the rules config has a row of `below` for
/// (`NP_ADDR_BELOW`).
pub const LEVELS: usize = 8;

/// A slot's block or a block entry as the program reads it from
/// generation `gen` of tables of `max_blocks` blocks each: an entry naming
/// a block names the index of its first entry in `addr_blocks`, which
/// spares the walk a multiply per level; any other is as it is.
pub fn entry_in_map(entry: u32, gen: u8, max_blocks: u32) -> u32 {
    if entry & NEXT == 0 {
        return entry;
    }
    NEXT | ((u32::from(gen) * max_blocks + (entry & !NEXT)) * BLOCK as u32)
}

/// `struct np_addr_slot`: a slot, or an entry of a block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub class: u32,
    /// Bit j: a rule prefix of `lens[family][j]` bits lies below, in the hash.
    pub longer: u32,
    /// 1 + the block by the next byte, 0 for none.
    pub block: u32,
}

impl Slot {
    /// `block` as the program reads it from generation `gen` of tables of
    /// `max_blocks` blocks each: as an entry naming that block does.
    pub fn block_in_map(&self, gen: u8, max_blocks: u32) -> u32 {
        match self.block {
            0 => 0,
            b => entry_in_map(NEXT | (b - 1), gen, max_blocks),
        }
    }
}

/// The address classes of a rule set, laid out as rules.h reads them.
#[derive(Clone, Debug, Default)]
pub struct AddrTables {
    /// Per family index (0: IPv4, 1: IPv6): the lengths over /16, longest
    /// first, that `Slot::longer` bits name.
    pub lens: [Vec<u8>; 2],
    /// The slots that are not empty, by family index * SLOTS + leading 16
    /// bits, in index order.
    pub slots: Vec<(u32, Slot)>,
    /// Blocks of entries by one byte of the address (`NEXT`, `HASHED`).
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

/// The lengths over /16 of a family's prefixes, longest first.
fn lengths<'a>(prefixes: impl Iterator<Item = &'a Prefix>) -> Vec<u8> {
    let mut lens: Vec<u8> = prefixes
        .filter(|p| p.len > SLOT_BITS)
        .map(|p| p.len)
        .collect();
    lens.sort_unstable_by(|a, b| b.cmp(a));
    lens.dedup();
    lens
}

/// The prefixes of `classes` the hash holds where no entry below a slot
/// gets a block (IPv4's longer than /24, IPv6's longer than /16): what the
/// tables make room for, so that a reloaded rule set past the blocks they
/// hold still fits, as long as its slots get theirs.
pub fn most_hashed(classes: &[(Prefix, u32)]) -> usize {
    classes
        .iter()
        .filter(|(p, _)| {
            p.len
                > if p.family == 4 {
                    SLOT_BITS + 8
                } else {
                    SLOT_BITS
                }
        })
        .count()
}

/// A slot or a block entry with rule prefixes longer than its `bits`
/// below it (shortest first), to be given a block or the hash.
struct Below<'a> {
    at: At,
    bits: u8,
    family: u8,
    prefixes: Vec<&'a (Prefix, u32)>,
}

#[derive(Clone, Copy)]
enum At {
    Slot(u32),
    Entry(usize, usize),
}

fn entry_at<'a>(
    slots: &'a mut BTreeMap<u32, Slot>,
    blocks: &'a mut [[Slot; BLOCK]],
    at: At,
) -> &'a mut Slot {
    match at {
        At::Slot(i) => slots.entry(i).or_default(),
        At::Entry(b, i) => &mut blocks[b][i],
    }
}

impl AddrTables {
    /// Lays out `classes` (each distinct rule prefix and its class).
    pub fn build(classes: &[(Prefix, u32)]) -> Result<AddrTables, String> {
        AddrTables::build_within(classes, MAX_BLOCKS)
    }

    /// The same in at most `max_blocks` blocks: the prefixes below the
    /// entries that get none go to the hash.
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
            lengths(of(4).map(|(p, _)| p)),
            lengths(of(6).map(|(p, _)| p)),
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
        let slot_index = |p: &Prefix| family_index(p.family) as u32 * SLOTS + leading16(&p.addr);
        let mut below: BTreeMap<u32, Below<'_>> = BTreeMap::new();
        for pc in &by_length {
            let p = &pc.0;
            if p.len > SLOT_BITS {
                below
                    .entry(slot_index(p))
                    .or_insert_with(|| Below {
                        at: At::Slot(slot_index(p)),
                        bits: SLOT_BITS,
                        family: p.family,
                        prefixes: Vec::new(),
                    })
                    .prefixes
                    .push(pc);
                continue;
            }
            let first = leading16(&masked(&p.addr, p.len));
            let index = family_index(p.family) as u32 * SLOTS;
            for i in first..first + (1u32 << (SLOT_BITS - p.len)) {
                slots.entry(index + i).or_default().class = pc.1;
            }
        }
        let mut blocks: Vec<[Slot; BLOCK]> = Vec::new();
        // IPv6 prefixes of up to /32 are in the hash too, for a frame cut
        // after the address's first word, whose walk ends on an entry
        // that names a block.
        let mut long: HashMap<Prefix, u32> = of(6)
            .filter(|(p, _)| p.len > SLOT_BITS && p.len <= 32)
            .map(|(p, class)| {
                let key = Prefix {
                    addr: masked(&p.addr, p.len),
                    ..*p
                };
                (key, *class)
            })
            .collect();
        let mut level: Vec<Below<'_>> = below.into_values().collect();
        // Level by level; in each, the entries with the most prefixes
        // below first.
        while !level.is_empty() {
            level.sort_by_key(|b| std::cmp::Reverse(b.prefixes.len()));
            let mut next = Vec::new();
            for node in level {
                let f = family_index(node.family);
                if node.bits >= BLOCK_BITS[f] || blocks.len() >= max_blocks {
                    let mut longer = 0;
                    for (p, class) in node.prefixes {
                        let bit = lens[f].iter().position(|l| *l == p.len).unwrap_or(0);
                        longer |= 1 << bit;
                        let key = Prefix {
                            addr: masked(&p.addr, p.len),
                            ..*p
                        };
                        long.insert(key, *class);
                    }
                    entry_at(&mut slots, &mut blocks, node.at).longer |= longer;
                    continue;
                }
                let b = blocks.len();
                let parent = entry_at(&mut slots, &mut blocks, node.at);
                parent.block = b as u32 + 1;
                let class = parent.class;
                blocks.push(
                    [Slot {
                        class,
                        ..Slot::default()
                    }; BLOCK],
                );
                let (byte, bits) = (usize::from(node.bits / 8), node.bits + 8);
                let mut deeper: BTreeMap<usize, Below<'_>> = BTreeMap::new();
                for pc in node.prefixes {
                    let first = usize::from(masked(&pc.0.addr, pc.0.len)[byte]);
                    if pc.0.len > bits {
                        deeper
                            .entry(first)
                            .or_insert_with(|| Below {
                                at: At::Entry(b, first),
                                bits,
                                family: node.family,
                                prefixes: Vec::new(),
                            })
                            .prefixes
                            .push(pc);
                        continue;
                    }
                    for entry in &mut blocks[b][first..first + (1 << (bits - pc.0.len))] {
                        entry.class = pc.1;
                    }
                }
                next.extend(deeper.into_values());
            }
            level = next;
        }
        let blocks = blocks
            .iter()
            .map(|block| {
                block.map(|e| match (e.block, e.longer) {
                    (0, 0) => e.class,
                    (0, _) => HASHED | e.class,
                    (b, _) => NEXT | (b - 1),
                })
            })
            .collect();
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
        let (mut class, mut longer, mut next) = (slot.class, slot.longer, slot.block);
        let mut byte = 2;
        while next != 0 && byte < 4 * usize::from(words) {
            let entry = self.blocks[next as usize - 1][usize::from(addr[byte])];
            (class, longer, next) = match entry {
                e if e & NEXT != 0 => (0, 0, (e & !NEXT) + 1),
                e if e & HASHED != 0 => (e & !HASHED, self.below(f, byte - 2), 0),
                e => (e, 0, 0),
            };
            byte += 1;
        }
        if next != 0 {
            // Cut inside an IPv6 address below an entry naming a block,
            // which holds no class: the hash also holds its prefixes of
            // up to /32.
            (class, longer) = (slot.class, u32::MAX);
        }
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

    /// The lengths (bits of `lens[f]`) a hashed entry of a block at
    /// `level` (0: by the third byte) probes: those longer than the bytes
    /// walked (`addr_below` in the rules config).
    pub fn below(&self, f: usize, level: usize) -> u32 {
        let walked = 8 * (3 + level) as u8;
        self.lens[f]
            .iter()
            .enumerate()
            .filter(|(_, len)| **len > walked)
            .fold(0, |acc, (j, _)| acc | 1 << j)
    }
}
