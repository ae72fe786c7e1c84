/* SPDX-License-Identifier: GPL-2.0-only */
/* The rule matcher shared by every hook that filters frames. The tables
 * are written by src/filter/tables.rs from what src/filter/compile.rs compiles; see
 * there for why this is one lookup per field (an array slot and blocks
 * by the next bytes below it, past them a hash lookup per prefix length
 * in use there for addresses, an array for
 * ports, and an array row where a large shape has classes of its own for
 * the field) plus one lookup (an array cell or a hash entry) per shape the
 * packet can match, whatever the number of rules; a rule set of a few
 * alternatives is instead compared field by field (fields.h); rules the
 * tables cannot hold run as libpcap programs (cbpf.h). Needs parse.h first. */
#ifndef NETPROBE_RULES_H
#define NETPROBE_RULES_H

#include "netprobe.h"

/* Whether the hook takes the direct path (fields.h) for a rule set that
 * has one; the tables always hold the whole rule set too. */
#ifndef NP_DIRECT_MATCH
#define NP_DIRECT_MATCH 0
#endif

/* How the tables look up a frame's candidate shapes: 1, the first two
 * inline and the rest in bpf_loop() steps, which the verifier checks once;
 * 0, in a loop, less code (the socket filter's limit), which the verifier
 * checks once per shape for each state the fields leave: 520,000 of the
 * 855,000 instructions it checked in the XDP program, a second of loading.
 * A step for every shape cost a frame of two candidates about 10 ns where
 * returns are mitigated. */
#ifndef NP_SHAPE_STEPS
#define NP_SHAPE_STEPS 0
#endif

/* How the source and destination addresses are classified: 1, by one copy
 * of the code in a loop, each hash probe a bpf_loop() step (the socket
 * filter, whose program must fit the 20 KiB of socket option memory Linux
 * 6.1 allows); 0, by a copy each, the first probe inline, which saves a
 * frame the loop's few instructions and a call. */
#ifndef NP_ADDR_LOOP
#define NP_ADDR_LOOP 0
#endif
#if NP_ADDR_LOOP
#define NP_ADDR_UNROLL _Pragma("clang loop unroll(disable)")
#else
#define NP_ADDR_UNROLL _Pragma("unroll")
#endif

#include "cbpf.h"
#include "fields.h"

/* Capacities are set by user space before load. */
/* Address slots: (generation * 2 + family index) * 65536 + leading 16 bits. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_addr_slot);
} addr_slots SEC(".maps");

/* Blocks by the address's next byte below a slot or an entry:
 * (generation * blocks per generation + block) * 256 + that byte, the
 * first part of which the slot or entry holds. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32); /* NP_ADDR_NEXT, NP_ADDR_HASHED */
} addr_blocks SEC(".maps");

/* Rule prefixes below an entry or slot that names no block (past /64, or
 * past the blocks the tables hold), exactly: key -> class. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct np_addr_key);
	__type(value, __u32);
} addr_prefixes SEC(".maps");

/* Port classes by direct index: generation * 65536 + port. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} port_class SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct np_shape_key);
	__type(value, struct np_rule_ref);
} shape_table SEC(".maps");

/* Rules by dense cell: generation * max_cells + cell (see np_rules_config). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_rule_ref);
} dense_cells SEC(".maps");

/* Shape classes by address class: generation * max_addr_rows + class. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_class_row);
} addr_rows SEC(".maps");

/* The classes of a port, where shapes have port classes of their own:
 * generation * 65536 + port; column 0 is port_class's. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_class_row);
} port_rows SEC(".maps");

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
/* Dense cells per generation. */
const volatile __u32 max_cells = 1;
/* Rows of addr_rows per generation, and the fields (bit f: src, dst,
 * sport, dport) whose row is looked up: a constant, so that the verifier
 * removes the lookups no shape needs. */
const volatile __u32 max_addr_rows = 1;
const volatile __u32 row_fields = 0;

