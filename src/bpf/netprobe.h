/* SPDX-License-Identifier: GPL-2.0-only */
/* Structs and constants shared by the BPF programs and user space.
 * User space mirrors them in src/kernel/counters.rs; keep the two in step. */
#ifndef NETPROBE_H
#define NETPROBE_H

/* Link-and-network class: every frame is exactly one of these. */
enum np_l3 {
	NP_L3_IPV4 = 0,
	NP_L3_IPV6,
	NP_L3_ARP,
	NP_L3_OTHER,
	NP_L3_MALFORMED, /* a truncated or inconsistent header anywhere */
	NP_L3_MAX,
};

/* Transport class of an IP frame; NONE when not IP, a later fragment, or a
 * transport netprobe does not classify. */
enum np_l4 {
	NP_L4_TCP = 0,
	NP_L4_UDP,
	NP_L4_ICMP,
	NP_L4_ICMPV6,
	NP_L4_NONE,
	NP_L4_MAX,
};

/* XDP verdicts, indexed by the XDP action value itself, plus WOULD_DROP:
 * passed under --dry-run although a drop rule matched. */
enum np_verdict {
	NP_VERDICT_ABORTED = 0,
	NP_VERDICT_DROP = 1,
	NP_VERDICT_PASS = 2,
	NP_VERDICT_TX = 3,
	NP_VERDICT_REDIRECT = 4,
	NP_VERDICT_WOULD_DROP = 5,
	NP_VERDICT_MAX,
};

struct np_counter {
	__u64 packets;
	__u64 bytes;
};

/* The one value of a hook's per-CPU stats array: a counter per (l3, l4,
 * verdict) cell. A packet touches one cell, so counting costs one
 * read-modify-write; user space folds the cells into per-protocol and
 * per-verdict totals. The socket filter uses two verdicts: PASS (handed to
 * the socket) and DROP (filtered out). */
struct np_stats {
	struct np_counter cell[NP_L3_MAX][NP_L4_MAX][NP_VERDICT_MAX];
};

/* Rules (src/filter/compile.rs compiles them, src/filter/tables.rs writes them). Every
 * key carries a generation byte; the program reads the active generation
 * once per packet, so a reload that fills the other generation and then
 * flips `rules_active` is seen whole or not at all. */
#define NP_MAX_SHAPES 64
/* Rules matched by a libpcap program instead of the tables (cbpf.h): at
 * most NP_MAX_PROGRAMS that run on every frame, and those held besides
 * (NP_PROGRAM_HELD: rules of clauses, whose programs XDP runs only on
 * frames cut short), NP_MAX_PROGRAM_SLOTS in all. */
#define NP_MAX_PROGRAMS 64
#define NP_MAX_PROGRAM_SLOTS 512
#define NP_PROGRAM_INSNS 4096
/* Bytes of a frame a libpcap program can read (a power of two), and room
 * after them for the widest header read at the last offset. */
#define NP_FRAME_COPY 16384
#define NP_FRAME_SLACK 64

/* The link-layer class rules match on (after up to two VLAN tags); the
 * first three share their values with enum np_l3. */
enum np_match_l3 {
	NP_MATCH_IPV4 = 0,
	NP_MATCH_IPV6 = 1,
	NP_MATCH_ARP = 2,
	NP_MATCH_RARP = 3,
	NP_MATCH_NONE = 4, /* another EtherType */
};

enum np_shape_bits {
	NP_SHAPE_L3 = 1,
	NP_SHAPE_PROTO = 2,
	NP_SHAPE_SRC = 4,
	NP_SHAPE_DST = 8,
	NP_SHAPE_SPORT = 16,
	NP_SHAPE_DPORT = 32,
};

enum np_action {
	NP_ACTION_NONE = 0,
	NP_ACTION_DROP = 1,
	NP_ACTION_REDIRECT = 2,
	NP_ACTION_CAPTURE = 3,
};

/* Addresses are classified without a walk that grows with the rule set
 * (src/filter/addr.rs says how): an array slot per generation, family and
 * leading 16 bits; below a slot or entry with longer rule prefixes below
 * it, a block of 256 entries by the next byte, down to the last byte of an
 * IPv4 address and the eighth of an IPv6 one; and below an entry with no
 * block (past /64, or past the blocks the tables hold), one exact-match
 * hash lookup per longer prefix length it names, longest first. */
#define NP_ADDR_SLOTS 65536
#define NP_ADDR_BLOCK 256
#define NP_ADDR_LENS 32
/* Levels of blocks below a slot, one byte each: IPv4 to its last byte,
 * IPv6 to its eighth (/64). */
