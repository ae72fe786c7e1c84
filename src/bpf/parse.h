/* SPDX-License-Identifier: GPL-2.0-only */
/* Frame classification shared by every hook that sees whole frames.
 *
 * The including program defines `struct np_ctx` and
 *   static __always_inline void *np_ptr(struct np_ctx *c, __u32 off, __u32 len, void *buf);
 * which returns a pointer to `len` readable bytes at offset `off`, or NULL
 * when the frame is shorter. XDP returns a pointer into the frame itself;
 * a socket filter, which has no direct packet access, copies into `buf`
 * (at least `len` bytes) with bpf_skb_load_bytes(). Every read goes through
 * np_ptr(), so the parser never reads past the frame's end. */
#ifndef NETPROBE_PARSE_H
#define NETPROBE_PARSE_H

#include "netprobe.h"

#define NP_ETH_P_IP 0x0800
#define NP_ETH_P_ARP 0x0806
#define NP_ETH_P_IPV6 0x86DD
#define NP_ETH_P_8021Q 0x8100
#define NP_ETH_P_8021AD 0x88A8
#define NP_ETH_ADDRS 12 /* destination and source MAC */
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

/* Header fetch: a typed pointer to the header of type T at `off`. */
#define NP_HDR(c, off, T, buf) ((T *)np_ptr((c), (off), sizeof(T), (buf)))

/* What the parser learned about one frame: its classes and where its
 * headers start, so that a reader (a rule, an event) fetches only the fields
 * it needs. Offsets are valid as far as the classes say parsing got. */
struct np_packet {
	__u8 l3;       /* enum np_l3 */
	__u8 l4;       /* enum np_l4 */
	__u8 ip_proto; /* transport protocol number, after IPv6 extension headers */
	__u8 vlan_tags;
	__u8 family;   /* 4 or 6 when np_addr_offsets() can name addresses, else 0 */
	__u8 ip_frag;  /* an IPv4 packet with MF set or an IPv6 fragment header */
	__u16 l3_off;
	__u16 l4_off;
};

struct np_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* The first bytes of every IPv6 extension header netprobe follows; the
 * fragment header's offset field sits in bytes 2-3. */
struct np_ipv6_ext {
	__u8 nexthdr;
	__u8 len;
	__be16 frag_off;
};

/* The first 8 bytes of an ICMP or ICMPv6 message (all have at least 8). */
struct np_icmp_hdr {
	__u8 type;
	__u8 code;
	__u8 rest[6];
};

static __always_inline __u16 np_ntohs(__be16 v)
{
	return __builtin_bswap16(v);
}

/* Parses the transport header at `off`; `end` is where the IP packet ends. */
static __always_inline int np_parse_l4(struct np_ctx *c, struct np_packet *p, __u32 off,
				       __u32 end)
{
	p->l4_off = off;
	if (p->ip_proto == NP_IPPROTO_TCP) {
		struct tcphdr buf, *th = NP_HDR(c, off, struct tcphdr, &buf);

		if (!th || off + sizeof(*th) > end || th->doff < 5 || off + th->doff * 4 > end)
			return -1;
		p->l4 = NP_L4_TCP;
	} else if (p->ip_proto == NP_IPPROTO_UDP) {
		struct udphdr buf, *uh = NP_HDR(c, off, struct udphdr, &buf);

		if (!uh || off + sizeof(*uh) > end || np_ntohs(uh->len) < sizeof(*uh))
			return -1;
		p->l4 = NP_L4_UDP;
	} else if ((p->ip_proto == NP_IPPROTO_ICMP && p->l3 == NP_L3_IPV4) ||
		   (p->ip_proto == NP_IPPROTO_ICMPV6 && p->l3 == NP_L3_IPV6)) {
		struct np_icmp_hdr buf, *ih = NP_HDR(c, off, struct np_icmp_hdr, &buf);

		if (!ih || off + sizeof(*ih) > end)
			return -1;
		p->l4 = p->l3 == NP_L3_IPV4 ? NP_L4_ICMP : NP_L4_ICMPV6;
	}
	return 0;
}

static __always_inline int np_parse_ipv4(struct np_ctx *c, struct np_packet *p, __u32 off,
					 __u32 frame_len)
{
	struct iphdr buf, *ih = NP_HDR(c, off, struct iphdr, &buf);
	__u32 hlen, tot_len;

	if (!ih)
		return -1;
	hlen = ih->ihl * 4;
	tot_len = np_ntohs(ih->tot_len);
	if (ih->version != 4 || hlen < sizeof(*ih) || tot_len < hlen || off + tot_len > frame_len)
		return -1;
	p->l3 = NP_L3_IPV4;
	p->family = 4;
	p->ip_proto = ih->protocol;
	p->ip_frag = (np_ntohs(ih->frag_off) & 0x2000) != 0;
	/* A later fragment carries no transport header. */
	if (np_ntohs(ih->frag_off) & 0x1fff)
		return 0;
	return np_parse_l4(c, p, off + hlen, off + tot_len);
}

