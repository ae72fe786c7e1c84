/* SPDX-License-Identifier: GPL-2.0-only */
/* Structs and constants shared by the BPF programs and user space.
 * User space mirrors them in src/counters.rs; keep the two in step. */
#ifndef NETPROBE_H
#define NETPROBE_H

/* Link-and-network class: every frame is exactly one of these. */
enum np_l3 {
	NP_L3_IPV4 = 0,
	NP_L3_IPV6,
	NP_L3_ARP,
	NP_L3_OTHER,
	NP_L3_MALFORMED, /* a truncated or inconsistent header anywhere */
	NP_L3_MAX,
};

/* Transport class of an IP frame; NONE when not IP, a later fragment, or a
 * transport netprobe does not classify. */
enum np_l4 {
	NP_L4_TCP = 0,
	NP_L4_UDP,
	NP_L4_ICMP,
	NP_L4_ICMPV6,
	NP_L4_NONE,
	NP_L4_MAX,
};

/* XDP verdicts, indexed by the XDP action value itself. */
enum np_verdict {
	NP_VERDICT_ABORTED = 0,
	NP_VERDICT_DROP = 1,
	NP_VERDICT_PASS = 2,
	NP_VERDICT_TX = 3,
	NP_VERDICT_REDIRECT = 4,
	NP_VERDICT_MAX,
};

struct np_counter {
	__u64 packets;
	__u64 bytes;
};

/* The one value of the per-CPU `xdp_stats` array: a counter per (l3, l4,
 * verdict) cell. A packet touches one cell, so counting costs one
 * read-modify-write; user space folds the cells into per-protocol and
 * per-verdict totals. */
struct np_xdp_stats {
	struct np_counter cell[NP_L3_MAX][NP_L4_MAX][NP_VERDICT_MAX];
};

#endif /* NETPROBE_H */
