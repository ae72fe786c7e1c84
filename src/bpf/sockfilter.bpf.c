// SPDX-License-Identifier: GPL-2.0-only
/* netprobe sockfilter: a BPF_PROG_TYPE_SOCKET_FILTER on an AF_PACKET socket.
 * Counts every frame it sees per protocol, and decides through its return
 * value what reaches user space: 0 (nothing) for frames no --filter rule
 * matches or under --counts-only, otherwise the first `snaplen` bytes. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* A socket filter has no direct packet access: headers are copied out with
 * bpf_skb_load_bytes(). See parse.h for the contract. */
struct np_ctx {
	struct __sk_buff *skb;
};

static __always_inline void *np_ptr(struct np_ctx *c, __u32 off, __u32 len, void *buf)
{
	if (bpf_skb_load_bytes(c->skb, off, buf, len))
		return NULL;
	return buf;
}

#include "parse.h"
#include "rules.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_stats);
} sock_stats SEC(".maps");

/* Settings fixed at load time. */
const volatile bool rules_enabled = false;
const volatile bool counts_only = false;
const volatile __u32 snaplen = 0xffffffff;

/* A global function, verified once on its own (see xdp.bpf.c). */
__noinline int np_match_rules(struct __sk_buff *skb, struct np_packet *p, __u32 len)
{
	struct np_ctx c = { .skb = skb };

	if (!p)
		return NP_ACTION_NONE;
	return np_match(&c, p, len);
}

SEC("socket")
int sockfilter_netprobe(struct __sk_buff *skb)
{
	struct np_ctx c = { .skb = skb };
	__u32 len = skb->len;
	struct np_packet pkt;
	struct np_stats *st;
	struct np_counter *cell;
	__u32 verdict = NP_VERDICT_PASS;
	__u32 zero = 0;

	np_parse(&c, &pkt, len);
	if (counts_only)
		verdict = NP_VERDICT_DROP;
	else if (rules_enabled && np_match_rules(skb, &pkt, len) == NP_ACTION_NONE)
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
