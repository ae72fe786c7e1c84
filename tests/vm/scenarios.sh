#!/bin/sh
# The kernel-matrix scenarios: run in each VM kernel by its /init, and on the
# host by scripts/vmtest.sh. POSIX sh (busybox in the VMs). Prints one
# "VMTEST ok|FAIL name: detail" line per check and a closing
# "VMTEST summary pass=N fail=N".
#
# usage: scenarios.sh NETPROBE AVAILABLE_BACKENDS AUTO_BACKEND
#   AVAILABLE_BACKENDS: the backends this kernel must attach with, e.g. "kprobe fentry tracepoint"
#   AUTO_BACKEND: what --backend auto must pick here
# With CONNECT_LOOP=path (tests/vm/connect_loop.c, built static), it runs the
# benchmark instead: ns per connect() with no probe and with each backend,
# as "VMBENCH backend ns" lines.
NP=$1
# busybox sh prefers its own applets: the VMs pass iproute2 and util-linux by path.
IP=${IP:-ip}
SETPRIV=${SETPRIV:-setpriv}
AVAILABLE=$2
AUTO=$3
N=5                # connects per run
USER_ID=4242       # connects run as this uid; netprobe filters on it (-u)
WORK=$(mktemp -d)
pass=0
fail=0

ok() { echo "VMTEST ok $1"; pass=$((pass + 1)); }
bad() { echo "VMTEST FAIL $1: $2"; fail=$((fail + 1)); }

# N connects to a closed port on loopback, as the test user, each its own nc.
connects() {
	i=0
	while [ $i -lt "$1" ]; do
		$SETPRIV --reuid=$USER_ID --regid=$USER_ID --clear-groups busybox nc -w 1 127.0.0.1 "${2:-9}" </dev/null >/dev/null 2>"$WORK/connect.err"
		i=$((i + 1))
	done
}

# Starts the command in the background, output in $WORK/out and $WORK/err,
# and waits (up to 60 s) until netprobe says it is attached, or is gone.
start() {
	# Emptied here, not by the background job's redirections: those happen
	# after the fork, and the wait below could read the previous run's
	# "attached" line and let the traffic start before this run attached.
	: >"$WORK/out"
	: >"$WORK/err"
	"$@" >>"$WORK/out" 2>>"$WORK/err" &
	NP_PID=$!
	t=0
	while [ $t -lt 600 ]; do
		grep -q attached "$WORK/err" 2>/dev/null && return 0
		kill -0 $NP_PID 2>/dev/null || return 1
		sleep 0.1
		t=$((t + 1))
	done
	return 1
}

stop() {
	sleep 1
	kill -INT $NP_PID
	wait $NP_PID
}

final() { grep '"final":true' "$WORK/out"; }
count_events() { grep -c '"event":"connect"' "$WORK/out"; }

if [ -n "${CONNECT_LOOP:-}" ]; then
	echo "VMBENCH none $("$CONNECT_LOOP" 20000 9)"
	for backend in $AVAILABLE; do
		if start "$NP" kprobe tcp_v4_connect --backend $backend --json --interval 1h; then
			echo "VMBENCH $backend $("$CONNECT_LOOP" 20000 9)"
			stop
			echo "VMBENCH $backend-calls $(final | sed -n 's/.*"calls":\([0-9]*\).*/\1/p')"
		fi
	done
	rm -rf "$WORK"
	exit 0
fi