#define NP_ADDR_LEVELS4 2
#define NP_ADDR_LEVELS6 6
/* Rows of np_rules_config.addr_below: at least NP_ADDR_LEVELS6, a power of
 * two that the program masks its index with. */
#define NP_ADDR_BELOW 8

struct np_addr_slot {
	__u32 class;  /* of the longest rule prefix covering it; 0: none */
	__u32 longer; /* bit j: a prefix of addr_len[family][j] bits lies below, in the hash */
	__u32 block;  /* the block by the next byte, as an entry names it; 0 for none */
};
/* A block entry: with NP_ADDR_NEXT, the block by the next byte, as the
 * index of its first entry in addr_blocks (its generation's included) in
 * the low bits; else a class, and with NP_ADDR_HASHED prefixes below it in
 * the hash (probed for addr_below's lengths): 4 bytes, where a slot takes
 * 12. */
#define NP_ADDR_NEXT (1U << 31)
#define NP_ADDR_HASHED (1U << 30)

/* A rule prefix in the hash: the address masked to `len` bits. */
struct np_addr_key {
	__u8 gen;
	__u8 family; /* 4 or 6 */
	__u8 len;
	__u8 pad;
	__u8 addr[16];
};

/* Port classes per generation, indexed by port. */
#define NP_PORTS 65536

/* Hash key: a shape and the classes (0: no rule prefix covers it) of
 * the fields that shape constrains; the other fields are zero. */
struct np_shape_key {
	__u8 gen;
	__u8 shape;
	__u8 l3;    /* enum np_match_l3 */
	__u8 proto; /* IP protocol number */
	__u32 src;
	__u32 dst;
	__u32 sport;
	__u32 dport;
};

struct np_rule_ref {
	__u32 rule;   /* index in the rule list; lower wins */
	__u32 action; /* enum np_action */
};

/* Fields in a shape, in the order of the NP_SHAPE_* bits. */
#define NP_FIELDS 6
/* A shape whose entries are in shape_table, not in dense_cells. */
#define NP_NOT_DENSE 0xffffffffU
/* Fields that may have classes of their own per shape: src, dst, sport,
 * dport. */
#define NP_CLASS_FIELDS 4
/* Columns of a row of shape classes (a power of two): column 0 is the rule
 * set's class, the others those of up to 7 shape fields. */
#define NP_COLUMNS 8

/* By a rule set's address or port class: the class of each column's shape
 * field (0: no prefix of that shape covers it), and per field of the row's
 * kind (src and dst, or sport and dport) the shapes (bit i: shape i) keyed
 * on it with a rule covering the class. */
struct np_class_row {
	__u32 class[NP_COLUMNS];
	__u64 shapes[2];
};

/* A rule set of at most NP_MAX_DIRECT alternatives is matched field by
 * field against the config itself, without the tables' lookups: what one
 * rule or a few cost. */
#define NP_MAX_DIRECT 8

/* One comparison: the frame's l3 (enum np_match_l3), IP protocol,
 * address family, the fields it has (NP_SHAPE_* bits) and the 32-bit words
 * it has of each address (bit w: more than w, libpcap's unit of address
 * comparison), one byte each in that order (np_direct_meta()), must equal
 * `meta` under `meta_mask`; the fields byte's mask and value are both the
 * fields needed, and each words byte's the bit of the words the prefix
 * masks (at least one), so that all of that is one comparison; nor may it
 * equal `unless` under `unless_mask` (a clause's `and not tcp`; for none,
 * a byte no frame has). Then each
 * address equal to the comparison's under its mask, 64 bits at a time,
 * ports within `lo` and `lo + span` (in a clause, modulo 2^16: the range
 * around a clause's `and not port N`). A clause (src/filter/direct.rs:
 * DirectTest) is one or more in a row: the frame matches each, or with
 * `negate` does not; the last (`end`) gives the rule. `held`: of a rule
 * whose program runs instead on a frame cut short. */
struct np_direct {
	__u32 rule;
	__u32 action;
	__u64 meta, meta_mask, unless, unless_mask;
	__u8 negate, end, held, pad[5];
	__u64 src[2], src_mask[2], dst[2], dst_mask[2]; /* network order */
	__u16 sport_lo, sport_span, dport_lo, dport_span;
};

/* np_rules_config.direct_flags: some direct comparison masks more than an
 * address's first 64 bits; some is negated or one of several in a clause. */
#define NP_DIRECT_WIDE 1
#define NP_DIRECT_CLAUSES 2

