// SPDX-License-Identifier: GPL-2.0-only
/* The empty XDP program: the baseline every benchmark compares against. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