/* Bit index of a 64-bit word with one bit set, by de Bruijn multiply. */
static const __u8 np_bit_index[64] = {
	0,  1,	48, 2,	57, 49, 28, 3,	61, 58, 50, 42, 38, 29, 17, 4,	62, 55, 59, 36, 53, 51,
	43, 22, 45, 39, 33, 30, 24, 18, 12, 5,	63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21,
	44, 32, 23, 11, 46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9,	13, 8,	7,  6,
};

/* A search of the hash for the longest rule prefix covering an address,
 * one step per prefix length, all but the first in bpf_loop(): the
 * verifier checks those once, where an unrolled loop made it check each
 * length on every path. */
struct np_addr_probe {
	struct np_addr_key key;
	__u32 addr[4];
	__u32 gen;
	__u32 fam;    /* 0: IPv4, 1: IPv6 */
	__u32 words;  /* 32-bit words of the address in the frame */
	__u32 longer; /* the lengths to try (bits of addr_len[fam]) */
	__u32 class;  /* the longest found so far */
};

/* Probes length j of the lengths to try, where `p->longer` has it: 1 when
 * the search is over (found, or no longer length left), else 0. */
static __always_inline long np_addr_probe_len(struct np_addr_probe *p,
					      const struct np_rules_config *cfg, __u64 j)
{
	const __u32 *mask;
	__u32 *found, len;

	if (j >= NP_ADDR_LENS || !(p->longer >> j))
		return 1;
	if (!(p->longer >> j & 1))
		return 0;
	len = cfg->addr_len[p->fam & 1][j];
	if (len > p->words * 32)
		return 0;
	mask = cfg->addr_mask[p->fam & 1][j];
	p->key.len = len;
	*(__u32 *)&p->key.addr[0] = p->addr[0] & mask[0];
	*(__u32 *)&p->key.addr[4] = p->addr[1] & mask[1];
	*(__u32 *)&p->key.addr[8] = p->addr[2] & mask[2];
	*(__u32 *)&p->key.addr[12] = p->addr[3] & mask[3];
	found = bpf_map_lookup_elem(&addr_prefixes, &p->key);
	if (!found)
		return 0;
	p->class = *found;
	return 1;
}

/* One bpf_loop() step: its context is on the stack, which holds no map
 * pointer, so the step finds the config again. */
static long np_addr_probe_step(__u64 j, void *data)
{
	struct np_addr_probe *p = data;
	const struct np_rules_config *cfg = bpf_map_lookup_elem(&rules_config, &p->gen);

	if (!cfg)
		return 1;
	return np_addr_probe_len(p, cfg, j);
}

/* The longest rule prefix in the hash covering the `words` words of
 * `p->addr`, of the lengths of `longer`, if any; else `class`. The rest of
 * the state is set only here: zeroing it cost every address a few stores,
 * and the address is read into it, which keeps the stack of XDP's
 * np_match_rules() within what 6.1 allows its chain of calls (512 bytes). */
static __always_inline __u32 np_addr_longer(struct np_addr_probe *p,
					    const struct np_rules_config *cfg, __u32 gen,
					    const __u32 family, __u32 words, __u32 longer,
					    __u32 class)
{
	__u64 low;

	__builtin_memset(&p->key, 0, sizeof(p->key));
	/* An IPv4 address is one word; the masks clear the others. */
	if (family == 4)
		p->addr[1] = p->addr[2] = p->addr[3] = 0;
	p->key.gen = gen;
	p->key.family = family;
	p->gen = gen;
	p->fam = family == 6;
	p->words = words;
	p->longer = longer;
	p->class = class;
	/* The longest length inline, the rest in steps: most entries probe
	 * one length (hosts below a /64, a /24), and a bpf_loop() call cost
	 * such a frame 7 to 13 ns where returns are mitigated. Not where the
	 * addresses take one copy of the code (NP_ADDR_LOOP): 1.3 KiB of the
	 * socket filter's program. */
	if (!NP_ADDR_LOOP) {
		low = longer & -longer;
		if (np_addr_probe_len(p, cfg,
				      np_bit_index[(low * 0x03f79d71b4cb0a89ULL) >> 58] &
					      (NP_ADDR_LENS - 1)))
			return p->class;
		p->longer = longer ^ low;
		if (!p->longer)
			return p->class;
	}
	bpf_loop(NP_ADDR_LENS, np_addr_probe_step, p, 0);
	return p->class;
}

