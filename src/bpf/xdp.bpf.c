// SPDX-License-Identifier: GPL-2.0-only
/* netprobe xdp: classify every frame and count it per protocol and verdict. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* XDP reads the frame in place; see parse.h for the contract. */
struct np_ctx {
	void *data;
	void *data_end;
};

/* Largest offset the parser may read at; bounds pointer arithmetic for the
 * verifier. Headers beyond it do not exist in practice. */
#define NP_MAX_HDR_OFF 1024

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_xdp_stats);
} xdp_stats SEC(".maps");

SEC("xdp")
int xdp_netprobe(struct xdp_md *ctx)
{
	struct np_ctx c = {
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
	};
	__u32 len = c.data_end - c.data;
	struct np_xdp_stats *st;
	struct np_counter *cell;
	struct np_packet pkt;
	__u32 verdict = XDP_PASS;
	__u32 zero = 0;

	np_parse(&c, &pkt, len);

	st = bpf_map_lookup_elem(&xdp_stats, &zero);
	if (!st || pkt.l3 >= NP_L3_MAX || pkt.l4 >= NP_L4_MAX || verdict >= NP_VERDICT_MAX)
		return verdict;
	cell = &st->cell[pkt.l3][pkt.l4][verdict];
	cell->packets++;
	cell->bytes += len;
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";
