/* SPDX-License-Identifier: GPL-2.0-only */
/* A classic BPF interpreter: runs the program libpcap compiled for a rule
 * that the tables cannot hold (`not`, `or`, `vlan`, `ether`, byte tests...)
 * over a copy of the frame, so that such a rule matches exactly what
 * tcpdump's filter matches. User space (src/filter/pcap.rs) checks every
 * program before it is written here: known opcodes, jumps inside the
 * program, scratch slots below 16, a return at the end. Classic BPF only
 * jumps forward, but for libpcap's `protochain`, which loops back over the
 * headers it walks; bpf_loop()'s count bounds every run.
 *
 * The including hook defines
 *   static __always_inline __u32 np_snapshot(struct np_ctx *c, __u32 len);
 * which copies the frame's first bytes into the per-CPU `frame_copy` and
 * returns how many it copied, and
 *   static __always_inline bool np_load_uncopied(void *ctx, __u64 off,
 *                                                __u8 buf[4], __u32 size);
 * which reads `size` (1 to 4) bytes at `off` of the frame as the copy has it
 * from the hook's own context, for the rare read past the copy: tcpdump reads a frame as far as it goes. Needs parse.h first. */
#ifndef NETPROBE_CBPF_H
#define NETPROBE_CBPF_H

#include "netprobe.h"

/* Programs per generation; index: generation * max_programs + slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_program);
} programs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_frame_copy);
} frame_copy SEC(".maps");

const volatile __u32 max_programs = 1;

/* `n` (1 to NP_FRAME_COPY) unchanged, in a form the verifier can bound
 * for a helper's size argument: the barrier keeps the compiler from
 * folding the mask away with what it knows of `n`. */
static __always_inline __u32 np_copy_len(__u32 n)
{
	asm volatile("" : "+r"(n));
	return ((n - 1) & (NP_FRAME_COPY - 1)) + 1;
}

/* `size` (1 to 4) unchanged, bounded for a helper's size argument as
 * np_copy_len() bounds its. */
static __always_inline __u32 np_load_size(__u32 size)
{
	asm volatile("" : "+r"(size));
	return ((size - 1) & 3) + 1;
}

/* Classic BPF opcode fields (linux/filter.h). */
#define NP_BPF_CLASS(c) ((c) & 0x07)
#define NP_BPF_SIZE(c) ((c) & 0x18)
#define NP_BPF_MODE(c) ((c) & 0xe0)
#define NP_BPF_OP(c) ((c) & 0xf0)
#define NP_BPF_SRC(c) ((c) & 0x08)
#define NP_BPF_RVAL(c) ((c) & 0x18)
#define NP_BPF_MISCOP(c) ((c) & 0xf8)

/* The machine's state between steps: bpf_loop() calls np_cbpf_step once
 * per instruction, across all the programs to run, so that the verifier
 * checks one loop. */
struct np_cbpf_vm {
	__u32 key;     /* the running program's slot in `programs` */
	__u32 last;    /* the last slot to run */
	__u32 before;  /* run only programs of rules before this one */
	__u32 rule;    /* the rule whose program matched, if `result` */
	__u32 action;
	__u32 pc;
	__u32 a;
	__u32 x;
	__u32 mem[16];
	__u32 caplen;  /* bytes of the frame in frame_copy */
	__u32 wirelen; /* the frame's length: what `len` loads */
	__u32 result;  /* what the program returned; 0: no match */
	/* The frame's VLAN tags (up to two), for a program flagged
	 * NP_PROGRAM_UNTAGGED: their bytes | how many of those the frame
	 * holds << 8; and NP_SKIP_HELD. One word: the stack of three calls
	 * is at its limit on 6.1. */
	__u32 tags;
	void *ctx;      /* the hook's context, for reads past the copy */
};

/* np_cbpf_vm.tags: programs flagged NP_PROGRAM_HELD are skipped. */
#define NP_SKIP_HELD (1U << 16)

/* A program's view of the frame (0: the frame as it is; else the tags'
 * bytes it leaves out after the MAC addresses | how many of those the
 * frame holds << 8). */
static __always_inline __u32 np_cbpf_view(const struct np_cbpf_vm *vm,
					  const struct np_program *prog)
{
	return prog->flags & NP_PROGRAM_UNTAGGED ? vm->tags & 0xffff : 0;
}

/* The running program returned `result` (0 when a load failed): stops on
 * a match, else goes on with the next program; returns 1 to stop. */