# 1. tcp_v4_connect with each backend forced: exact calls, events with the
#    right addresses and ports, return values where the backend sees them.
for backend in kprobe fentry tracepoint; do
	name="connect-$backend"
	case " $AVAILABLE " in
	*" $backend "*) ;;
	*)
		# Not available here: must refuse in one line, with a non-zero exit.
		if "$NP" kprobe tcp_v4_connect --backend $backend --duration 1s >"$WORK/out" 2>"$WORK/err"; then
			bad "$name" "attached although this kernel should refuse"
		elif [ "$(wc -l <"$WORK/err")" -eq 1 ] && grep -q "$backend backend: this kernel" "$WORK/err"; then
			ok "$name-refused: $(cat "$WORK/err")"
		else
			bad "$name" "refusal not one clear line: $(cat "$WORK/err")"
		fi
		continue
		;;
	esac
	if ! start "$NP" kprobe tcp_v4_connect --backend $backend --json -u $USER_ID --interval 200ms; then
		bad "$name" "did not attach: $(cat "$WORK/err")"
		continue
	fi
	connects $N 9
	stop
	last=$(final)
	events=$(count_events)
	if ! echo "$last" | grep -q "\"backend\":\"$backend\".*\"tcp_v4_connect\":{\"calls\":$N,"; then
		bad "$name" "calls: $last; the connect helper said: $(cat "$WORK/connect.err"); netprobe said: $(tail -3 "$WORK/err")"
	elif [ "$events" -ne $N ]; then
		bad "$name" "$events connect events, want $N"
	elif [ "$(grep '"event":"connect"' "$WORK/out" | grep -c "\"uid\":$USER_ID,\"ip\":4,\"saddr\":\"127.0.0.1\",\"daddr\":\"127.0.0.1\"")" -ne $N ]; then
		bad "$name" "addresses: $(grep -m1 connect "$WORK/out")"
	elif [ "$(grep '"event":"connect"' "$WORK/out" | grep -c '"dport":9,')" -ne $N ]; then
		bad "$name" "ports: $(grep -m1 connect "$WORK/out")"
	elif [ $backend = tracepoint ] && [ "$(grep -c '"ret":null' "$WORK/out")" -ne $N ]; then
		bad "$name" "the tracepoint cannot see ret, so it must be null"
	elif [ $backend != tracepoint ] && [ "$(grep -c '"ret":0,' "$WORK/out")" -ne $N ]; then
		bad "$name" "tcp_v4_connect returns 0 for a connect the peer refuses later: $(grep -m1 connect "$WORK/out")"
	elif [ $backend != tracepoint ] && [ "$(grep '"event":"connect"' "$WORK/out" | grep -c '"sport":null')" -ne 0 ]; then
		bad "$name" "the return probe runs after the source port is picked"
	else
		ok "$name: $N calls, $N events"
	fi
done

# 2. --ret and --latency: histogram total equals calls, returns counted.
for backend in kprobe fentry; do
	case " $AVAILABLE " in *" $backend "*) ;; *) continue ;; esac
	name="ret-latency-$backend"
	if ! start "$NP" kprobe tcp_v4_connect --backend $backend --ret --latency --json -u $USER_ID --interval 200ms; then
		bad "$name" "did not attach: $(cat "$WORK/err")"
		continue
	fi
	connects $N 9
	stop
	last=$(final)
	total=$(echo "$last" | sed 's/"count":/\n"count":/g' | sed -n 's/^"count":\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')
	if ! echo "$last" | grep -q "\"calls\":$N,.*\"returns\":{\"0\":$N}"; then
		bad "$name" "returns: $last"
	elif [ "$total" -ne $N ]; then
		bad "$name" "latency histogram holds $total calls, want $N: $last"
	else
		ok "$name: returns {0: $N}, histogram total $total"
	fi
done

