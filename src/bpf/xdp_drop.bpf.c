// SPDX-License-Identifier: GPL-2.0-only
/* The minimal drop-everything XDP program: the benchmarks' drop baseline. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
