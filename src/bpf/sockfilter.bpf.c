// SPDX-License-Identifier: GPL-2.0-only
/* netprobe sockfilter: a BPF_PROG_TYPE_SOCKET_FILTER on an AF_PACKET socket.
 * Counts every frame it sees per protocol, and decides through its return
 * value what reaches user space: 0 (nothing) for frames no --filter rule
 * matches or under --counts-only, otherwise the first `snaplen` bytes. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "netprobe.h"

/* A socket filter has no direct packet access: the frame's head is copied
 * once into frame_copy, with the VLAN tag the kernel took off into the
 * packet's metadata put back in place, so that the parser, the rules and
 * libpcap programs see the frame as it was on the wire, as XDP sees it.
 * See parse.h for the contract. */
struct np_ctx {
	struct np_frame_copy *frame;
	struct __sk_buff *skb;
	__u32 caplen; /* bytes in frame */
	__u32 len;    /* the frame's length, the tag included */
};

static __always_inline void *np_ptr(struct np_ctx *c, __u32 off, __u32 len, void *buf)
{
	if (off + len > c->caplen)
		return NULL;
	/* A no-op, as caplen <= NP_FRAME_COPY; it bounds the offset for the
	 * verifier, and the slack after the copy covers `len`. */
	return c->frame->data + (off & (NP_FRAME_COPY - 1));
}

#define NP_VLAN_HLEN 4

/* The bytes of the VLAN tag the kernel took off into the metadata, which
 * the copy puts back. */
static __always_inline __u32 np_tag_len(struct __sk_buff *skb)
{
	return skb->vlan_present ? NP_VLAN_HLEN : 0;
}

/* The frame's length on the wire: with that tag. */
static __always_inline __u32 np_wire_len(struct __sk_buff *skb)
{
	return skb->len + np_tag_len(skb);
}

/* Already copied: see np_copy_frame(). */
static __always_inline __u32 np_snapshot(struct np_ctx *c, __u32 len)
{
	return c->caplen;
}

static __always_inline __u64 np_programs(struct np_ctx *c, __u32 first, __u32 last,
					 __u32 before, __u32 len, __u32 skip_held, const bool nested);
static __always_inline bool np_load_uncopied(void *ctx, __u64 off, __u8 buf[4], __u32 size);

#include "parse.h"
/* No direct path (fields.h), and one copy of the address code: the
 * tables alone keep the program within the socket option memory Linux 6.1
 * allows by default (optmem_max, 20 KiB). */
#define NP_ADDR_LOOP 1
#include "rules.h"

/* The context of a global function: the frame is already in frame_copy,
 * `caplen` bytes of it. False if the copy is not there. */
static __always_inline bool np_copied_ctx(struct np_ctx *c, struct __sk_buff *skb, __u32 caplen,
					  __u32 len)
{
	__u32 zero = 0;

	c->skb = skb;
	c->frame = bpf_map_lookup_elem(&frame_copy, &zero);
	c->caplen = caplen;
	c->len = len;
	return c->frame != NULL;
}

/* The libpcap programs in a global function of their own, as in xdp.bpf.c. */
__noinline __u64 np_sock_programs(struct __sk_buff *skb, __u32 first, __u32 last, __u32 before,
				  __u32 caplen)
{
	struct np_ctx c;

	if (!skb || !np_copied_ctx(&c, skb, caplen, np_wire_len(skb)))
		return NP_ACTION_NONE;
	return np_programs_run(&c, skb, first, last, before, c.len, 0);
}

/* A read past the copy (a GRO or GSO frame can be 64 KiB): from the
 * socket buffer, which lacks the tag the copy has put back in. */
static __always_inline bool np_load_uncopied(void *ctx, __u64 off, __u8 buf[4], __u32 size)
{
	struct __sk_buff *skb = ctx;
	__u32 tag = np_tag_len(skb);

	return off >= tag && !bpf_skb_load_bytes(skb, off - tag, buf, np_load_size(size));
}