# 2b. Tracepoints by name (tp:NAME), on every kernel. Without a flow, calls
# through a raw tracepoint; with a socket or a packet, an event each. Each
# refused connect queues a SYN and a RST, moves a socket CLOSE -> SYN_SENT ->
# CLOSE, drops the SYN for want of a socket, and sends and takes one RST.
# (tcp_send_reset fires for a reset without a socket only from 6.10 on: the
# host tests check it there.)
TPS="tp:net_dev_queue tp:inet_sock_set_state tp:tcp_receive_reset tp:kfree_skb"
if start "$NP" kprobe $TPS --json -u $USER_ID --interval 200ms; then
	connects $N 9
	stop
	last=$(final)
	to9() { grep "\"event\":\"$1\"" "$WORK/out" | grep '"daddr":"127.0.0.1"' | grep -c "\"dport\":9,.*$2"; }
	if ! echo "$last" | grep -q "\"backend\":\"raw_tp+tp_btf\".*\"tp:net_dev_queue\":{\"calls\":$((2 * N)),.*\"tp:inet_sock_set_state\":{\"calls\":$((2 * N)),.*\"tp:tcp_receive_reset\":{\"calls\":$N,"; then
		bad tracepoints "calls: $last"
	elif [ "$(to9 tcp_receive_reset)" -ne $N ]; then
		bad tracepoints "reset events: $(grep -m2 reset "$WORK/out")"
	elif [ "$(to9 inet_sock_set_state '"oldstate":"SYN_SENT","newstate":"CLOSE"')" -ne $N ]; then
		bad tracepoints "state events: $(grep -m2 set_state "$WORK/out")"
	elif [ "$(to9 kfree_skb '"reason":"NO_SOCKET"')" -ne $N ]; then
		bad tracepoints "drop events: $(grep -m2 kfree_skb "$WORK/out")"
	else
		ok "tracepoints: $((2 * N)) packets queued (raw_tp); $N resets taken, $N SYNs dropped NO_SOCKET, $((2 * N)) state changes, each an event with its flow (tp_btf)"
	fi
else
	bad tracepoints "did not attach: $(cat "$WORK/err")"
fi

# 2c. Retransmissions: SYNs to a neighbour that never answers are sent again
# after a second; three connects given two seconds each are three events.
C=npvmc$$
D=npvmd$$
$IP netns add $C && $IP netns add $D &&
	$IP link add vc netns $C type veth peer name vd netns $D &&
	$IP -n $C link set vc up && $IP -n $D link set vd up &&
	$IP -n $C addr add 198.18.3.1/24 dev vc &&
	$IP -n $C neigh add 198.18.3.2 lladdr 02:00:00:00:00:0d nud permanent dev vc
t=0
while [ $t -lt 100 ] && ! $IP -n $C link show vc | grep -q 'state UP'; do
	sleep 0.1
	t=$((t + 1))
done
if start "$NP" kprobe tp:tcp_retransmit_skb --json --interval 200ms; then
	for i in 1 2 3; do
		$IP netns exec $C busybox nc -w 2 198.18.3.2 80 </dev/null >/dev/null 2>&1 &
	done
	sleep 2.5 # the connects' two seconds; their next retransmission would be at three
	stop
	got=$(grep '"event":"tcp_retransmit_skb"' "$WORK/out" | grep -c '"saddr":"198.18.3.1","daddr":"198.18.3.2".*"dport":80,')
	if [ "$got" -eq 3 ]; then
		ok "retransmissions: 3 SYNs sent again, 3 events with their flow"
	else
		bad retransmissions "$got events, want 3: $(grep -m3 retransmit "$WORK/out")"
	fi
else
	bad retransmissions "did not attach: $(cat "$WORK/err")"
fi
$IP netns del $C 2>/dev/null
$IP netns del $D 2>/dev/null

# 3. auto picks the best backend and says which.
if start "$NP" kprobe tcp_v4_connect --json -u $USER_ID --interval 200ms; then
	connects 1 9
	stop
	got=$(final | sed -n 's/.*"backend":"\([a-z]*\)".*/\1/p')
	case " $AUTO " in
	*" $got "*) ok "auto: $got ($(grep -m1 'using\|attached' "$WORK/err"))" ;;
	*) bad auto "picked '$got', want one of: $AUTO" ;;
	esac
else
	bad auto "did not attach: $(cat "$WORK/err")"
fi

# 4. netprobe xdp on a veth pair between two namespaces: exact ICMP count.
A=npvma$$
B=npvmb$$
$IP netns add $A && $IP netns add $B &&
	$IP link add va netns $A type veth peer name vb netns $B &&
	$IP -n $A link set va up && $IP -n $B link set vb up &&
	$IP -n $A addr add 198.18.0.1/24 dev va && $IP -n $B addr add 198.18.0.2/24 dev vb