/* The class of the address of `family` at `off`: that of the longest
 * rule prefix covering it, 0 when none does. libpcap compares an address
 * a 32-bit word at a time and only the words a prefix masks, so a frame
 * that ends inside an address still matches a prefix within the words it
 * has: longer prefixes are not tried. */
static __always_inline __u32 np_addr_class(struct np_ctx *c, const struct np_rules_config *cfg,
					   __u32 gen, const __u32 family, __u32 off)
{
	const struct np_addr_slot *slot;
	struct np_addr_probe p;
	__u32 *addr = p.addr, idx, words, i, class, longer, next, *e;
	const __u8 *bytes = (const __u8 *)addr;

	/* Words past those read are masked off, but must be written. */
	if (family == 6)
		__builtin_memset(addr, 0, sizeof(p.addr));
	words = np_load_addr_words(c, family == 6 ? 4 : 1, off, addr);
	if (!words)
		return 0;
	idx = (gen * 2 + (family == 6)) * NP_ADDR_SLOTS + (__u32)bytes[0] * 256 + bytes[1];
	slot = bpf_map_lookup_elem(&addr_slots, &idx);
	if (!slot)
		return 0;
	class = slot->class;
	longer = slot->longer;
	next = slot->block;
	/* Cut after an IPv6 address's first word: the walk would end on an
	 * entry naming a block, which holds no class, and the hash holds
	 * every IPv6 prefix of up to /32 too. */
	if (next && family == 6 && words == 1) {
		longer = ~0U;
		next = 0;
	}
	if (next) {
		/* The entry walked to: each names where its block starts in
		 * addr_blocks, so that a level is an add and a lookup. */
		for (i = 0; i < (family == 6 ? NP_ADDR_LEVELS6 : NP_ADDR_LEVELS4); i++) {
			if (!(next & NP_ADDR_NEXT))
				break;
			idx = (next & ~NP_ADDR_NEXT) + bytes[2 + i];
			e = bpf_map_lookup_elem(&addr_blocks, &idx);
			if (!e)
				return 0;
			next = *e;
		}
		class = next & ~NP_ADDR_HASHED;
		longer = 0;
		if (next & NP_ADDR_HASHED)
			longer = cfg->addr_below[family == 6][(i - 1) & (NP_ADDR_BELOW - 1)];
	}
	if (longer)
		return np_addr_longer(&p, cfg, gen, family, words, longer, class);
	return class;
}

/* The same for a family known only at run time (0: no addresses); each
 * family gets its own copy, with its sizes constant. */
static __always_inline __u32 np_addr_class_of(struct np_ctx *c,
					      const struct np_rules_config *cfg, __u32 gen,
					      __u32 family, __u32 off)
{
	if (family == 4)
		return np_addr_class(c, cfg, gen, 4, off);
	if (family == 6)
		return np_addr_class(c, cfg, gen, 6, off);
	return 0;
}

/* What the tables match a frame on: where its fields are, and the classes
 * of src, dst, sport, dport: the rule set's in column 0, then those of the
 * shapes with classes of their own, and which of those shapes the classes
 * leave in play (np_class_row.shapes; stale for a field the frame lacks,
 * whose shapes are no candidates). */
struct np_fields {
	__u64 shapes[NP_CLASS_FIELDS];
	/* The search of the candidate shapes, one lookup per shape: those
	 * left, and the first rule found. */
	__u64 cand;
	struct np_rule_ref best;
	struct np_field_at at;
	__u32 class[NP_CLASS_FIELDS][NP_COLUMNS];
};

/* The class of the port at `off` in field `f` (2: sport, 3: dport) of
 * the frame's classes, and its bit in `found` if it has one. Where shapes
 * have port classes of their own, one lookup reads them all. */
static __always_inline void np_port_classes(struct np_ctx *c, __u8 gen, __u32 off,
					    struct np_fields *fp, __u32 f)
{
	const struct np_class_row *row;
	__u32 port, *class;

