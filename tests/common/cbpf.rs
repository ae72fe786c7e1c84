//! libpcap's filter programs run in Rust, as the reference for what an
//! expression matches: the same program tcpdump runs, compiled by the same
//! libpcap (netprobe::filter::pcap), interpreted as libpcap's own
//! bpf_filter() does.
#![allow(dead_code)]
use netprobe::filter::pcap::{self, Insn};

/// Whether `program` accepts `frame` (its whole length on the wire).
pub fn accepts(program: &[Insn], frame: &[u8]) -> bool {
    let load = |off: u64, size: u64| -> Option<u32> {
        let end = off.checked_add(size)?;
        let bytes = frame.get(off as usize..usize::try_from(end).ok()?)?;
        Some(bytes.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)))
    };
    let size = |code: u16| match code & 0x18 {
        0x00 => 4,
        0x08 => 2,
        _ => 1,
    };
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    // Loops (protochain's) end when a load runs off the frame.
    for _ in 0..1 << 20 {
        let i = program[pc];
        pc += 1;
        let operand = if i.code & 0x08 != 0 { x } else { i.k };
        match i.code & 0x07 {
            0x00 => {
                a = match i.code & 0xe0 {
                    0x00 => i.k,
                    0x20 => match load(u64::from(i.k), size(i.code)) {
                        Some(v) => v,
                        None => return false,
                    },
                    0x40 => match load(u64::from(x) + u64::from(i.k), size(i.code)) {
                        Some(v) => v,
                        None => return false,
                    },
                    0x60 => mem[i.k as usize],
                    _ => frame.len() as u32,
                }
            }
            0x01 => {
                x = match i.code & 0xe0 {
                    0x00 => i.k,
                    0x60 => mem[i.k as usize],
                    0x80 => frame.len() as u32,
                    _ => match load(u64::from(i.k), 1) {
                        Some(v) => (v & 0xf) << 2,
                        None => return false,
                    },
                }
            }
            0x02 => mem[i.k as usize] = a,
            0x03 => mem[i.k as usize] = x,
            0x04 => {
                a = match i.code & 0xf0 {
                    0x00 => a.wrapping_add(operand),
                    0x10 => a.wrapping_sub(operand),
                    0x20 => a.wrapping_mul(operand),
                    0x30 if operand == 0 => return false,
                    0x30 => a / operand,
                    0x40 => a | operand,
                    0x50 => a & operand,
                    0x60 => a.checked_shl(operand).unwrap_or(0),
                    0x70 => a.checked_shr(operand).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0x90 if operand == 0 => return false,
                    0x90 => a % operand,
                    _ => a ^ operand,
                }
            }
            0x05 => {
                let jump = match i.code & 0xf0 {
                    0x00 => {
                        pc = (pc as u32).wrapping_add(i.k) as usize;
                        continue;
                    }
                    0x10 => a == operand,
                    0x20 => a > operand,
                    0x30 => a >= operand,
                    _ => a & operand != 0,
                };
                pc += usize::from(if jump { i.jt } else { i.jf });
            }
            0x06 => return (if i.code & 0x18 == 0x10 { a } else { i.k }) != 0,
            _ => {
                if i.code & 0xf8 == 0 {
                    x = a
                } else {
                    a = x
                }
            }
        }
    }
    panic!("a filter program ran a million steps")
}

/// Whether tcpdump's filter for `expr` matches `frame`.
pub fn tcpdump_matches(expr: &str, frame: &[u8]) -> bool {
    let program = pcap::compile(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    accepts(&program, frame)
}
