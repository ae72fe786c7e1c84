// SPDX-License-Identifier: GPL-2.0-only
/* netprobe kprobe: calls, return values, latency and connect events of one
 * kernel function, through whichever backend the kernel allows:
 * kprobe/kretprobe, fentry/fexit, or (for connect) the inet_sock_set_state
 * tracepoint. User space loads only the programs of the chosen backend. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "netprobe.h"

#define NP_AF_INET 2
#define NP_AF_INET6 10
#define NP_TCP_SYN_SENT 2
#define NP_TCP_CLOSE 7
#define NP_ETH_P_IP 0x0800
#define NP_ETH_P_IPV6 0x86DD
#define NP_IPPROTO_UDP 17

/* How a tracepoint with a flow lays out its arguments. */
#define NP_FLOW_SOCK 1      /* (struct sock *sk, ...) */
#define NP_FLOW_SOCK_SKB 2  /* (struct sock *sk, struct sk_buff *skb, ...): sk may be NULL */
#define NP_FLOW_STATE 3     /* (struct sock *sk, int oldstate, int newstate) */
#define NP_FLOW_SKB_DROP 4  /* (struct sk_buff *skb, void *location, enum skb_drop_reason) */
#define NP_IPPROTO_TCP 6
#define NP_MAX_ERRNO 4095

/* Settings fixed at load time. */
const volatile bool connect_events = false; /* the function is tcp_v{4,6}_connect */
const volatile __u16 connect_family = NP_AF_INET;
const volatile bool want_ret = false;
const volatile bool want_latency = false;
const volatile __u32 filter_pid = 0;  /* 0: any */
const volatile __u32 filter_uid = -1; /* -1: any */
const volatile __u16 filter_port = 0; /* 0: any */
/* Events wake the reader only once this many bytes wait in the ring: below
 * that, user space drains the ring on a short timer, and the traced program
 * does not pay for a wake-up (and the context switches after it) on every
 * event. Set to half the ring, so a burst still wakes the reader in time. */
const volatile __u64 wakeup_bytes = 0;
/* tp:NAME with flow events (the tracepoint's arguments as they are laid
 * out): NP_FLOW_* below, 0 for none. */
const volatile __u8 flow_events = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_func_stats);
} func_stats SEC(".maps");

/* Return values: 0, each -errno, and 1 for anything positive or not an errno. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, __s32);
	__type(value, __u64);
} ret_counts SEC(".maps");

/* What an entry leaves for its exit, per thread. */
struct np_entry {
	__u64 ts;
	__u64 sk;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct np_entry);
} entries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

static __always_inline struct np_func_stats *np_stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&func_stats, &zero);
}

static __always_inline bool np_wanted(void)
{
	if (filter_pid && (bpf_get_current_pid_tgid() >> 32) != filter_pid)
		return false;
	if (filter_uid != (__u32)-1 && (__u32)bpf_get_current_uid_gid() != filter_uid)
		return false;
	return true;
}

static __always_inline void np_on_entry(__u64 sk)
{
	struct np_func_stats *st = np_stats();
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct np_entry e = { .sk = sk };

	if (!np_wanted())
		return;
	if (st)
		st->calls++;
	if (want_latency || want_ret || connect_events) {
		e.ts = bpf_ktime_get_ns();
		bpf_map_update_elem(&entries, &tid, &e, BPF_ANY);
	}
}

static __always_inline __u32 np_log2(__u64 v)
{
	__u32 r = 0;

	for (int i = 0; i < 6; i++) {
		__u32 shift = 32 >> i;

		if (v >> shift) {
			v >>= shift;
			r += shift;
		}
	}
	return r;
}

