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
	/* How long the frame must be for every field libpcap's program for
	 * a rule of these fields may read (NP_CUT: longer than any frame):
	 * a shorter frame is cut short, and a read past its end makes
	 * libpcap reject it, which `not` does not undo. */
	__u32 end;
};

#define NP_CUT 0xffffffffU

#define NP_ETH_P_RARP 0x8035
#define NP_IPPROTO_SCTP 132

static __always_inline bool np_has_ports(__u32 proto)
{
	return proto == NP_IPPROTO_TCP || proto == NP_IPPROTO_UDP || proto == NP_IPPROTO_SCTP;
}

/* The frame most rules meet, untagged IPv4 with a 20-byte header and
 * room for its ports, located as np_locate_fields() would under one bounds
 * check, where the frame is read in place (NP_FRAME_IN_PLACE): false for
 * any other frame. */
static __always_inline bool np_locate_ipv4(struct np_ctx *c, __u32 fields, struct np_field_at *f,
					   const bool want_end)
{
	const __u8 *h = np_ptr(c, 0, NP_ETH_HLEN + 24, NULL);

	if (!h || h[12] != NP_ETH_P_IP >> 8 || h[13] != (NP_ETH_P_IP & 0xff) || (h[14] & 0xf) != 5)
		return false;
	f->l3 = NP_MATCH_IPV4;
	f->family = 4;
	f->saddr = NP_ETH_HLEN + 12;
	f->daddr = NP_ETH_HLEN + 16;
	f->proto = h[NP_ETH_HLEN + 9];
	f->found = NP_SHAPE_PROTO | NP_SHAPE_L3;
	if (fields & (NP_SHAPE_SPORT | NP_SHAPE_DPORT) && np_has_ports(f->proto) &&
	    !((h[NP_ETH_HLEN + 6] & 0x1f) | h[NP_ETH_HLEN + 7]))
		f->ports = NP_ETH_HLEN + 20;
	if (want_end)
		f->end = f->ports ? NP_ETH_HLEN + 24 : NP_ETH_HLEN + 20;
	return true;
}

#ifndef NP_FRAME_IN_PLACE
#define NP_FRAME_IN_PLACE 0
#endif

/* Finds the fields of `fields` (NP_SHAPE_* bits: those some rule uses),
 * and if `want_end` (a constant: the direct path's, where clauses are
 * held) how long the frame must be not to be cut short. */
static __always_inline void np_locate_fields(struct np_ctx *c, __u32 fields, struct np_field_at *f,
					     const bool want_end)
{
	__u32 type, l = 12, v, frag, ihl;
	int i;

	__builtin_memset(f, 0, sizeof(*f));
	if (NP_FRAME_IN_PLACE && np_locate_ipv4(c, fields, f, want_end))
		return;
	if (want_end)
		f->end = NP_CUT;
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
		if (want_end)
			f->end = f->ports && f->ports + 4 > l + 20 ? f->ports + 4 : l + 20;
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
			if (want_end)
				f->end = f->ports || v == NP_IPPROTO_FRAGMENT ? l + 44 : l + 40;
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
		if (want_end)
			f->end = l + 28;
	} else {
		/* Nothing past the EtherType is read. */
		f->l3 = NP_MATCH_NONE;
		if (want_end)
			f->end = l;
		return;
	}
	f->found |= NP_SHAPE_L3;
}

/* Reads at most `max_words` (1, 2 or 4; a constant) 32-bit words of the
 * address at `off` into `addr`, as many whole words as the frame holds:
 * libpcap compares an address a word at a time and only the words a prefix
 * masks, so a frame that ends inside an address still matches a prefix
 * within the words it has. Returns the words read. */
static __always_inline __u32 np_load_addr_words(struct np_ctx *c, const __u32 max_words, __u32 off,
						__u32 addr[4])
{
	/* Read as 32-bit words, not byte by byte: the hooks' frames allow
	 * unaligned reads (XDP's packet, the socket filter's copy). */
	__u32 words = max_words, buf[4];
	const __u32 *a = NULL;

	for (; words > 0; words--) {
		a = np_ptr(c, off, words * 4, buf);
		if (a)
			break;
	}
	if (words >= 4)
		__builtin_memcpy(addr, a, 16);
	else if (words == 3)
		__builtin_memcpy(addr, a, 12);
	else if (words == 2)
		__builtin_memcpy(addr, a, 8);
	else if (words == 1)
		__builtin_memcpy(addr, a, 4);
	return words;
}

