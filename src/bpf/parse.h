/* SPDX-License-Identifier: GPL-2.0-only */
/* Frame classification shared by every hook that sees whole frames.
 *
 * The including program defines `struct np_ctx` and
 *   static __always_inline int np_load(struct np_ctx *c, __u32 off, void *dst, __u32 len);
 * which copies `len` bytes at `off` into `dst` and returns non-zero when the
 * frame is too short. XDP reads the frame directly; a socket filter, which
 * has no direct packet access, uses bpf_skb_load_bytes(). The parser never
 * reads past the frame's end because every read goes through np_load(). */
#ifndef NETPROBE_PARSE_H
#define NETPROBE_PARSE_H

#include "netprobe.h"

#define NP_ETH_P_IP 0x0800
#define NP_ETH_P_ARP 0x0806
#define NP_ETH_P_IPV6 0x86DD
#define NP_ETH_P_8021Q 0x8100
#define NP_ETH_P_8021AD 0x88A8
#define NP_ETH_HLEN 14
#define NP_MAX_VLAN_TAGS 2
#define NP_MAX_IPV6_EXT_HDRS 8

#define NP_IPPROTO_ICMP 1
#define NP_IPPROTO_TCP 6
#define NP_IPPROTO_UDP 17
#define NP_IPPROTO_ICMPV6 58
#define NP_IPPROTO_HOPOPTS 0
#define NP_IPPROTO_ROUTING 43
#define NP_IPPROTO_FRAGMENT 44
#define NP_IPPROTO_AH 51
#define NP_IPPROTO_DSTOPTS 60
#define NP_IPPROTO_MH 135

/* What the parser learned about one frame. Addresses are kept in network
 * byte order; an IPv4 address sits in the first four bytes. */
