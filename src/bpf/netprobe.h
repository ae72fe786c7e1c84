/* SPDX-License-Identifier: GPL-2.0-only */
/* Structs and constants shared by the BPF programs and user space.
 * User space mirrors them in src/counters.rs; keep the two in step. */
#ifndef NETPROBE_H
#define NETPROBE_H

/* Protocol classes. Every frame counts in exactly one of IPV4, IPV6, ARP,
 * OTHER or MALFORMED; an IP frame whose transport header was parsed also
 * counts in one of TCP, UDP, ICMP or ICMPV6. */
enum np_proto {
	NP_PROTO_IPV4 = 0,
	NP_PROTO_IPV6,
	NP_PROTO_ARP,
	NP_PROTO_TCP,
	NP_PROTO_UDP,
	NP_PROTO_ICMP,
	NP_PROTO_ICMPV6,
	NP_PROTO_OTHER,
	NP_PROTO_MALFORMED,
	NP_PROTO_MAX,
	/* "no transport class": the frame is not IP, is a later fragment, or
	 * carries a transport netprobe does not classify. */
	NP_PROTO_NONE = NP_PROTO_MAX,
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

/* The one value of the per-CPU `xdp_stats` array. One lookup per packet
 * reaches every counter the packet touches. */
struct np_xdp_stats {
	struct np_counter proto[NP_PROTO_MAX];
	struct np_counter verdict[NP_VERDICT_MAX];
};

#endif /* NETPROBE_H */