	if (!np_load_be(c, off, 2, &port))
		return;
	port += gen * NP_PORTS;
	if (row_fields >> f & 1) {
		row = bpf_map_lookup_elem(&port_rows, &port);
		if (!row)
			return;
		__builtin_memcpy(fp->class[f], row->class, sizeof(row->class));
		fp->shapes[f] = row->shapes[f & 1];
	} else {
		class = bpf_map_lookup_elem(&port_class, &port);
		if (!class)
			return;
		fp->class[f][0] = *class;
	}
	if (fp->class[f][0])
		fp->at.found |= f == 2 ? NP_SHAPE_SPORT : NP_SHAPE_DPORT;
}

static __always_inline void np_match_fields(struct np_ctx *c, __u32 gen,
					    const struct np_rules_config *cfg, struct np_fields *f)
{
	__u32 fields = cfg->fields, ports;

	/* Not the shape columns: `found` says which are this frame's. */
	f->class[0][0] = f->class[1][0] = f->class[2][0] = f->class[3][0] = 0;
	/* Where programs are held, the ports are located even where no
	 * rule reads them, for how long the frame must be: a held rule's
	 * program may read them. */
	np_locate_fields(c, cfg->held_programs ? fields | NP_SHAPE_SPORT | NP_SHAPE_DPORT : fields,
			 &f->at, true);
	/* Read back from memory: kept in registers, the fields were set
	 * again on each of the ways np_locate_fields() can end. */
	asm volatile("" ::: "memory");
	ports = f->at.ports;
	if (!ports) {
		/* A shape of clauses reads the port columns of a frame without
		 * ports as class 0. */
		if (row_fields & 0xc)
			__builtin_memset(&f->class[2][1], 0,
					 sizeof(f->class[0]) * 2 - sizeof(f->class[0][0]));
		return;
	}
	if (fields & NP_SHAPE_SPORT)
		np_port_classes(c, gen, ports, f, 2);
	if (fields & NP_SHAPE_DPORT)
		np_port_classes(c, gen, ports + 2, f, 3);
}

/* The fields are read into a per-CPU map value and read back from it: the
 * verifier does not follow values through map memory, so the shape lookups
 * below see them as plain numbers and are checked once, not once per way
 * np_match_fields() can end. That costs a few loads; a global function
 * boundary, which does the same, cost ten nanoseconds a packet. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_fields);
} fields_seen SEC(".maps");

/* Fills the shape columns of address field `f` (0: src, 1: dst) from its
 * row; class 0, an address no rule prefix covers, has none to look up
 * (row 0 is empty). */
static __always_inline void np_addr_columns(struct np_fields *fp, __u32 gen, __u32 f)
{
	const struct np_class_row *row;
	__u32 idx;

	if (!(row_fields >> f & 1))
		return;
	idx = gen * max_addr_rows + fp->class[f][0];
	row = fp->class[f][0] ? bpf_map_lookup_elem(&addr_rows, &idx) : NULL;
	if (row) {
		__builtin_memcpy(&fp->class[f][1], &row->class[1], sizeof(row->class) - 4);
		fp->shapes[f] = row->shapes[f & 1];
	} else {
		__builtin_memset(&fp->class[f][1], 0, sizeof(row->class) - 4);
		fp->shapes[f] = 0;
	}
}

/* A shape's lookup is checked by the verifier once for each path through
 * it, so its tests are arithmetic, not branches: all ones
 * if bit `bit` of `x` is set, else 0. The empty asm keeps the compiler
 * from turning it back into a branch. */
static __always_inline __u32 np_mask(__u32 x, __u32 bit)
{
	__u32 m = x >> bit & 1;

	asm volatile("" : "+r"(m));
	return -m;
}

/* The shapes (bit i: shape i) that a frame can match: it has their
 * fields, and a rule of theirs covers its l3, protocol and, where the rows
 * say, classes. Fields whose rows are not read are left out (row_fields is
 * constant at load). */