# A new device sends through a qdisc that drops everything until the
# kernel's link watcher activates it, the same moment it reports operstate
# UP: wait for that on both ends (10 s at most).
t=0
while [ $t -lt 100 ] && ! { $IP -n $A link show va | grep -q 'state UP' &&
	$IP -n $B link show vb | grep -q 'state UP'; }; do
	sleep 0.1
	t=$((t + 1))
done
# What vb's driver took in, to tell a frame netprobe missed from one never sent.
vb_rx() { $IP -n $B -s link show vb | awk '/RX:/ { getline; print $2 }'; }
if ! $IP netns exec $B true 2>/dev/null; then
	bad xdp-veth "could not make the test network"
elif start $IP netns exec $B "$NP" xdp vb --json --interval 200ms; then
	rx_before=$(vb_rx)
	$IP netns exec $A ping -c $N -i 0.2 -q 198.18.0.2 >"$WORK/ping" 2>&1
	stop
	if final | grep -q "\"icmp\":{\"packets\":$N,\"bytes\":$((N * 98)),"; then
		ok "xdp-veth: $N echo requests of 98 bytes ($(final | sed -n 's/.*"mode":"\([a-z]*\)".*/\1/p') mode)"
	else
		bad xdp-veth "vb took in $(($(vb_rx) - rx_before)) frames while attached; ping: $(grep transmitted "$WORK/ping"); $(final)"
	fi
else
	bad xdp-veth "did not attach: $(cat "$WORK/err")"
fi

# Attaches netprobe xdp to vb with the rule arguments after NAME and WHAT,
# pings N times, and checks that RULE dropped exactly the N echo requests.
expect_dropped() {
	name=$1 what=$2
	shift 2
	if ! $IP netns exec $B true 2>/dev/null; then
		bad "$name" "no test network"
	elif start $IP netns exec $B "$NP" xdp vb "$@" --json --interval 200ms; then
		$IP netns exec $A ping -c $N -i 0.2 -W 1 -q 198.18.0.2 >/dev/null 2>&1
		stop
		if final | grep -q "\"drop\":{\"packets\":$N,\"bytes\":$((N * 98))}" &&
			final | grep -q "\"rule\":\"$RULE\",\"action\":\"drop\",\"packets\":$N,"; then
			ok "$name: $what"
		else
			bad "$name" "$(final | cut -c1-600)"
		fi
	else
		bad "$name" "did not attach: $(cat "$WORK/err")"
	fi
}

# 5. The program with actions (rule matcher, devmap, LRU hash) on the same
# pair: a drop rule takes exactly the N echo requests, which go unanswered.
RULE="icmp and dst host 198.18.0.2"
expect_dropped xdp-drop "$N echo requests dropped by rule, $N rule hits" --drop "$RULE"

# 5a. A reloadable rules file whose shape is too large for the rule set's
# classes (3,003 addresses squared): its destinations get classes of their
# own, read from a row per address (rules.h, np_addr_columns). The last
# rule takes the N echo requests.
RULE="src host 198.18.0.1 and icmp and dst host 198.18.0.2"
awk 'BEGIN { for (i = 0; i < 3000; i++) printf "src net 10.%d.%d.0/24 and icmp and dst host 198.18.0.9\n", i / 256, i % 256 }' >"$WORK/rules"
echo "$RULE" >>"$WORK/rules"
expect_dropped xdp-rules-file "$N echo requests dropped by the last of 3,001 rules, its shape keyed by classes of its own" --rules-file "$WORK/rules"

# 5b. A rule of fields with `not`: clauses the direct path compares on
# every frame long enough for what libpcap's program reads (fields.h).
RULE="icmp and not src host 198.18.0.9 and not dst port 53"
expect_dropped xdp-clauses "$N echo requests dropped by a rule with not, its clauses compared directly" --drop "$RULE"