static __always_inline long np_cbpf_end(struct np_cbpf_vm *vm, __u32 result)
{
	const struct np_program *next;
	int i;

	if (result) {
		/* The rule is read once, at the match, not at every step. */
		next = bpf_map_lookup_elem(&programs, &vm->key);
		if (next) {
			vm->result = result;
			vm->rule = next->rule;
			vm->action = next->action;
		}
		return 1;
	}
	if (vm->key >= vm->last)
		return 1;
	vm->key++;
	next = bpf_map_lookup_elem(&programs, &vm->key);
	if (!next || next->rule >= vm->before)
		return 1;
	vm->pc = 0;
	vm->a = 0;
	vm->x = 0;
	for (i = 0; i < 16; i++)
		vm->mem[i] = 0;
	return 0;
}

/* Loads `size` (1, 2 or 4) bytes at `off` of the program's view of the
 * frame, big-endian; false when they lie beyond the frame, which ends the
 * program with 0 as in the kernel and in libpcap. Bytes past the copy are
 * read from the hook's context. */
static __always_inline bool np_cbpf_load(const struct np_cbpf_vm *vm, __u32 view, __u64 off,
					 __u32 size, __u32 *out)
{
	struct np_frame_copy *f;
	__u32 zero = 0;
	__u8 *p, buf[4];

	if (view) {
		/* No program of a rule of fields reads across the tags. */
		if (off < NP_ETH_ADDRS && off + size > NP_ETH_ADDRS)
			return false;
		if (off >= NP_ETH_ADDRS)
			off += view & 0xff;
	}
	if (off + size > vm->wirelen)
		return false;
	if (off + size > vm->caplen || off > NP_FRAME_COPY - 4) {
		if (!np_load_uncopied(vm->ctx, off, buf, size))
			return false;
		p = buf;
	} else {
		f = bpf_map_lookup_elem(&frame_copy, &zero);
		if (!f)
			return false;
		p = f->data + off;
	}
	if (size == 1)
		*out = p[0];
	else if (size == 2)
		*out = (__u32)p[0] << 8 | p[1];
	else
		*out = (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
	return true;
}

static __always_inline __u32 np_cbpf_size(__u16 code)
{
	switch (NP_BPF_SIZE(code)) {
	case 0x00: /* BPF_W */
		return 4;
	case 0x08: /* BPF_H */
		return 2;
	default: /* BPF_B */
		return 1;
	}
}

/* One instruction; returns 1 when no program is left to run. */
static long np_cbpf_step(__u64 index, void *data)
{
	struct np_cbpf_vm *vm = data;
	const struct np_program *prog;
	const struct np_cbpf_insn *in;
	__u32 pc = vm->pc, v = 0, operand, size, result = 0, view;
	bool to_x = false;
	__u16 code;
	__u64 off;

	prog = bpf_map_lookup_elem(&programs, &vm->key);
	if (!prog || pc >= NP_PROGRAM_INSNS || pc >= prog->len)
		return 1;
	/* Only a hook with the direct path (NP_DIRECT_MATCH) skips any. */
	if (NP_DIRECT_MATCH && !pc && prog->flags & NP_PROGRAM_HELD && vm->tags & NP_SKIP_HELD) {
		/* Past the held programs in a row from this one at once: one
		 * step for each cost about as much as a short program. */
		if (prog->held_run > 1 && prog->held_run - 1 <= vm->last - vm->key)
			vm->key += prog->held_run - 1;
		goto end;
	}
	view = np_cbpf_view(vm, prog);
	in = &prog->insn[pc];
	code = in->code;
	vm->pc = pc + 1;
	switch (NP_BPF_CLASS(code)) {
	case 0x00: /* BPF_LD */
		switch (NP_BPF_MODE(code)) {
		case 0x00: /* BPF_IMM */
			vm->a = in->k;
			return 0;
		case 0x20: /* BPF_ABS */
			off = in->k;
			size = np_cbpf_size(code);
			break;
		case 0x40: /* BPF_IND */
			off = (__u64)vm->x + in->k;
			size = np_cbpf_size(code);
			break;
		case 0x60: /* BPF_MEM */
			vm->a = vm->mem[in->k & 15];
			return 0;
		case 0x80: /* BPF_LEN */
			vm->a = vm->wirelen - (view >> 8);
			return 0;
		default:
			goto end;
		}
		break;
	case 0x01: /* BPF_LDX */
		switch (NP_BPF_MODE(code)) {
		case 0x00:
			vm->x = in->k;
			return 0;
		case 0x60:
			vm->x = vm->mem[in->k & 15];
			return 0;
		case 0x80:
			vm->x = vm->wirelen - (view >> 8);
			return 0;
		case 0xa0: /* BPF_MSH: 4 * (P[k] & 0xf) */
			off = in->k;
			size = 1;
			to_x = true;
			break;
		default:
			goto end;
		}
		break;
	case 0x02: /* BPF_ST */
		vm->mem[in->k & 15] = vm->a;
		return 0;
	case 0x03: /* BPF_STX */
		vm->mem[in->k & 15] = vm->x;
		return 0;
	case 0x04: /* BPF_ALU */
		operand = NP_BPF_SRC(code) ? vm->x : in->k;
		switch (NP_BPF_OP(code)) {
		case 0x00:
			vm->a += operand;
			return 0;
		case 0x10:
			vm->a -= operand;
			return 0;
		case 0x20:
			vm->a *= operand;
			return 0;
		case 0x30:
			if (!operand)
				goto end;
			vm->a /= operand;
			return 0;
		case 0x40:
			vm->a |= operand;
			return 0;
		case 0x50:
			vm->a &= operand;
			return 0;
		case 0x60:
			vm->a = operand < 32 ? vm->a << operand : 0;
			return 0;
		case 0x70:
			vm->a = operand < 32 ? vm->a >> operand : 0;
			return 0;
		case 0x80:
			vm->a = -vm->a;
			return 0;
		case 0x90:
			if (!operand)
				goto end;
			vm->a %= operand;
			return 0;
		case 0xa0:
			vm->a ^= operand;
			return 0;
		}
		goto end;
	case 0x05: /* BPF_JMP */
		operand = NP_BPF_SRC(code) ? vm->x : in->k;
		switch (NP_BPF_OP(code)) {
		case 0x00: /* BPF_JA */
			vm->pc += in->k;
			return 0;
		case 0x10:
			vm->pc += vm->a == operand ? in->jt : in->jf;
			return 0;
		case 0x20:
			vm->pc += vm->a > operand ? in->jt : in->jf;
			return 0;
		case 0x30:
			vm->pc += vm->a >= operand ? in->jt : in->jf;
			return 0;
		case 0x40:
			vm->pc += vm->a & operand ? in->jt : in->jf;
			return 0;
		}
		goto end;
	case 0x06: /* BPF_RET */
		result = NP_BPF_RVAL(code) == 0x10 ? vm->a : in->k;
		goto end;
	default: /* BPF_MISC */
		if (NP_BPF_MISCOP(code) == 0x00)
			vm->x = vm->a; /* TAX */
		else
			vm->a = vm->x; /* TXA */
		return 0;
	}
	/* The loads, in one place: its code is inlined once. A failed one
	 * ends the program with 0. */
	if (!np_cbpf_load(vm, view, off, size, &v))
		goto end;
	if (to_x)
		vm->x = (v & 0xf) << 2;
	else
		vm->a = v;
	return 0;
end:
	/* Every way a program ends, in one place, for the same reason. */
	return np_cbpf_end(vm, result);
}

/* Runs the programs in slots `first` to `last`, in order, up to the first
 * that accepts the copied frame, skipping those flagged NP_PROGRAM_HELD if
 * `skip_held`, and stopping at the first of a rule at or after `before`.
 * Returns that rule and its action in `*ref`, if one matched. */
static __always_inline bool np_cbpf_first(void *ctx, __u32 first, __u32 last, __u32 before,
					  __u32 caplen, __u32 wirelen, __u32 skip_held,
					  struct np_rule_ref *ref)
{
	struct np_cbpf_vm vm = {
		.key = first,
		.last = last,
		.before = before,
		.caplen = caplen,
		.wirelen = wirelen,
		.ctx = ctx,
	};
	const struct np_program *prog = bpf_map_lookup_elem(&programs, &first);
	__u32 zero = 0, off, type, i, bytes = 0, kept;
	struct np_frame_copy *f = bpf_map_lookup_elem(&frame_copy, &zero);

	if (!prog || !f || prog->rule >= before)
		return false;
	/* The tags a rule of fields looks through, as np_locate_fields()
	 * does, read from the copy, which holds them if the frame does: a
	 * tag cut short leaves the view its first 12 bytes. */
	for (i = 0; i < NP_MAX_VLAN_TAGS; i++) {
		off = NP_ETH_ADDRS + i * 4;
		if (off + 2 > caplen)
			break;
		type = (__u32)f->data[off] << 8 | f->data[off + 1];
		if (type != NP_ETH_P_8021Q && type != NP_ETH_P_8021AD)
			break;
		bytes += 4;
	}
	kept = wirelen < NP_ETH_ADDRS + bytes ? wirelen - NP_ETH_ADDRS : bytes;
	vm.tags = bytes | kept << 8 | (skip_held ? NP_SKIP_HELD : 0);
	bpf_loop(NP_MAX_PROGRAM_SLOTS * NP_PROGRAM_INSNS, np_cbpf_step, &vm, 0);
	if (!vm.result)
		return false;
	ref->rule = vm.rule;
	ref->action = vm.action;
	return true;
}

#endif /* NETPROBE_CBPF_H */
