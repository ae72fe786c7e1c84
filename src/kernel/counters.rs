//! Mirrors of the counter structs in `src/bpf/netprobe.h`, and the one place
//! where per-CPU values are summed.
use std::ops::AddAssign;

use anyhow::{ensure, Context, Result};

/// `struct np_counter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

// SAFETY: two u64 fields, no padding; any bit pattern is valid.
unsafe impl plain::Plain for Counter {}

impl AddAssign for Counter {
    fn add_assign(&mut self, other: Self) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

impl Counter {
    pub const fn new(packets: u64, bytes: u64) -> Counter {
        Counter { packets, bytes }
    }

    /// Counts since `earlier`; saturating so a reset map never shows huge numbers.
    pub fn since(self, earlier: Counter) -> Counter {
        Counter {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

/// Protocol names in the order they are shown and serialized.
pub const PROTOCOLS: [&str; 9] = [
    "ipv4",
    "ipv6",
    "arp",
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "other",
    "malformed",
];

/// `enum np_l3` index -> index into [`PROTOCOLS`].
const L3_PROTOCOL: [usize; 5] = [0, 1, 2, 7, 8];
/// `enum np_l4` index -> index into [`PROTOCOLS`]; NP_L4_NONE has none.
const L4_PROTOCOL: [Option<usize>; 5] = [Some(3), Some(4), Some(5), Some(6), None];

/// `enum np_verdict`: indexed by the XDP action value, then `would_drop`
/// (passed under `--dry-run` although a drop rule matched).
pub const VERDICT_NAMES: [&str; 6] = ["aborted", "drop", "pass", "tx", "redirect", "would_drop"];

/// The order verdicts are shown in, as indexes into [`VERDICT_NAMES`].
pub const VERDICT_DISPLAY_ORDER: [usize; 6] = [2, 1, 3, 4, 0, 5];

/// `struct np_stats`: one counter per (l3, l4, verdict) cell.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub cell: [[[Counter; VERDICT_NAMES.len()]; L4_PROTOCOL.len()]; L3_PROTOCOL.len()],
}

// SAFETY: nested arrays of `Counter`, no padding.
unsafe impl plain::Plain for Stats {}

impl AddAssign for Stats {
    fn add_assign(&mut self, other: Self) {
        let ours = self.cell.as_flattened_mut().as_flattened_mut();
        for (a, b) in ours
            .iter_mut()
            .zip(other.cell.as_flattened().as_flattened())
        {
            *a += *b;
        }
    }
}

impl Stats {
    /// Totals per protocol, in [`PROTOCOLS`] order.
    pub fn protocols(&self) -> [Counter; PROTOCOLS.len()] {
        let mut out = [Counter::default(); PROTOCOLS.len()];
        for (l3, by_l4) in self.cell.iter().enumerate() {
            for (l4, by_verdict) in by_l4.iter().enumerate() {
                for &c in by_verdict {
                    out[L3_PROTOCOL[l3]] += c;
                    if let Some(p) = L4_PROTOCOL[l4] {
                        out[p] += c;
                    }
                }
            }
        }
        out
    }

    /// Totals per (protocol, verdict): rows in [`PROTOCOLS`] order, columns
    /// indexed by verdict.
    pub fn protocol_verdicts(&self) -> [[Counter; VERDICT_NAMES.len()]; PROTOCOLS.len()] {
        let mut out = [[Counter::default(); VERDICT_NAMES.len()]; PROTOCOLS.len()];
        for (l3, by_l4) in self.cell.iter().enumerate() {
            for (l4, by_verdict) in by_l4.iter().enumerate() {
                for (v, &c) in by_verdict.iter().enumerate() {
                    out[L3_PROTOCOL[l3]][v] += c;
                    if let Some(p) = L4_PROTOCOL[l4] {
                        out[p][v] += c;
                    }
                }
            }
        }
        out
    }

    /// The non-empty (protocol, verdict) totals, with the verdicts named by
    /// `verdict_name` (None: not a verdict this hook uses).
    pub fn named_protocol_verdicts(
        &self,
        verdict_name: impl Fn(usize) -> Option<&'static str>,
    ) -> Vec<(&'static str, &'static str, Counter)> {
        let table = self.protocol_verdicts();
        let mut out = Vec::new();
        for (p, row) in table.iter().enumerate() {
            for (v, &c) in row.iter().enumerate() {
                if let Some(name) = verdict_name(v) {
                    out.push((PROTOCOLS[p], name, c));
                }
            }
        }
        out
    }

    /// Totals per verdict, indexed by XDP action.
    pub fn verdicts(&self) -> [Counter; VERDICT_NAMES.len()] {
        let mut out = [Counter::default(); VERDICT_NAMES.len()];
        for by_verdict in self.cell.as_flattened() {
            for (v, &c) in by_verdict.iter().enumerate() {
                out[v] += c;
            }
        }
        out
    }

    /// The counts added since `earlier`.
    pub fn since(&self, earlier: &Stats) -> Stats {
        let mut out = *self;
        let cells = out.cell.as_flattened_mut().as_flattened_mut();
        for (a, b) in cells
            .iter_mut()
            .zip(earlier.cell.as_flattened().as_flattened())
        {
            *a = a.since(*b);
        }
        out
    }
}

/// Reads entry 0 of a per-CPU array (a hook's one stats value) and sums it
/// across CPUs.
pub fn read_percpu<T>(map: &dyn libbpf_rs::MapCore) -> Result<T>
where
    T: plain::Plain + Default + Copy + AddAssign,
{
    let name = map.name().to_string_lossy().into_owned();
    let per_cpu = map
        .lookup_percpu(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
        .with_context(|| format!("reading {name}"))?
        .with_context(|| format!("{name} has no entry 0"))?;
    sum_percpu(&per_cpu)
}

/// Sums the per-CPU copies of one map value, as returned by `lookup_percpu`.
pub fn sum_percpu<T>(per_cpu: &[Vec<u8>]) -> Result<T>
where
    T: plain::Plain + Default + Copy + AddAssign,
{
    let mut total = T::default();
    for bytes in per_cpu {
        ensure!(
            bytes.len() >= std::mem::size_of::<T>(),
            "per-CPU value has {} bytes, expected {}",
            bytes.len(),
            std::mem::size_of::<T>()
        );
        let value: T = *plain::from_bytes::<T>(bytes)
            .ok()
            .context("misaligned per-CPU value")?;
        total += value;
    }
    Ok(total)
}

// The mirrors must match what clang laid out; the skeleton's BTF-derived
// types are the reference.
const _: () = {
    use crate::skel::xdp::types;
    assert!(std::mem::size_of::<Counter>() == std::mem::size_of::<types::np_counter>());
    assert!(std::mem::size_of::<Stats>() == std::mem::size_of::<types::np_stats>());
};

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: plain::Plain>(v: &T) -> Vec<u8> {
        // SAFETY: T is Plain, so viewing it as bytes is sound.
        unsafe { plain::as_bytes(v) }.to_vec()
    }

    const IPV4: usize = 0;
    const MALFORMED: usize = 4;
    const TCP: usize = 0;
    const UDP: usize = 1;
    const NONE: usize = 4;
    const PASS: usize = 2;
    const DROP: usize = 1;

    #[test]
    fn sums_every_cpu_and_cell() {
        let mut a = Stats::default();
        a.cell[IPV4][UDP][PASS] = Counter::new(1, 60);
        let mut b = Stats::default();
        b.cell[IPV4][UDP][PASS] = Counter::new(2, 200);
        b.cell[MALFORMED][NONE][DROP] = Counter::new(5, 70);
        let total: Stats = sum_percpu(&[bytes_of(&a), bytes_of(&b), bytes_of(&a)]).unwrap();
        assert_eq!(total.cell[IPV4][UDP][PASS], Counter::new(4, 320));
        assert_eq!(total.cell[MALFORMED][NONE][DROP], Counter::new(5, 70));
        assert_eq!(total.cell[IPV4][TCP][PASS], Counter::default());
    }

    #[test]
    fn folds_cells_into_protocols_and_verdicts() {
        let mut s = Stats::default();
        s.cell[IPV4][UDP][PASS] = Counter::new(3, 300);
        s.cell[IPV4][TCP][DROP] = Counter::new(2, 120);
        s.cell[IPV4][NONE][PASS] = Counter::new(1, 50);
        s.cell[MALFORMED][NONE][PASS] = Counter::new(4, 40);
        let p = s.protocols();
        let by_name = |n: &str| p[PROTOCOLS.iter().position(|x| *x == n).unwrap()];
        assert_eq!(by_name("ipv4"), Counter::new(6, 470));
        assert_eq!(by_name("udp"), Counter::new(3, 300));
        assert_eq!(by_name("tcp"), Counter::new(2, 120));
        assert_eq!(by_name("malformed"), Counter::new(4, 40));
        assert_eq!(by_name("ipv6"), Counter::default());
        let v = s.verdicts();
        assert_eq!(v[PASS], Counter::new(8, 390));
        assert_eq!(v[DROP], Counter::new(2, 120));
    }

    #[test]
    fn protocol_verdicts_are_the_joint_table() {
        let mut s = Stats::default();
        s.cell[IPV4][UDP][PASS] = Counter::new(3, 300);
        s.cell[IPV4][UDP][DROP] = Counter::new(2, 200);
        let t = s.protocol_verdicts();
        assert_eq!(t[0][PASS], Counter::new(3, 300), "ipv4 pass");
        assert_eq!(t[4][DROP], Counter::new(2, 200), "udp drop");
        let rows: u64 = t.iter().flatten().map(|c| c.packets).sum();
        assert_eq!(
            rows, 10,
            "each frame in one network class and one transport class"
        );
    }

    #[test]
    fn since_subtracts_per_cell() {
        let mut a = Stats::default();
        a.cell[IPV4][UDP][PASS] = Counter::new(1, 10);
        let mut b = a;
        b.cell[IPV4][UDP][PASS] = Counter::new(4, 40);
        assert_eq!(b.since(&a).cell[IPV4][UDP][PASS], Counter::new(3, 30));
    }

    #[test]
    fn no_cpus_sum_to_zero() {
        let total: Counter = sum_percpu(&[]).unwrap();
        assert_eq!(total, Counter::default());
    }

    #[test]
    fn short_value_is_an_error() {
        let err = sum_percpu::<Stats>(&[vec![0u8; 8]]).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
    }

    #[test]
    fn since_saturates() {
        let now = Counter::new(5, 10);
        assert_eq!(now.since(Counter::new(2, 4)), Counter::new(3, 6));
        assert_eq!(now.since(Counter::new(9, 99)), Counter::default());
    }

    #[test]
    fn layout_matches_netprobe_h() {
        // struct np_stats: 5 x 5 x 6 counters of 16 bytes.
        assert_eq!(std::mem::size_of::<Stats>(), 150 * 16);
    }
}
