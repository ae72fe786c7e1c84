// SPDX-License-Identifier: GPL-2.0-only
/* The least a classifier can do that still validates what netprobe's
 * `malformed` class needs, for IPv4 only: Ethernet, the IPv4 header
 * (version, IHL, total length against the frame, later fragments), the UDP
 * or TCP header against the IP packet, then one per-CPU packets/bytes
 * counter. No VLAN, IPv6, ARP or ICMP, and nothing kept for rules. A
 * benchmark baseline: the floor under netprobe's cost on UDP and TCP/IPv4. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "netprobe.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_stats);
} floor_stats SEC(".maps");

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data, l3 = NP_L3_MALFORMED, l4 = NP_L4_NONE, zero = 0;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct np_stats *st;
	__u32 hlen, tot;

	if ((void *)(eth + 1) > data_end)
		goto count;
	if (eth->h_proto != bpf_htons(0x0800 /* ETH_P_IP */)) {
		l3 = NP_L3_OTHER;
		goto count;
	}
	if ((void *)(ip + 1) > data_end)
		goto count;
	hlen = ip->ihl * 4;
	tot = bpf_ntohs(ip->tot_len);
	if (ip->version != 4 || hlen < sizeof(*ip) || tot < hlen || sizeof(*eth) + tot > len)
		goto count;
	l3 = NP_L3_IPV4;
	if (ip->frag_off & bpf_htons(0x1fff))
		goto count;
	if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = (void *)ip + hlen;

		if ((void *)(udp + 1) > data_end || hlen + sizeof(*udp) > tot ||
		    bpf_ntohs(udp->len) < sizeof(*udp))
			l3 = NP_L3_MALFORMED;
		else
			l4 = NP_L4_UDP;
	} else if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)ip + hlen;

		if ((void *)(tcp + 1) > data_end || hlen + sizeof(*tcp) > tot || tcp->doff < 5 ||
		    hlen + tcp->doff * 4 > tot)
			l3 = NP_L3_MALFORMED;
		else
			l4 = NP_L4_TCP;
	}
count:
	st = bpf_map_lookup_elem(&floor_stats, &zero);
	if (!st || l3 >= NP_L3_MAX || l4 >= NP_L4_MAX)
		return XDP_PASS;
	st->cell[l3][l4][NP_VERDICT_PASS].packets++;
	st->cell[l3][l4][NP_VERDICT_PASS].bytes += len;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