static __always_inline int np_parse_ipv6(struct np_ctx *c, struct np_packet *p, __u32 off,
					 __u32 frame_len)
{
	struct ipv6hdr buf, *ih = NP_HDR(c, off, struct ipv6hdr, &buf);
	struct np_ipv6_ext ext_buf, *ext;
	__u32 end;
	__u8 next;
	int i;

	if (!ih)
		return -1;
	end = off + sizeof(*ih) + np_ntohs(ih->payload_len);
	if (ih->version != 6 || end > frame_len)
		return -1;
	p->l3 = NP_L3_IPV6;
	p->family = 6;
	next = ih->nexthdr;
	off += sizeof(*ih);
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
		ext = NP_HDR(c, off, struct np_ipv6_ext, &ext_buf);
		if (!ext || off + sizeof(*ext) > end)
			return -1;
		if (next == NP_IPPROTO_FRAGMENT) {
			/* The whole 8-byte header, before its offset means anything. */
			if (off + 8 > end)
				return -1;
			p->ip_frag = 1;
			p->ip_proto = ext->nexthdr;
			/* A later fragment carries no transport header. */
			if (np_ntohs(ext->frag_off) & 0xfff8)
				return 0;
			off += 8;
		} else if (next == NP_IPPROTO_AH) {
			off += (ext->len + 2) * 4;
		} else {
			off += (ext->len + 1) * 8;
		}
		if (off > end)
			return -1;
		next = ext->nexthdr;
	}
	/* More extension headers than netprobe follows: IPv6, transport unknown. */
	p->ip_proto = next;
	return 0;
}

static __always_inline int np_parse_arp(struct np_ctx *c, struct np_packet *p, __u32 off,
					__u32 frame_len)
{
	struct arphdr buf, *ah = NP_HDR(c, off, struct arphdr, &buf);

	if (!ah || off + sizeof(*ah) + 2 * (ah->ar_hln + ah->ar_pln) > frame_len)
		return -1;
	p->l3 = NP_L3_ARP;
	if (ah->ar_hln == 6 && ah->ar_pln == 4)
		p->family = 4;
	return 0;
}

/* Where the source and destination addresses are: IP source/destination,
 * or the sender/target protocol address of Ethernet/IPv4 ARP. Only for a
 * packet whose family is set. */
static __always_inline __u32 np_saddr_off(const struct np_packet *p)
{
	if (p->l3 == NP_L3_ARP)
		return p->l3_off + sizeof(struct arphdr) + 6;
	return p->l3_off + (p->family == 4 ? 12 : 8);
}

static __always_inline __u32 np_daddr_off(const struct np_packet *p)
{
	if (p->l3 == NP_L3_ARP)
		return p->l3_off + sizeof(struct arphdr) + 16;
	return p->l3_off + (p->family == 4 ? 16 : 24);
}

/* Copies the address at `off` (4 or 16 bytes by family) into `out`. */
static __always_inline int np_load_addr(struct np_ctx *c, const struct np_packet *p, __u32 off,
					__u8 out[16])
{
	__u8 buf[16];
	void *a;

	if (p->family == 4) {
		a = np_ptr(c, off, 4, buf);
		if (!a)
			return -1;
		__builtin_memcpy(out, a, 4);
	} else {
		a = np_ptr(c, off, 16, buf);
		if (!a)
			return -1;
		__builtin_memcpy(out, a, 16);
	}
	return 0;
}

/* Classifies the frame of `frame_len` bytes. Always sets p->l3 and p->l4;
 * a truncated or inconsistent header anywhere makes the frame MALFORMED. */
static __always_inline void np_parse(struct np_ctx *c, struct np_packet *p, __u32 frame_len)
{
	struct ethhdr eth_buf, *eth;
	struct np_vlan_hdr vh_buf, *vh;
	__u32 off = NP_ETH_HLEN;
	__u16 proto;
	int i, err = 0;

	p->l3 = NP_L3_MALFORMED;
	p->l4 = NP_L4_NONE;
	p->vlan_tags = 0;
	p->ip_proto = 0;
	p->family = 0;
	p->ip_frag = 0;
	eth = NP_HDR(c, 0, struct ethhdr, &eth_buf);
	if (!eth)
		return;
	proto = np_ntohs(eth->h_proto);
	for (i = 0; i < NP_MAX_VLAN_TAGS; i++) {
		if (proto != NP_ETH_P_8021Q && proto != NP_ETH_P_8021AD)
			break;
		vh = NP_HDR(c, off, struct np_vlan_hdr, &vh_buf);
		if (!vh)
			return;
		proto = np_ntohs(vh->proto);
		off += sizeof(*vh);
		p->vlan_tags++;
	}
	p->l3_off = off;
	if (proto == NP_ETH_P_IP)
		err = np_parse_ipv4(c, p, off, frame_len);
	else if (proto == NP_ETH_P_IPV6)
		err = np_parse_ipv6(c, p, off, frame_len);
	else if (proto == NP_ETH_P_ARP)
		err = np_parse_arp(c, p, off, frame_len);
	else
		p->l3 = NP_L3_OTHER;
	if (err) {
		p->l3 = NP_L3_MALFORMED;
		p->l4 = NP_L4_NONE;
		p->family = 0;
	}
}

#endif /* NETPROBE_PARSE_H */