static __always_inline __u64 np_candidate_shapes(const struct np_rules_config *cfg,
						 const struct np_fields *fp)
{
	__u64 cand = cfg->by_found[fp->at.found & ((1 << NP_FIELDS) - 1)] &
		     cfg->by_l3[fp->at.l3 & 3] & cfg->by_proto[fp->at.proto];
	int f;

	for (f = 0; f < NP_CLASS_FIELDS; f++)
		if (row_fields >> f & 1)
			cand &= ~cfg->keyed[f] | fp->shapes[f];
	return cand;
}

/* Looks up the lowest candidate left and keeps its rule if it comes
 * first; 1 when no candidate is left. */
static __always_inline long np_shape_probe(const struct np_rules_config *cfg,
					   struct np_fields *fp, __u32 gen)
{
	__u32 i, src, dst, sport, dport;
	struct np_shape_key key;
	struct np_rule_ref *ref;
	const __u8 *column;
	__u64 low;
	__u8 shape;

	low = fp->cand & -fp->cand;
	fp->cand ^= low;
	i = np_bit_index[(low * 0x03f79d71b4cb0a89ULL) >> 58] & (NP_MAX_SHAPES - 1);
	column = cfg->column[i];
	shape = cfg->shape[i];
	/* The shape's classes. Columns of a field the frame lacks are stale,
	 * but a shape keyed on it is no candidate. One path for rule sets with
	 * rows and without: a branch on row_fields here made the verifier
	 * take twice as many states. */
	src = fp->class[0][column[0] & (NP_COLUMNS - 1)];
	dst = fp->class[1][column[1] & (NP_COLUMNS - 1)];
	sport = fp->class[2][column[2] & (NP_COLUMNS - 1)];
	dport = fp->class[3][column[3] & (NP_COLUMNS - 1)];
	if (cfg->dense_base[i] != NP_NOT_DENSE) {
		const __u32 *st = cfg->stride[i];
		__u32 cell = gen * max_cells + cfg->dense_base[i] + fp->at.l3 * st[0] +
			     cfg->proto_class[fp->at.proto] * st[1] + src * st[2] + dst * st[3] +
			     sport * st[4] + dport * st[5];

		ref = bpf_map_lookup_elem(&dense_cells, &cell);
		if (ref && ref->action != NP_ACTION_NONE && ref->rule < fp->best.rule)
			fp->best = *ref;
		return !fp->cand;
	}
	key.gen = gen;
	key.shape = shape;
	key.l3 = fp->at.l3 & np_mask(shape, 0);
	key.proto = fp->at.proto & np_mask(shape, 1);
	key.src = src & np_mask(shape, 2);
	key.dst = dst & np_mask(shape, 3);
	key.sport = sport & np_mask(shape, 4);
	key.dport = dport & np_mask(shape, 5);
	ref = bpf_map_lookup_elem(&shape_table, &key);
	if (ref && ref->rule < fp->best.rule)
		fp->best = *ref;
	return !fp->cand;
}

/* One bpf_loop() step of the search; its context, which must be on the
 * stack, is only the generation: the rest is found again, and the stack of
 * the entry point with --reply and --top has no room for more. */
static long np_shape_step(__u64 j, void *data)
{
	__u32 gen = *(__u32 *)data & 1, zero = 0;
	const struct np_rules_config *cfg = bpf_map_lookup_elem(&rules_config, &gen);
	struct np_fields *fp = bpf_map_lookup_elem(&fields_seen, &zero);

	if (!cfg || !fp)
		return 1;
	return np_shape_probe(cfg, fp, gen);
}

/* The first rule the tables match: one lookup per shape the frame can
 * match (np_candidate_shapes()), after an array lookup per field present
 * whose rows the program reads. `*whole`: 1 if the frame of `len` bytes
 * is not cut short, where the shapes of clauses hold their rules. */