# 5b'. The same rule after 100 others with `not` and one of libpcap's
# alone, too many for the direct path: each clause a shape of its own in
# the tables, dense cells (src/filter/clause_cells.rs), its program held
# for frames cut short: more held programs than may run on every frame,
# which the program loop passes over on whole frames.
awk 'BEGIN { for (i = 0; i < 100; i++) printf "src host 10.0.%d.1 and not tcp\n", i }' >"$WORK/rules"
echo "vlan and udp" >>"$WORK/rules"
echo "$RULE" >>"$WORK/rules"
expect_dropped xdp-clause-cells "$N echo requests dropped by the last of 102 rules, 101 with not, their clauses in the tables" --rules-file "$WORK/rules"

# 5c. A rule the tables cannot hold runs as libpcap's program in the
# kernel's classic BPF interpreter (cbpf.h: bpf_loop, bpf_xdp_load_bytes);
# the socket filter runs the same on its copy of the frame.
RULE="icmp[icmptype] == icmp-echo and not src host 198.18.0.9"
if ! $IP netns exec $B true 2>/dev/null; then
	bad xdp-program "no test network"
elif start $IP netns exec $B "$NP" xdp vb --drop "$RULE" --json --interval 200ms; then
	$IP netns exec $A ping -c $N -i 0.2 -W 1 -q 198.18.0.2 >/dev/null 2>&1
	stop
	if final | grep -qF "\"rule\":\"$RULE\",\"action\":\"drop\",\"packets\":$N,"; then
		ok "xdp-program: $N echo requests dropped by a libpcap program"
	else
		bad xdp-program "$(final)"
	fi
else
	bad xdp-program "did not attach: $(cat "$WORK/err")"
fi
if ! $IP netns exec $B true 2>/dev/null; then
	bad sockfilter-program "no test network"
elif start $IP netns exec $B "$NP" sockfilter -i vb "$RULE" -w /tmp/echo.pcap --json --interval 200ms; then
	$IP netns exec $A ping -c $N -i 0.2 -W 1 -q 198.18.0.2 >/dev/null 2>&1
	stop
	if final | grep -q "\"matched\":$N,"; then
		ok "sockfilter-program: $N echo requests matched by a libpcap program"
	else
		bad sockfilter-program "$(final)"
	fi
else
	bad sockfilter-program "did not attach: $(cat "$WORK/err")"
fi

# 6. The whole action program (xdp_np_actions: rules, --reply, --top at
# once, the most each kernel's verifier is asked to check), in skb mode,
# with a drop rule that takes none of the echo requests and B's own echo
# replies off, so every reply ping gets comes from XDP_TX.
$IP netns exec $B sh -c 'echo 1 > /proc/sys/net/ipv4/icmp_echo_ignore_all'
if ! $IP netns exec $B true 2>/dev/null; then
	bad xdp-reply "no test network"
elif start $IP netns exec $B "$NP" xdp vb --mode skb --reply icmp --top 3 --drop "udp and dst port 9" --json --interval 200ms; then
	$IP netns exec $A ping -c $N -i 0.2 -W 1 -q 198.18.0.2 >"$WORK/ping" 2>&1
	stop
	if grep -Eq " $N (packets )?received" "$WORK/ping" &&
		final | grep -q "\"tx\":{\"packets\":$N,\"bytes\":$((N * 98))}" &&
		final | grep -q '"top_sources":\[{"addr":"198.18.0.1",'; then
		ok "xdp-reply: $N echo replies sent by XDP, 198.18.0.1 the top source"
	else
		bad xdp-reply "ping: $(grep transmitted "$WORK/ping"); $(final)"
	fi
else
	bad xdp-reply "did not attach: $(cat "$WORK/err")"
fi
$IP netns del $A 2>/dev/null
$IP netns del $B 2>/dev/null

rm -rf "$WORK"
echo "VMTEST summary pass=$pass fail=$fail"