/* Always the global function: the socket filter's frames are small enough
 * for 6.1's stack limit to take it inside np_match_rules (the kernel matrix
 * loads it), so `nested` does not matter here; with no direct path, it
 * never skips a program (`skip_held` is 0). */
static __always_inline __u64 np_programs(struct np_ctx *c, __u32 first, __u32 last,
					 __u32 before, __u32 len, __u32 skip_held, const bool nested)
{
	return np_sock_programs(c->skb, first, last, before, c->caplen);
}

/* Settings fixed at load time. */
const volatile bool rules_enabled = false;
/* Bytes of each frame copied: the headers the parser reads, or up to
 * NP_FRAME_COPY when a libpcap program may read the packet data too. */
const volatile __u32 copy_limit = NP_FRAME_COPY;
const volatile bool counts_only = false;
const volatile __u32 snaplen = 0xffffffff;

/* Fills frame_copy from the socket buffer; false if that fails. */
static __always_inline bool np_copy_frame(struct __sk_buff *skb, struct np_ctx *c)
{
	__u32 zero = 0, n, tag = np_tag_len(skb);
	__u8 *d;

	c->skb = skb;
	c->frame = bpf_map_lookup_elem(&frame_copy, &zero);
	if (!c->frame)
		return false;
	d = c->frame->data;
	c->len = skb->len + tag;
	n = skb->len;
	if (n > copy_limit - NP_VLAN_HLEN)
		n = copy_limit - NP_VLAN_HLEN;
	if (n > NP_FRAME_COPY - NP_VLAN_HLEN)
		n = NP_FRAME_COPY - NP_VLAN_HLEN;
	if (!tag || n < NP_ETH_ADDRS) {
		c->caplen = n;
		return n && !bpf_skb_load_bytes(skb, 0, d, np_copy_len(n));
	}
	if (bpf_skb_load_bytes(skb, 0, d, NP_ETH_ADDRS))
		return false;
	/* vlan_proto is kept in network order, the TCI in host order. */
	*(__u16 *)(d + NP_ETH_ADDRS) = (__u16)skb->vlan_proto;
	*(__u16 *)(d + NP_ETH_ADDRS + 2) = __builtin_bswap16((__u16)skb->vlan_tci);
	c->caplen = n + tag;
	n -= NP_ETH_ADDRS;
	if (n && bpf_skb_load_bytes(skb, NP_ETH_ADDRS, d + NP_ETH_ADDRS + NP_VLAN_HLEN,
				    np_copy_len(n)))
		return false;
	return true;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_stats);
} sock_stats SEC(".maps");

/* A global function, verified once on its own (see xdp.bpf.c). */
__noinline int np_match_rules(struct __sk_buff *skb, __u32 caplen, __u32 len)
{
	struct np_ctx c;

	if (!skb || !np_copied_ctx(&c, skb, caplen, len))
		return NP_ACTION_NONE;
	return np_match(&c, len, true);
}

SEC("socket")
int sockfilter_netprobe(struct __sk_buff *skb)
{
	struct np_ctx c;
	__u32 len;
	struct np_packet pkt;
	struct np_stats *st;
	struct np_counter *cell;
	__u32 verdict = NP_VERDICT_PASS;
	__u32 zero = 0;

	if (!np_copy_frame(skb, &c))
		return 0;
	len = c.len;
	np_parse(&c, &pkt, len);
	if (counts_only)
		verdict = NP_VERDICT_DROP;
	else if (rules_enabled && np_match_rules(skb, c.caplen, len) == NP_ACTION_NONE)
		verdict = NP_VERDICT_DROP;

	st = bpf_map_lookup_elem(&sock_stats, &zero);
	if (st && pkt.l3 < NP_L3_MAX && pkt.l4 < NP_L4_MAX) {
		cell = &st->cell[pkt.l3][pkt.l4][verdict];
		cell->packets++;
		cell->bytes += len;
	}
	return verdict == NP_VERDICT_PASS ? snaplen : 0;
}

char LICENSE[] SEC("license") = "GPL";