static __always_inline struct np_rule_ref np_match_tables(struct np_ctx *c, __u32 gen,
							  const struct np_rules_config *cfg,
							  __u32 len, __u32 *whole)
{
	struct np_rule_ref none = { .rule = ~0U, .action = NP_ACTION_NONE };
	struct np_fields *fp;
	__u32 zero = 0, cut, i;

	fp = bpf_map_lookup_elem(&fields_seen, &zero);
	if (!fp)
		return none;
	np_match_fields(c, gen, cfg, fp);
	/* What was written is read back from memory. */
	asm volatile("" ::: "memory");
	/* Addresses are classified here, once for every way the fields were
	 * read. */
	NP_ADDR_UNROLL
	for (i = 0; i < 2; i++) {
		__u32 bit = i ? NP_SHAPE_DST : NP_SHAPE_SRC;

		if (cfg->fields & bit &&
		    (fp->class[i & 1][0] = np_addr_class_of(c, cfg, gen, fp->at.family,
							     i ? fp->at.daddr : fp->at.saddr)))
			fp->at.found |= bit;
	}
	np_addr_columns(fp, gen, 0);
	np_addr_columns(fp, gen, 1);
	asm volatile("" ::: "memory");
	cut = len < fp->at.end;
	*whole = !cut;
	fp->cand = np_candidate_shapes(cfg, fp) & ~(cfg->clause_shapes & -(__u64)cut);
	fp->best = none;
	if (!NP_SHAPE_STEPS) {
		__u32 k;

		for (k = 0; k < NP_MAX_SHAPES && fp->cand; k++)
			np_shape_probe(cfg, fp, gen);
	} else if (fp->cand && !np_shape_probe(cfg, fp, gen) && !np_shape_probe(cfg, fp, gen)) {
		bpf_loop(NP_MAX_SHAPES - 2, np_shape_step, &gen, 0);
	}
	/* What was written is read back from memory. */
	asm volatile("" ::: "memory");
	return fp->best;
}

/* The libpcap programs in slots `first` to `last` of rules before
 * `before`, run over the frame's copy (and, past it, the hook's context
 * `ctx`), but for those the direct path held if `skip_held`: the first
 * match's rule << 32 | its action, or NP_ACTION_NONE. The hook's np_programs() runs this, inline or
 * in a function of its own; `nested` says np_match() is in one already,
 * where another would take the stack of one more frame. */
static __always_inline __u64 np_programs_run(struct np_ctx *c, void *ctx, __u32 first,
					     __u32 last, __u32 before, __u32 len, __u32 skip_held)
{
	struct np_rule_ref ref;
	__u32 caplen = np_snapshot(c, len);

	if (!caplen || !np_cbpf_first(ctx, first, last, before, caplen, len, skip_held, &ref))
		return NP_ACTION_NONE;
	return (__u64)ref.rule << 32 | ref.action;
}

/* The first rule the packet matches, counted in rule_stats; NONE if none.
 * Programs run in rule order, and only those of rules before the tables'
 * match. */
static __always_inline __u32 np_match(struct np_ctx *c, __u32 len, const bool nested)
{
	struct np_rule_ref best = { .rule = ~0U, .action = NP_ACTION_NONE };
	struct np_rules_config *cfg;
	struct np_counter *hits;
	__u32 zero = 0, gen, idx, n, whole = 0;
	__u32 *active;

	active = bpf_map_lookup_elem(&rules_active, &zero);
	if (!active)
		return NP_ACTION_NONE;
	gen = *active & 1;
	cfg = bpf_map_lookup_elem(&rules_config, &gen);
	if (!cfg)
		return NP_ACTION_NONE;
	if (NP_DIRECT_MATCH && cfg->n_direct)
		best = np_match_direct(c, cfg, len, &whole);
	else if (cfg->n_shapes)
		best = np_match_tables(c, gen, cfg, len, &whole);
	n = cfg->n_programs;
	/* Where the direct path or the tables compared the clauses they hold
	 * on a frame not cut short, their rules' programs need not run. */
	if (n && n <= NP_MAX_PROGRAM_SLOTS && (!whole || cfg->held_programs < n)) {
		__u64 found = np_programs(c, gen * max_programs, gen * max_programs + n - 1,
					  best.rule, len, whole, nested);

		if ((__u32)found != NP_ACTION_NONE) {
			best.rule = found >> 32;
			best.action = (__u32)found;
		}
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

