// SPDX-License-Identifier: GPL-2.0-only
/* netprobe xdp: classify every frame and count it per protocol and verdict. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* XDP reads the frame in place; see parse.h for the contract. */
struct np_ctx {
	void *data;
	void *data_end;
	struct xdp_md *xdp;
};

/* Largest offset the parser may read at; bounds pointer arithmetic for the
 * verifier. Headers beyond it do not exist in practice. */
#define NP_MAX_HDR_OFF 1024

static __always_inline struct np_ctx np_ctx_of(struct xdp_md *ctx)
{
	struct np_ctx c = {
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
		.xdp = ctx,
	};
	return c;
}

static __always_inline void *np_ptr(struct np_ctx *c, __u32 off, __u32 len, void *buf)
{
	void *p;

	if (off > NP_MAX_HDR_OFF)
		return NULL;
	p = c->data + off;
	if (p + len > c->data_end)
		return NULL;
	return p;
}

#include "parse.h"

struct np_frame_copy;
static __always_inline __u32 np_snapshot(struct np_ctx *c, __u32 len);
static __always_inline __u64 np_programs(struct np_ctx *c, __u32 first, __u32 last,
					 __u32 before, __u32 len, __u32 skip_held, const bool nested);
static __always_inline bool np_load_uncopied(void *ctx, __u64 off, __u8 buf[4], __u32 size);

/* A few rules cost less compared one by one than looked up, and the
 * common frame is located under one bounds check (fields.h); the shapes
 * are looked up in steps the verifier checks once (rules.h). */
#define NP_DIRECT_MATCH 1
#define NP_FRAME_IN_PLACE 1
#define NP_SHAPE_STEPS 1
#include "rules.h"

/* The libpcap programs in a global function, which the verifier checks
 * once, on its own: inline, their interpreter loop was checked again for
 * every state of the program around it. The call costs about 10 ns where
 * returns are mitigated, paid only by rule sets that have programs; the
 * tables are matched inline. */
__noinline __u64 np_xdp_programs(struct xdp_md *ctx, __u32 first, __u32 last, __u32 before,
				 __u32 skip_held)
{
	struct np_ctx c = np_ctx_of(ctx);

	if (!ctx)
		return NP_ACTION_NONE;
	return np_programs_run(&c, ctx, first, last, before, c.data_end - c.data, skip_held);
}

static __always_inline __u64 np_programs(struct np_ctx *c, __u32 first, __u32 last,
					 __u32 before, __u32 len, __u32 skip_held, const bool nested)
{
	if (nested)
		return np_programs_run(c, c->xdp, first, last, before, len, skip_held);
	return np_xdp_programs(c->xdp, first, last, before, skip_held);
}

/* Copies the frame's head into frame_copy for a libpcap program (cbpf.h). */
static __always_inline __u32 np_snapshot(struct np_ctx *c, __u32 len)
{
	struct np_frame_copy *f;
	__u32 zero = 0, n = len;

	f = bpf_map_lookup_elem(&frame_copy, &zero);
	if (!f)
		return 0;
	if (n > NP_FRAME_COPY)
		n = NP_FRAME_COPY;
	if (n < 1 || bpf_xdp_load_bytes(c->xdp, 0, f->data, np_copy_len(n)))
		return 0;
	return n;
}

/* A read past the copy, of a frame longer than NP_FRAME_COPY (generic XDP
 * sees GRO's): from the frame itself. */
static __always_inline bool np_load_uncopied(void *ctx, __u64 off, __u8 buf[4], __u32 size)
{
	return !bpf_xdp_load_bytes(ctx, off, buf, np_load_size(size));
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_stats);
} xdp_stats SEC(".maps");

/* --redirect: the one target interface, slot 0. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} redirect_port SEC(".maps");

/* --top: packets and bytes per source address; LRU keeps the busy ones. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 1);
	__type(key, struct np_addr);
	__type(value, struct np_counter);
} top_sources SEC(".maps");

/* --reply icmp: the interface's own addresses. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct np_addr);
	__type(value, __u8);
} reply_addrs SEC(".maps");

/* The match in a global function, verified once on its own: for the entry
 * point that also has --reply and --top, whose code around an inline match
 * made the verifier give up. The call costs about 10 ns a packet where
 * returns are mitigated. */