struct np_packet {
	__u32 l3_off;
	__u32 l4_off;
	__u16 eth_proto;
	__u8 l3;       /* enum np_proto: IPV4, IPV6, ARP, OTHER or MALFORMED */
	__u8 l4;       /* enum np_proto: TCP, UDP, ICMP, ICMPV6 or NONE */
	__u8 ip_proto; /* transport protocol number, after IPv6 extension headers */
	__u8 vlan_tags;
	__u16 sport;   /* host byte order; ICMP: type in sport, code in dport */
	__u16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct np_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct np_ipv6_ext {
	__u8 nexthdr;
	__u8 len;
	__be16 frag_off; /* fragment header only: offset and flags */
};

static __always_inline __u16 np_ntohs(__be16 v)
{
	return __builtin_bswap16(v);
}

static __always_inline int np_parse_l4(struct np_ctx *c, struct np_packet *p, __u32 off,
				       __u32 end)
{
	p->l4_off = off;
	if (p->ip_proto == NP_IPPROTO_TCP) {
		struct tcphdr th;

		if (off + sizeof(th) > end || np_load(c, off, &th, sizeof(th)))
			return -1;
		if (th.doff < 5 || off + th.doff * 4 > end)
			return -1;
		p->sport = np_ntohs(th.source);
		p->dport = np_ntohs(th.dest);
		p->l4 = NP_PROTO_TCP;
	} else if (p->ip_proto == NP_IPPROTO_UDP) {
		struct udphdr uh;

		if (off + sizeof(uh) > end || np_load(c, off, &uh, sizeof(uh)))
			return -1;
		if (np_ntohs(uh.len) < sizeof(uh))
			return -1;
		p->sport = np_ntohs(uh.source);
		p->dport = np_ntohs(uh.dest);
		p->l4 = NP_PROTO_UDP;
	} else if ((p->ip_proto == NP_IPPROTO_ICMP && p->l3 == NP_PROTO_IPV4) ||
		   (p->ip_proto == NP_IPPROTO_ICMPV6 && p->l3 == NP_PROTO_IPV6)) {
		/* Every ICMP and ICMPv6 message has at least 8 bytes. */
		__u8 hdr[8];

		if (off + sizeof(hdr) > end || np_load(c, off, hdr, sizeof(hdr)))
			return -1;
		p->sport = hdr[0];
		p->dport = hdr[1];
		p->l4 = p->l3 == NP_PROTO_IPV4 ? NP_PROTO_ICMP : NP_PROTO_ICMPV6;
	}
	return 0;
}

static __always_inline int np_parse_ipv4(struct np_ctx *c, struct np_packet *p, __u32 off,
					 __u32 frame_len)
{
	struct iphdr ih;
	__u32 hlen, end;

	if (np_load(c, off, &ih, sizeof(ih)))
		return -1;
	hlen = ih.ihl * 4;
	end = off + np_ntohs(ih.tot_len);
	if (ih.version != 4 || hlen < sizeof(ih) || np_ntohs(ih.tot_len) < hlen ||
	    end > frame_len)
		return -1;
	p->l3 = NP_PROTO_IPV4;
	p->ip_proto = ih.protocol;
	__builtin_memcpy(p->saddr, &ih.saddr, 4);
	__builtin_memcpy(p->daddr, &ih.daddr, 4);
	/* A later fragment carries no transport header. */
	if (np_ntohs(ih.frag_off) & 0x1fff)
		return 0;
	return np_parse_l4(c, p, off + hlen, end);
}

static __always_inline int np_parse_ipv6(struct np_ctx *c, struct np_packet *p, __u32 off,
					 __u32 frame_len)
{
	struct ipv6hdr ih;
	struct np_ipv6_ext ext;
	__u32 end;
	__u8 next;
	int i;

	if (np_load(c, off, &ih, sizeof(ih)))
		return -1;
	end = off + sizeof(ih) + np_ntohs(ih.payload_len);
	if (ih.version != 6 || end > frame_len)
		return -1;
	p->l3 = NP_PROTO_IPV6;
	__builtin_memcpy(p->saddr, &ih.saddr, 16);
	__builtin_memcpy(p->daddr, &ih.daddr, 16);
	next = ih.nexthdr;
	off += sizeof(ih);
	for (i = 0; i < NP_MAX_IPV6_EXT_HDRS; i++) {
		switch (next) {
		case NP_IPPROTO_HOPOPTS:
		case NP_IPPROTO_ROUTING:
		case NP_IPPROTO_DSTOPTS:
		case NP_IPPROTO_MH:
		case NP_IPPROTO_FRAGMENT:
		case NP_IPPROTO_AH:
			break;
		default:
			p->ip_proto = next;
			return np_parse_l4(c, p, off, end);
		}
		if (off + sizeof(ext) > end || np_load(c, off, &ext, sizeof(ext)))
			return -1;
		if (next == NP_IPPROTO_FRAGMENT) {
			p->ip_proto = ext.nexthdr;
			/* A later fragment carries no transport header. */
			if (np_ntohs(ext.frag_off) & 0xfff8)
				return 0;
			off += 8;
		} else if (next == NP_IPPROTO_AH) {
			off += (ext.len + 2) * 4;
		} else {
			off += (ext.len + 1) * 8;
		}
		if (off > end)
			return -1;
		next = ext.nexthdr;
	}
	/* More extension headers than netprobe follows: IPv6, transport unknown. */
	p->ip_proto = next;
	return 0;
}

static __always_inline int np_parse_arp(struct np_ctx *c, struct np_packet *p, __u32 off,
					__u32 frame_len)
{
	struct arphdr ah;

	if (np_load(c, off, &ah, sizeof(ah)))
		return -1;
	if (off + sizeof(ah) + 2 * (ah.ar_hln + ah.ar_pln) > frame_len)
		return -1;
	p->l3 = NP_PROTO_ARP;
	/* Ethernet/IPv4 ARP: sender and target protocol addresses. */
	if (ah.ar_hln == 6 && ah.ar_pln == 4) {
		if (np_load(c, off + sizeof(ah) + 6, p->saddr, 4) ||
		    np_load(c, off + sizeof(ah) + 16, p->daddr, 4))
			return -1;
	}
	return 0;
}

/* Classifies the frame of `frame_len` bytes. Always fills p->l3 and p->l4;
 * a truncated or inconsistent header anywhere makes the frame MALFORMED. */
static __always_inline void np_parse(struct np_ctx *c, struct np_packet *p, __u32 frame_len)
{
	struct ethhdr eth;
	struct np_vlan_hdr vh;
	__u32 off = NP_ETH_HLEN;
	__u16 proto;
	int i, err = 0;

	__builtin_memset(p, 0, sizeof(*p));
	p->l4 = NP_PROTO_NONE;
	p->l3 = NP_PROTO_MALFORMED;
	if (np_load(c, 0, &eth, sizeof(eth)))
		return;
	proto = np_ntohs(eth.h_proto);
	for (i = 0; i < NP_MAX_VLAN_TAGS; i++) {
		if (proto != NP_ETH_P_8021Q && proto != NP_ETH_P_8021AD)
			break;
		if (np_load(c, off, &vh, sizeof(vh)))
			return;
		proto = np_ntohs(vh.proto);
		off += sizeof(vh);
		p->vlan_tags++;
	}
	p->eth_proto = proto;
	p->l3_off = off;
	if (proto == NP_ETH_P_IP)
		err = np_parse_ipv4(c, p, off, frame_len);
	else if (proto == NP_ETH_P_IPV6)
		err = np_parse_ipv6(c, p, off, frame_len);
	else if (proto == NP_ETH_P_ARP)
		err = np_parse_arp(c, p, off, frame_len);
	else
		p->l3 = NP_PROTO_OTHER;
	if (err) {
		p->l3 = NP_PROTO_MALFORMED;
		p->l4 = NP_PROTO_NONE;
	}
}

#endif /* NETPROBE_PARSE_H */