/* Fills addresses, ports and network namespace from a connecting socket. */
static __always_inline void np_fill_from_sock(struct np_connect_event *ev, struct sock *sk)
{
	ev->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	ev->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	ev->dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	ev->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (ev->family == NP_AF_INET6) {
		bpf_core_read(ev->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(ev->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	} else {
		bpf_core_read(ev->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(ev->daddr, 4, &sk->__sk_common.skc_daddr);
	}
}

/* A new event in the ring with the caller's context, or NULL (counted lost). */
static __always_inline struct np_connect_event *np_event_reserve(struct np_func_stats *st)
{
	struct np_connect_event *ev;
	__u64 id = bpf_get_current_pid_tgid();

	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		if (st)
			__sync_fetch_and_add(&st->lost_events, 1);
		return NULL;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = bpf_ktime_get_ns();
	ev->pid = id >> 32;
	ev->tid = (__u32)id;
	ev->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	return ev;
}

static __always_inline void np_event_submit(struct np_func_stats *st, struct np_connect_event *ev)
{
	bpf_ringbuf_submit(ev, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes
				       ? BPF_RB_FORCE_WAKEUP
				       : BPF_RB_NO_WAKEUP);
	if (st)
		st->events++;
}

/* Sends one connect event; counts it, or counts it lost. */
static __always_inline void np_emit_connect(struct sock *sk, long ret, bool has_ret)
{
	struct np_func_stats *st = np_stats();
	struct np_connect_event *ev;
	__u16 dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));

	if (filter_port && dport != filter_port)
		return;
	ev = np_event_reserve(st);
	if (!ev)
		return;
	ev->ret = ret;
	ev->has_ret = has_ret;
	np_fill_from_sock(ev, sk);
	np_event_submit(st, ev);
}

static __always_inline void np_on_exit(long ret, __u64 sk_arg, bool sk_from_entry)
{
	struct np_func_stats *st = np_stats();
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct np_entry *e;
	__u64 sk = sk_arg;
	__s32 key;
	__u64 *n, one = 1;

	if (!np_wanted())
		return;
	e = bpf_map_lookup_elem(&entries, &tid);
	if (!e)
		return; /* entered before netprobe attached, or filtered out */
	if (sk_from_entry)
		sk = e->sk;
	if (st) {
		st->returns++;
		if (want_latency) {
			__u32 slot = np_log2(bpf_ktime_get_ns() - e->ts);

			if (slot < NP_LATENCY_SLOTS)
				st->latency[slot]++;
		}
	}
	bpf_map_delete_elem(&entries, &tid);
	if (want_ret) {
		key = ret >= -NP_MAX_ERRNO && ret <= 0 ? (__s32)ret : 1;
		n = bpf_map_lookup_elem(&ret_counts, &key);
		if (n)
			(*n)++;
		else
			bpf_map_update_elem(&ret_counts, &key, &one, BPF_NOEXIST);
	}
	if (connect_events && sk)
		np_emit_connect((struct sock *)sk, ret, true);
}

SEC("kprobe")
int BPF_KPROBE(kprobe_entry, void *arg0)
{
	np_on_entry((__u64)arg0);
	return 0;
}

SEC("kretprobe")
int BPF_KRETPROBE(kretprobe_exit, long ret)
{
	np_on_exit(ret, 0, true);
	return 0;
}

/* The attach target is set by user space before load. */
SEC("fentry")
int fentry_entry(__u64 *ctx)
{
	__u64 arg0 = 0;

	bpf_get_func_arg(ctx, 0, &arg0);
	np_on_entry(arg0);
	return 0;
}

SEC("fexit")
int fexit_exit(__u64 *ctx)
{
	__u64 ret = 0, arg0 = 0;

	bpf_get_func_ret(ctx, &ret);
	bpf_get_func_arg(ctx, 0, &arg0);
	np_on_exit((long)ret, arg0, false);
	return 0;
}

/* tcp_v{4,6}_connect move a socket from CLOSE to SYN_SENT: the connect
 * attempt, with addresses and the caller's context, but not its return
 * value, and before the source port is chosen (unless bound). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_set_state, struct sock *sk, int oldstate, int newstate)
{
	struct np_func_stats *st;

	if (oldstate != NP_TCP_CLOSE || newstate != NP_TCP_SYN_SENT)
		return 0;
	if (BPF_CORE_READ(sk, sk_protocol) != NP_IPPROTO_TCP ||
	    BPF_CORE_READ(sk, __sk_common.skc_family) != connect_family || !np_wanted())
		return 0;
	st = np_stats();
	if (st)
		st->calls++;
	np_emit_connect(sk, 0, false);
	return 0;
}

/* Fills the flow of a packet: addresses from its network header, ports from
 * its transport header where the kernel set one. */
static __always_inline void np_fill_from_skb(struct np_connect_event *ev, struct sk_buff *skb)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	__u16 proto = __builtin_bswap16(BPF_CORE_READ(skb, protocol));
	__u8 l4 = 0;

	if (proto == NP_ETH_P_IP) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return;
		ev->family = NP_AF_INET;
		__builtin_memcpy(ev->saddr, &ip.saddr, 4);
		__builtin_memcpy(ev->daddr, &ip.daddr, 4);
		l4 = ip.protocol;
	} else if (proto == NP_ETH_P_IPV6) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return;
		ev->family = NP_AF_INET6;
		__builtin_memcpy(ev->saddr, &ip6.saddr, 16);
		__builtin_memcpy(ev->daddr, &ip6.daddr, 16);
		l4 = ip6.nexthdr;
	} else {
		return;
	}
	/* 0xffff: no transport header set yet. */
	if ((l4 == NP_IPPROTO_TCP || l4 == NP_IPPROTO_UDP) && th != 0xffff && th > nh) {
		__be16 ports[2];

		if (!bpf_probe_read_kernel(ports, sizeof(ports), head + th)) {
			ev->sport = __builtin_bswap16(ports[0]);
			ev->dport = __builtin_bswap16(ports[1]);
		}
	}
	ev->netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
}

/* tp:NAME for a tracepoint that carries a socket or a packet: its calls,
 * and an event with the flow; `ret` holds the detail (old and new TCP
 * state, or the drop reason). The attach target is set before load. */
SEC("tp_btf")
int tp_flow(unsigned long long *ctx)
{
	struct np_func_stats *st;
	struct np_connect_event *ev;
	struct sock *sk = (struct sock *)ctx[0];

	if (!np_wanted())
		return 0;
	st = np_stats();
	if (st)
		st->calls++;
	ev = np_event_reserve(st);
	if (!ev)
		return 0;
	if (flow_events == NP_FLOW_SKB_DROP) {
		np_fill_from_skb(ev, (struct sk_buff *)ctx[0]);
		ev->ret = (__s32)ctx[2];
	} else if (sk) {
		np_fill_from_sock(ev, sk);
		if (flow_events == NP_FLOW_STATE)
			ev->ret = (__s32)(ctx[1] << 8 | ctx[2]);
	} else if (flow_events == NP_FLOW_SOCK_SKB && ctx[1]) {
		np_fill_from_skb(ev, (struct sk_buff *)ctx[1]);
	}
	ev->has_ret = 1;
	/* --port: the flow's destination port is known only once it is read. */
	if (filter_port && ev->dport != filter_port) {
		bpf_ringbuf_discard(ev, BPF_RB_NO_WAKEUP);
		return 0;
	}
	np_event_submit(st, ev);
	return 0;
}

/* `tp:NAME`: calls of a tracepoint, attached by name at run time. A raw
 * tracepoint needs no tracefs and attaches where kprobes do not. */
SEC("raw_tp")
int raw_tp_count(void *ctx)
{
	struct np_func_stats *st;

	if (!np_wanted())
		return 0;
	st = np_stats();
	if (st)
		st->calls++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
