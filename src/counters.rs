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
    /// Counts since `earlier`; saturating so a reset map never shows huge numbers.
    pub fn since(self, earlier: Counter) -> Counter {
        Counter {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

/// `enum np_proto`, in index order.
pub const PROTO_NAMES: [&str; 9] = [
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

/// `enum np_verdict`: indexed by the XDP action value.
pub const VERDICT_NAMES: [&str; 5] = ["aborted", "drop", "pass", "tx", "redirect"];

/// The order verdicts are shown in, as indexes into [`VERDICT_NAMES`].
pub const VERDICT_DISPLAY_ORDER: [usize; 5] = [2, 1, 3, 4, 0];

/// `struct np_xdp_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    pub proto: [Counter; PROTO_NAMES.len()],
    pub verdict: [Counter; VERDICT_NAMES.len()],
}

// SAFETY: arrays of `Counter`, no padding.
unsafe impl plain::Plain for XdpStats {}

impl AddAssign for XdpStats {
    fn add_assign(&mut self, other: Self) {
        for (a, b) in self.proto.iter_mut().zip(other.proto) {
            *a += b;
        }
        for (a, b) in self.verdict.iter_mut().zip(other.verdict) {
            *a += b;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: plain::Plain>(v: &T) -> Vec<u8> {
        // SAFETY: T is Plain, so viewing it as bytes is sound.
        unsafe { plain::as_bytes(v) }.to_vec()
    }

    #[test]
    fn sums_every_cpu_and_field() {
        let mut a = XdpStats::default();
        a.proto[0] = Counter {
            packets: 1,
            bytes: 60,
        };
        a.verdict[2] = Counter {
            packets: 1,
            bytes: 60,
        };
        let mut b = XdpStats::default();
        b.proto[0] = Counter {
            packets: 2,
            bytes: 200,
        };
        b.proto[8] = Counter {
            packets: 5,
            bytes: 70,
        };
        let total: XdpStats = sum_percpu(&[bytes_of(&a), bytes_of(&b), bytes_of(&a)]).unwrap();
        assert_eq!(
            total.proto[0],
            Counter {
                packets: 4,
                bytes: 320
            }
        );
        assert_eq!(
            total.proto[8],
            Counter {
                packets: 5,
                bytes: 70
            }
        );
        assert_eq!(
            total.verdict[2],
            Counter {
                packets: 2,
                bytes: 120
            }
        );
        assert_eq!(total.proto[1], Counter::default());
    }

    #[test]
    fn no_cpus_sum_to_zero() {
        let total: Counter = sum_percpu(&[]).unwrap();
        assert_eq!(total, Counter::default());
    }

    #[test]
    fn short_value_is_an_error() {
        let err = sum_percpu::<XdpStats>(&[vec![0u8; 8]]).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
    }

    #[test]
    fn since_saturates() {
        let now = Counter {
            packets: 5,
            bytes: 10,
        };
        assert_eq!(
            now.since(Counter {
                packets: 2,
                bytes: 4
            }),
            Counter {
                packets: 3,
                bytes: 6
            }
        );
        assert_eq!(
            now.since(Counter {
                packets: 9,
                bytes: 99
            }),
            Counter::default()
        );
    }

    #[test]
    fn layout_matches_netprobe_h() {
        // struct np_xdp_stats: 9 protocol + 5 verdict counters of 16 bytes.
        assert_eq!(std::mem::size_of::<XdpStats>(), (9 + 5) * 16);
    }
}

// The mirrors must match what clang laid out; the skeleton's BTF-derived
// types are the reference.
const _: () = {
    use crate::skel::xdp::types;
    assert!(std::mem::size_of::<Counter>() == std::mem::size_of::<types::np_counter>());
    assert!(std::mem::size_of::<XdpStats>() == std::mem::size_of::<types::np_xdp_stats>());
};