/* The words of the address at `off` for the frame's family (0: none), at
 * most `max_words` (a constant: 2 or 4) of an IPv6 one. */
static __always_inline __u32 np_load_frame_addr(struct np_ctx *c, __u32 family, __u32 off,
						__u64 addr[2], const __u32 max_words)
{
	if (family == 4)
		return np_load_addr_words(c, 1, off, (__u32 *)addr);
	if (family == 6)
		return np_load_addr_words(c, max_words, off, (__u32 *)addr);
	return 0;
}

/* The frame's fields as the direct path compares them; `words`: the
 * address words it has, as np_direct.meta's bytes 4 and 5 hold them. */
struct np_direct_fields {
	__u64 saddr[2], daddr[2];
	__u32 sport, dport, found, words;
};

/* Where clauses compare IPv6 addresses whole, the fields are read into
 * this per-CPU value and read back: the ways of reading two addresses of
 * either family, each cut short anywhere, are then one state for the
 * verifier to check the clause loop from, not 50. The loop without clauses
 * is short enough to be checked from each (it cost an IPv6 host rule 5 ns a
 * frame). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_direct_fields);
} direct_seen SEC(".maps");

/* The frame's l3, protocol, family, `found` fields and address words as
 * one word, to compare with np_direct.meta. */
static __always_inline __u64 np_direct_meta(const struct np_field_at *at,
					    const struct np_direct_fields *f)
{
	return at->l3 | (__u32)at->proto << 8 | (__u32)at->family << 16 |
	       (f->found & 0xff) << 24 | (__u64)f->words << 32;
}

/* 1 if `x` (64 bits) is not 0, else 0. */
#define NP_NONZERO(x) (((x) | -(x)) >> 63)
/* 1 if `x` (64 bits) is 0, else 0. */
#define NP_ZERO(x) (NP_NONZERO(x) ^ 1)
/* 1 if `x` > `y` (both 32 bits), else 0. */
#define NP_ABOVE(x, y) ((__u32)(((__u64)(y) - (__u64)(x)) >> 63))

/* The rule of the first direct clause the frame matches, comparing
 * `words` (a constant: 1 where no comparison masks more than an address's
 * first 64 bits, else 2) 64-bit words of each address. With `clauses` (a
 * constant: some comparison is negated or one of several), the clauses of
 * rules whose programs run instead on a frame `cut` short (0 or 1) are
 * skipped there; without, each comparison is a clause of its own, and
 * costs less. */
