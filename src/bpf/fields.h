/* SPDX-License-Identifier: GPL-2.0-only */
/* Where the fields rules match on are in a frame, read as libpcap reads
 * them, and the direct match of a rule set small enough to need no tables
 * (struct np_direct). Needs parse.h first; rules.h includes it. */
#ifndef NETPROBE_FIELDS_H
#define NETPROBE_FIELDS_H

#include "netprobe.h"

/* Reads `size` (1 or 2) bytes at `off`, big-endian; false past the end. */
static __always_inline bool np_load_be(struct np_ctx *c, __u32 off, __u32 size, __u32 *out)
{
	__u8 buf[2], *b = np_ptr(c, off, size, buf);

	if (!b)
		return false;
	*out = size == 1 ? b[0] : (__u32)b[0] << 8 | b[1];
	return true;
}

/* Where the fields rules match on are in a frame. They are read where
 * libpcap's programs read them, with no check that the headers are well
 * formed, so that a rule the tables hold matches exactly what tcpdump's
 * filter for it matches; the one difference is that up to two VLAN tags
 * are looked through. A field the frame ends before is absent, and a shape
 * needing an absent field is never probed. */
struct np_field_at {
	__u32 found; /* NP_SHAPE_* bits of the fields present */
	__u8 l3;     /* enum np_match_l3 */
	__u8 proto;  /* IP protocol */
	__u8 family; /* of the addresses: 4 or 6, 0 for none */
	__u8 pad;
	/* Where the addresses and the ports are (0: no ports): small
	 * numbers, so that an offset read back from memory is known to be
	 * small. */
	__u8 saddr, daddr;
	__u16 ports;
};

#define NP_ETH_P_RARP 0x8035
#define NP_IPPROTO_SCTP 132

static __always_inline bool np_has_ports(__u32 proto)
{
	return proto == NP_IPPROTO_TCP || proto == NP_IPPROTO_UDP || proto == NP_IPPROTO_SCTP;
}

/* Finds the fields of `fields` (NP_SHAPE_* bits: those some rule uses). */
static __always_inline void np_locate_fields(struct np_ctx *c, __u32 fields, struct np_field_at *f)
{
	__u32 type, l = 12, v, frag, ihl;
	int i;

	__builtin_memset(f, 0, sizeof(*f));
	if (!np_load_be(c, l, 2, &type))
		return;
	for (i = 0; i < NP_MAX_VLAN_TAGS; i++) {
		if (type != NP_ETH_P_8021Q && type != NP_ETH_P_8021AD)
			break;
		l += 4;
		if (!np_load_be(c, l, 2, &type))
			return;
	}
	l += 2; /* the network header */
	if (type == NP_ETH_P_IP) {
		f->l3 = NP_MATCH_IPV4;
		f->family = 4;
		f->saddr = l + 12;
		f->daddr = l + 16;
		if (np_load_be(c, l + 9, 1, &v)) {
			f->proto = v;
			f->found |= NP_SHAPE_PROTO;
			/* A port is read only from a first fragment, after an
			 * IHL libpcap does not check. */
			if (fields & (NP_SHAPE_SPORT | NP_SHAPE_DPORT) && np_has_ports(v) &&
			    np_load_be(c, l + 6, 2, &frag) && !(frag & 0x1fff) &&
			    np_load_be(c, l, 1, &ihl))
				f->ports = l + (ihl & 0xf) * 4;
		}
	} else if (type == NP_ETH_P_IPV6) {
		f->l3 = NP_MATCH_IPV6;
		f->family = 6;
		f->saddr = l + 8;
		f->daddr = l + 24;
		if (np_load_be(c, l + 6, 1, &v)) {
			/* libpcap's protocol test looks through one fragment
			 * header; its port test does not. */
			if (np_has_ports(v))
				f->ports = l + 40;
			if (v != NP_IPPROTO_FRAGMENT || np_load_be(c, l + 40, 1, &v)) {
				f->proto = v;
				f->found |= NP_SHAPE_PROTO;
			}
		}
	} else if (type == NP_ETH_P_ARP || type == NP_ETH_P_RARP) {
		f->l3 = type == NP_ETH_P_ARP ? NP_MATCH_ARP : NP_MATCH_RARP;
		f->family = 4;
		f->saddr = l + 14;
		f->daddr = l + 24;
	} else {
		return;
	}
	f->found |= NP_SHAPE_L3;
}

/* The first direct alternative (see struct np_direct) the frame matches. */
static __always_inline struct np_rule_ref np_match_direct(struct np_ctx *c,
							  const struct np_rules_config *cfg)
{
	struct np_rule_ref best = { .rule = ~0U, .action = NP_ACTION_NONE };
	__u32 fields = cfg->fields, saddr = 0, daddr = 0, sport = 0, dport = 0, found, i, w;
	struct np_field_at at;
	__u32 *a;

	np_locate_fields(c, fields, &at);
	/* Read back from the stack: kept in registers, they were set again
	 * on each of the ways np_locate_fields() can end. */
	asm volatile("" : : "r"(&at) : "memory");
	found = at.found;
	/* Only IPv4 addresses: a direct rule set has no IPv6 prefix. */
	if (at.family == 4) {
		if (fields & NP_SHAPE_SRC && (a = np_ptr(c, at.saddr, 4, &w))) {
			saddr = *a;
			found |= NP_SHAPE_SRC;
		}
		if (fields & NP_SHAPE_DST && (a = np_ptr(c, at.daddr, 4, &w))) {
			daddr = *a;
			found |= NP_SHAPE_DST;
		}
	}
	if (at.ports) {
		if (fields & NP_SHAPE_SPORT && np_load_be(c, at.ports, 2, &sport))
			found |= NP_SHAPE_SPORT;
		if (fields & NP_SHAPE_DPORT && np_load_be(c, at.ports + 2, 2, &dport))
			found |= NP_SHAPE_DPORT;
	}
	for (i = 0; i < NP_MAX_DIRECT; i++) {
		const struct np_direct *d = &cfg->direct[i];

		if (i >= cfg->n_direct)
			break;
		/* Arithmetic, not a branch per field: the loop's body is
		 * short, and the verifier checks it once per iteration. */
		if ((d->need & ~found) | ((d->l3 ^ at.l3) & d->l3_mask) |
		    ((d->proto ^ at.proto) & d->proto_mask) | ((saddr & d->src_mask) ^ d->src) |
		    ((daddr & d->dst_mask) ^ d->dst) ||
		    sport - d->sport_lo > d->sport_span || dport - d->dport_lo > d->dport_span)
			continue;
		best.rule = d->rule;
		best.action = d->action;
		break;
	}
	return best;
}

#endif /* NETPROBE_FIELDS_H */