__noinline int np_match_rules(struct xdp_md *ctx, __u32 len)
{
	struct np_ctx c = np_ctx_of(ctx);

	if (!ctx)
		return NP_ACTION_NONE;
	return np_match(&c, len, true);
}

/* What an entry point is compiled with. */
enum np_xdp_kind {
	NP_XDP_COUNT,  /* counting only */
	NP_XDP_RULES,  /* counting and rules, the match inline */
	NP_XDP_ALL,    /* counting, rules, --reply and --top */
};

/* Settings fixed at load time. */
const volatile bool rules_enabled = false;
const volatile bool dry_run = false;
const volatile bool count_sources = false;
const volatile bool reply_icmp = false;

#define NP_ICMP_ECHO_REQUEST 8
#define NP_ICMPV6_ECHO_REQUEST 128
#define NP_REPLY_HOP_LIMIT 64

/* RFC 1624 incremental checksum update for one 16-bit word. */
static __always_inline __u16 np_csum_replace(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + new;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static __always_inline void np_swap(__u8 *a, __u8 *b, __u32 n)
{
	__u8 tmp[16];

	__builtin_memcpy(tmp, a, n);
	__builtin_memcpy(a, b, n);
	__builtin_memcpy(b, tmp, n);
}

/* Turns an ICMP or ICMPv6 echo request to one of our addresses into its
 * reply in place; returns XDP_TX, or XDP_PASS when the packet is not one. */
static __always_inline __u32 np_echo_reply(struct np_ctx *c, const struct np_packet *p)
{
	struct ethhdr *eth = c->data;
	struct np_addr own = { .family = p->family };
	__u8 *icmp;

	if (p->ip_frag || (p->l4 != NP_L4_ICMP && p->l4 != NP_L4_ICMPV6))
		return XDP_PASS;
	icmp = np_ptr(c, p->l4_off, 4, NULL);
	if (!icmp || (void *)(eth + 1) > c->data_end)
		return XDP_PASS;
	if (icmp[1] != 0 ||
	    icmp[0] != (p->l4 == NP_L4_ICMP ? NP_ICMP_ECHO_REQUEST : NP_ICMPV6_ECHO_REQUEST))
		return XDP_PASS;
	if (np_load_addr(c, p, np_daddr_off(p), own.addr) || !bpf_map_lookup_elem(&reply_addrs, &own))
		return XDP_PASS;

	if (p->l4 == NP_L4_ICMP) {
		struct iphdr *ip = np_ptr(c, p->l3_off, sizeof(*ip), NULL);

		if (!ip)
			return XDP_PASS;
		np_swap((__u8 *)&ip->saddr, (__u8 *)&ip->daddr, 4);
		/* TTL shares a checksummed word with the protocol. */
		ip->check = np_csum_replace(ip->check, *(__u16 *)&ip->ttl,
					    (__u16)(NP_REPLY_HOP_LIMIT | ip->protocol << 8));
		ip->ttl = NP_REPLY_HOP_LIMIT;
	} else {
		struct ipv6hdr *ip6 = np_ptr(c, p->l3_off, sizeof(*ip6), NULL);

		/* Only a reply to an echo right after the IPv6 header: one
		 * with extension headers would need them rewritten too. */
		if (!ip6 || p->l4_off != p->l3_off + sizeof(*ip6))
			return XDP_PASS;
		np_swap((__u8 *)&ip6->saddr, (__u8 *)&ip6->daddr, 16);
		ip6->hop_limit = NP_REPLY_HOP_LIMIT;
	}
	/* The type is the first byte of the first checksummed word; the
	 * pseudo-header sum does not change when addresses swap. `icmp` is
	 * still valid: direct writes do not move the packet. */
	{
		__u16 old = *(__u16 *)icmp;

		icmp[0] = p->l4 == NP_L4_ICMP ? 0 : NP_ICMPV6_ECHO_REQUEST + 1;
		*(__u16 *)(icmp + 2) = np_csum_replace(*(__u16 *)(icmp + 2), old, *(__u16 *)icmp);
	}
	np_swap(eth->h_source, eth->h_dest, 6);
	return XDP_TX;
}

static __always_inline void np_count_source(struct np_ctx *c, const struct np_packet *p, __u32 len)
{
	struct np_addr key = { .family = p->family };
	struct np_counter *v, one = { .packets = 1, .bytes = len };

	if (np_load_addr(c, p, np_saddr_off(p), key.addr))
		return;
	v = bpf_map_lookup_elem(&top_sources, &key);
	if (v) {
		v->packets++;
		v->bytes += len;
		return;
	}
	/* Another CPU may add the same source between the lookup and the
	 * insert: then count in the entry it made. */
	if (bpf_map_update_elem(&top_sources, &key, &one, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(&top_sources, &key);
		if (v) {
			v->packets++;
			v->bytes += len;
		}
	}
}

/* The whole program; `kind` is a compile-time constant. Counting alone is
 * what most runs attach, and compiling it without the action code keeps
 * the parser's state in registers: the action code needs the context, the
 * parsed packet and the length live to the end, which made the compiler
 * spill them even where the verifier later removed that code as dead. For
 * the same reason rules alone, what --drop and --redirect attach, have an
 * entry point without --reply and --top. */
static __always_inline int np_xdp(struct xdp_md *ctx, const enum np_xdp_kind kind)
{
	struct np_ctx c = np_ctx_of(ctx);
	__u32 len = c.data_end - c.data;
	__u32 action = XDP_PASS; /* what the kernel gets */
	__u32 verdict;            /* what is counted */
	bool would_drop = false;
	struct np_stats *st;
	struct np_counter *cell;
	struct np_packet pkt;
	__u32 zero = 0;

	/* An inline match comes first: it reads the frame on its own, and
	 * before the parser the verifier enters it from one state, not from
	 * one per way the parse can end. */
	if (kind != NP_XDP_RULES)
		np_parse(&c, &pkt, len);
	if (kind != NP_XDP_COUNT && rules_enabled) {
		switch (kind == NP_XDP_RULES ? np_match(&c, len, false) : np_match_rules(ctx, len)) {
		case NP_ACTION_DROP:
			if (dry_run)
				would_drop = true;
			else
				action = XDP_DROP;
			break;
		case NP_ACTION_REDIRECT:
			action = bpf_redirect_map(&redirect_port, 0, XDP_ABORTED);
			break;
		}
	}
	if (kind == NP_XDP_RULES)
		np_parse(&c, &pkt, len);
	/* Before a reply rewrites the addresses. */
	if (kind == NP_XDP_ALL && count_sources && pkt.family)
		np_count_source(&c, &pkt, len);
	if (kind == NP_XDP_ALL && reply_icmp && action == XDP_PASS && pkt.family)
		action = np_echo_reply(&c, &pkt);
	verdict = would_drop && action == XDP_PASS ? NP_VERDICT_WOULD_DROP : action;

	st = bpf_map_lookup_elem(&xdp_stats, &zero);
	if (!st || pkt.l3 >= NP_L3_MAX || pkt.l4 >= NP_L4_MAX || verdict >= NP_VERDICT_MAX)
		return action;
	cell = &st->cell[pkt.l3][pkt.l4][verdict];
	cell->packets++;
	cell->bytes += len;
	return action;
}

/* Counting only: what `netprobe xdp IFACE` attaches without action flags. */
SEC("xdp")
int xdp_netprobe(struct xdp_md *ctx)
{
	return np_xdp(ctx, NP_XDP_COUNT);
}

/* Counting and rules: --drop, --redirect, without --reply or --top. */
SEC("xdp")
int xdp_np_rules(struct xdp_md *ctx)
{
	return np_xdp(ctx, NP_XDP_RULES);
}

/* Counting, and whichever of rules, --reply and --top the settings enable. */
SEC("xdp")
int xdp_np_actions(struct xdp_md *ctx)
{
	return np_xdp(ctx, NP_XDP_ALL);
}

char LICENSE[] SEC("license") = "GPL";