static __always_inline struct np_rule_ref np_direct_first(struct np_ctx *c,
							  const struct np_rules_config *cfg,
							  const struct np_field_at *at,
							  const __u32 words, const bool clauses,
							  __u32 cut)
{
	struct np_rule_ref best = { .rule = ~0U, .action = NP_ACTION_NONE };
	struct np_direct_fields local = { .found = at->found }, *f = &local;
	__u32 fields = cfg->fields, zero = 0, i, w, fail = 0, n;
	__u64 meta;

	if (words == 2 && clauses) {
		f = bpf_map_lookup_elem(&direct_seen, &zero);
		if (!f)
			return best;
		__builtin_memset(f, 0, sizeof(*f));
		f->found = at->found;
	}
	/* A word count n is n low bits in `words`. */
	if (fields & NP_SHAPE_SRC &&
	    (n = np_load_frame_addr(c, at->family, at->saddr, f->saddr, words * 2))) {
		f->found |= NP_SHAPE_SRC;
		f->words |= (1U << n) - 1;
	}
	if (fields & NP_SHAPE_DST &&
	    (n = np_load_frame_addr(c, at->family, at->daddr, f->daddr, words * 2))) {
		f->found |= NP_SHAPE_DST;
		f->words |= ((1U << n) - 1) << 8;
	}
	if (at->ports) {
		if (fields & NP_SHAPE_SPORT && np_load_be(c, at->ports, 2, &f->sport))
			f->found |= NP_SHAPE_SPORT;
		if (fields & NP_SHAPE_DPORT && np_load_be(c, at->ports + 2, 2, &f->dport))
			f->found |= NP_SHAPE_DPORT;
	}
	/* What was written is read back from memory. */
	if (words == 2 && clauses)
		asm volatile("" ::: "memory");
	meta = np_direct_meta(at, f);
	for (i = 0; i < NP_MAX_DIRECT; i++) {
		const struct np_direct *d = &cfg->direct[i];
		__u64 miss;

		if (i >= cfg->n_direct)
			break;
		/* Arithmetic, not a branch per field: the loop's body is
		 * short, and the verifier checks it once per iteration. */
		miss = (meta ^ d->meta) & d->meta_mask;
		for (w = 0; w < words; w++)
			miss |= ((f->saddr[w] & d->src_mask[w]) ^ d->src[w]) |
				((f->daddr[w] & d->dst_mask[w]) ^ d->dst[w]);
		if (!clauses) {
			if (miss || f->sport - d->sport_lo > d->sport_span ||
			    f->dport - d->dport_lo > d->dport_span)
				continue;
			best.rule = d->rule;
			best.action = d->action;
			break;
		}
		/* Modulo 2^16: a clause's `and not port N` is the range
		 * that wraps around N. */
		miss |= NP_ABOVE((f->sport - d->sport_lo) & 0xffff, d->sport_span) |
			NP_ABOVE((f->dport - d->dport_lo) & 0xffff, d->dport_span) |
			NP_ZERO((meta ^ d->unless) & d->unless_mask);
		/* The clause fails where the frame fails a comparison: all
		 * arithmetic, so that the verifier meets the same state at
		 * the top of every iteration. */
		fail |= (NP_NONZERO(miss) ^ d->negate) | (d->held & cut);
		if (!d->end)
			continue;
		if (!fail) {
			best.rule = d->rule;
			best.action = d->action;
			break;
		}
		fail = 0;
	}
	return best;
}

/* The direct path, with or without `clauses`, comparing `words` of each
 * address (constants, as for np_direct_first()); `*whole`: 1 if it
 * compared the clauses held for their rules' programs, on a frame not cut
 * short. */
static __always_inline struct np_rule_ref np_direct_path(struct np_ctx *c,
							 const struct np_rules_config *cfg, __u32 len,
							 __u32 *whole, const bool clauses,
							 const __u32 words)
{
	struct np_field_at at;
	__u32 cut;

	/* With clauses, the ports are located even where no comparison
	 * reads them: a held rule's program may (`not (port 53 and port
	 * 80)` compares nothing), and the frame must hold them not to be cut
	 * short. */
	np_locate_fields(c, clauses ? cfg->fields | NP_SHAPE_SPORT | NP_SHAPE_DPORT : cfg->fields,
			 &at, clauses);
	/* Read back from the stack: kept in registers, they were set again
	 * on each of the ways np_locate_fields() can end. */
	asm volatile("" : : "r"(&at) : "memory");
	cut = clauses && len < at.end;
	*whole = clauses && !cut;
	return np_direct_first(c, cfg, &at, words, clauses, cut);
}

/* The rule of the first direct clause (see struct np_direct) the frame of
 * `len` bytes matches; `*whole` as for np_direct_path(). */
static __always_inline struct np_rule_ref np_match_direct(struct np_ctx *c,
							  const struct np_rules_config *cfg,
							  __u32 len, __u32 *whole)
{
	__u32 flags = cfg->direct_flags;

	if (__builtin_expect(!flags, 1))
		return np_direct_path(c, cfg, len, whole, false, 1);
	if (flags == NP_DIRECT_WIDE)
		return np_direct_path(c, cfg, len, whole, false, 2);
	if (flags & NP_DIRECT_WIDE)
		return np_direct_path(c, cfg, len, whole, true, 2);
	return np_direct_path(c, cfg, len, whole, true, 1);
}

#endif /* NETPROBE_FIELDS_H */
