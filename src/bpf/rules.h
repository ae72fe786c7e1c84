/* SPDX-License-Identifier: GPL-2.0-only */
/* The rule matcher shared by every hook that filters frames. The tables
 * are written by src/filter/tables.rs from what src/filter/compile.rs compiles; see
 * there for why this is one trie lookup per field plus one hash lookup per
 * shape, whatever the number of rules. Needs parse.h first. */
#ifndef NETPROBE_RULES_H
#define NETPROBE_RULES_H

#include "netprobe.h"

/* Capacities are set by user space before load. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct np_addr_key);
	__type(value, __u32);
} addr_trie SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct np_port_key);
	__type(value, __u32);
} port_trie SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct np_shape_key);
	__type(value, struct np_rule_ref);
} shape_table SEC(".maps");

/* One config per generation. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct np_rules_config);
} rules_config SEC(".maps");

/* The generation in force: 0 or 1. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rules_active SEC(".maps");

/* Hits per rule: generation * max_rules + rule index. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct np_counter);
} rule_stats SEC(".maps");

/* Rules per generation: the stride of rule_stats. */
const volatile __u32 max_rules = 1;

/* The trie class of the address at `off`: 0 when no rule prefix covers it. */
static __always_inline __u32 np_addr_class(struct np_ctx *c, const struct np_packet *p, __u8 gen,
					   __u32 off)
{
	struct np_addr_key key = {
		.prefixlen = 16 + (p->family == 4 ? 32 : 128),
		.gen = gen,
		.family = p->family,
	};
	__u32 *class;

	if (np_load_addr(c, p, off, key.addr))
		return 0;
	class = bpf_map_lookup_elem(&addr_trie, &key);
	return class ? *class : 0;
}

static __always_inline __u32 np_port_class(struct np_ctx *c, __u8 gen, __u32 off)
{
	struct np_port_key key = { .prefixlen = 24, .gen = gen };
	__u8 buf[2], *port = np_ptr(c, off, 2, buf);
	__u32 *class;

	if (!port)
		return 0;
	key.port[0] = port[0];
	key.port[1] = port[1];
	class = bpf_map_lookup_elem(&port_trie, &key);
	return class ? *class : 0;
}

/* The first rule the packet matches, counted in rule_stats; NONE if none. */
static __always_inline __u32 np_match(struct np_ctx *c, const struct np_packet *p, __u32 len)
{
	__u32 zero = 0, src = 0, dst = 0, sport = 0, dport = 0, gen, fields, idx, i;
	struct np_rule_ref best = { .rule = ~0U, .action = NP_ACTION_NONE };
	struct np_rules_config *cfg;
	struct np_shape_key key;
	struct np_rule_ref *ref;
	struct np_counter *hits;
	__u32 *active;

	active = bpf_map_lookup_elem(&rules_active, &zero);
	if (!active)
		return NP_ACTION_NONE;
	gen = *active & 1;
	cfg = bpf_map_lookup_elem(&rules_config, &gen);
	if (!cfg || !cfg->n_shapes)
		return NP_ACTION_NONE;
	fields = cfg->fields;
	if (p->family) {
		if (fields & NP_SHAPE_SRC)
			src = np_addr_class(c, p, gen, np_saddr_off(p));
		if (fields & NP_SHAPE_DST)
			dst = np_addr_class(c, p, gen, np_daddr_off(p));
	}
	if (p->l4 == NP_L4_TCP || p->l4 == NP_L4_UDP) {
		if (fields & NP_SHAPE_SPORT)
			sport = np_port_class(c, gen, p->l4_off);
		if (fields & NP_SHAPE_DPORT)
			dport = np_port_class(c, gen, p->l4_off + 2);
	}
	for (i = 0; i < NP_MAX_SHAPES; i++) {
		__u8 shape;

		if (i >= cfg->n_shapes)
			break;
		shape = cfg->shape[i];
		key.gen = gen;
		key.shape = shape;
		key.l3 = shape & NP_SHAPE_L3 ? p->l3 : 0;
		key.l4 = shape & NP_SHAPE_L4 ? p->l4 : 0;
		key.src = shape & NP_SHAPE_SRC ? src : 0;
		key.dst = shape & NP_SHAPE_DST ? dst : 0;
		key.sport = shape & NP_SHAPE_SPORT ? sport : 0;
		key.dport = shape & NP_SHAPE_DPORT ? dport : 0;
		ref = bpf_map_lookup_elem(&shape_table, &key);
		if (ref && ref->rule < best.rule)
			best = *ref;
	}
	if (best.action == NP_ACTION_NONE)
		return NP_ACTION_NONE;
	idx = gen * max_rules + best.rule;
	hits = bpf_map_lookup_elem(&rule_stats, &idx);
	if (hits) {
		hits->packets++;
		hits->bytes += len;
	}
	return best.action;
}

#endif /* NETPROBE_RULES_H */