struct np_rules_config {
	__u32 n_shapes;
	__u32 fields; /* the OR of all shapes (or direct alternatives): which fields are read */
	__u32 n_programs;
	__u32 n_direct; /* if not 0, direct[] holds the table rules, in rule order */
	__u32 direct_flags; /* NP_DIRECT_* */
	__u32 held_programs; /* programs of rules the direct path holds */
	struct np_direct direct[NP_MAX_DIRECT];
	__u8 shape[NP_MAX_SHAPES];
	/* A shape whose classes have few combinations has a cell for each in
	 * dense_cells, from dense_base on: cell base + the sum of each field's
	 * class times its stride (l3 value, proto_class, then the classes of
	 * src, dst, sport, dport). An array lookup, where a hash costs more. */
	__u32 dense_base[NP_MAX_SHAPES];
	__u32 stride[NP_MAX_SHAPES][NP_FIELDS];
	/* The column of a shape's src, dst, sport and dport in the rows of
	 * addr_rows or port_rows (0: the rule set's classes), so that its
	 * cells number the combinations of its own rules' prefixes and ports. */
	__u8 column[NP_MAX_SHAPES][NP_CLASS_FIELDS];
	/* Shapes as bit masks (bit i: shape i), so that the program probes
	 * only the shapes a frame can match (src/filter/candidates.rs): by
	 * the fields a frame has (NP_SHAPE_* bits), the shapes keyed on no
	 * other field; by l3 value and by protocol, the shapes not keyed on
	 * it or with a rule for the value; and per field of src, dst, sport
	 * and dport whose rows say which shapes cover each class (the row's
	 * `shapes`), the shapes keyed on it (0 for the other fields). */
	__u64 by_found[1 << NP_FIELDS];
	__u64 by_l3[4];
	__u64 by_proto[256];
	__u64 keyed[NP_CLASS_FIELDS];
	/* The shapes of clauses (src/filter/clause_cells.rs): not probed on a
	 * frame cut short, where the rules' programs decide. */
	__u64 clause_shapes;
	__u8 proto_class[256];
	/* Per family (IPv4, IPv6): the prefix lengths in the hash, longest
	 * first, and the mask of each in network order. */
	__u8 addr_len[2][NP_ADDR_LENS];
	__u32 addr_mask[2][NP_ADDR_LENS][4];
	/* Per family and level of blocks: the lengths (bits of addr_len) an
	 * entry with NP_ADDR_HASHED probes, those longer than its bytes. */
	__u32 addr_below[2][NP_ADDR_BELOW];
};

/* A classic BPF instruction (struct sock_filter). */
struct np_cbpf_insn {
	__u16 code;
	__u8 jt;
	__u8 jf;
	__u32 k;
};

/* One rule as the program libpcap compiled for it. Slots are filled in
 * rule order. */
/* np_program.flags: the rule is made of fields, and its program reads the
 * frame without its VLAN tags (up to two), as the tables do; the direct
 * path holds the rule, and where it runs the program runs only on frames
 * cut short. */
#define NP_PROGRAM_UNTAGGED 1
#define NP_PROGRAM_HELD 2

struct np_program {
	__u32 rule;   /* index in the rule list */
	__u32 action; /* enum np_action */
	__u32 len;    /* instructions */
	__u32 flags;  /* NP_PROGRAM_* */
	/* Held programs in a row from this one (0 if it is not held), passed
	 * over in one step where they are skipped. */
	__u32 held_run;
	struct np_cbpf_insn insn[NP_PROGRAM_INSNS];
};

struct np_frame_copy {
	__u8 data[NP_FRAME_COPY + NP_FRAME_SLACK];
};

/* An address of either family, for per-source counters and own addresses. */
struct np_addr {
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

/* netprobe kprobe: one program instance per traced function. */
#define NP_LATENCY_SLOTS 64

/* The one value of the per-CPU `func_stats` array. */
struct np_func_stats {
	__u64 calls;
	__u64 returns;
	__u64 events;
	__u64 lost_events; /* ring buffer full: events not delivered */
	__u64 latency[NP_LATENCY_SLOTS]; /* log2 buckets of nanoseconds */
};

/* One connect() as seen by tcp_v4_connect/tcp_v6_connect probes. */
struct np_connect_event {
	__u64 ts_ns;
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__s32 ret;
	__u32 netns;
	__u16 family; /* AF_INET or AF_INET6 */
	__u16 sport;  /* host byte order; 0 when not yet assigned */
	__u16 dport;  /* host byte order */
	__u8 has_ret; /* the backend saw the return value */
	__u8 pad;
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[16];
};

#endif /* NETPROBE_H */
