# Shared by demo.sh and bench.sh: two throwaway hosts joined by a veth pair,
# named after this shell's pid, removed on any exit.
# After `make_pair`: $NS_A/$IF_A (198.18.0.1, 02::0a) <-> $NS_B/$IF_B (198.18.0.2, 02::0b).

NS_A="npa$$"; NS_B="npb$$"; IF_A="npva$$"; IF_B="npvb$$"

cleanup() {
	# Every process inside the namespaces (trafgen forks workers of its own).
	for ns in "$NS_A" "$NS_B"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
	done
	wait 2>/dev/null
	ip netns del "$NS_A" 2>/dev/null
	ip netns del "$NS_B" 2>/dev/null
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_pair() {
	ip netns add "$NS_A"
	ip netns add "$NS_B"
	ip link add "$IF_A" netns "$NS_A" address 02:00:00:00:00:0a type veth \
		peer name "$IF_B" netns "$NS_B" address 02:00:00:00:00:0b
	for side in "$NS_A $IF_A 198.18.0.1 2001:2::1" "$NS_B $IF_B 198.18.0.2 2001:2::2"; do
		set -- $side
		ip -n "$1" link set lo up
		ip -n "$1" link set "$2" up
		ip -n "$1" addr add "$3/24" dev "$2"
		ip -n "$1" addr add "$4/64" dev "$2" nodad
	done
}

# trafgen config: one frame from A to B. $1 = ip protocol (17 udp, 6 tcp), $2 = frame length (>= 60).
trafgen_frame() {
	local proto=$1 len=$2 l4
	local ip_len=$((len - 14))
	if [ "$proto" = 6 ]; then
		l4="0x9c,0x41, 0,80, 0,0,0,1, 0,0,0,0, 0x50,0x02, 0xff,0xff, csumtcp(14,34), 0,0"
		fill=$((ip_len - 40))
	else
		l4="0x9c,0x40, 0,9, c16($((ip_len - 20))), csumudp(14,34)"
		fill=$((ip_len - 28))
	fi
	echo "{ 0x02,0,0,0,0,0x0b, 0x02,0,0,0,0,0x0a, 0x08,0x00,"
	echo "  0x45,0,c16($ip_len), 0,0,0,0, 64,$proto, csumip(14,33), 198,18,0,1, 198,18,0,2,"
	echo "  $l4, fill(0x5a, $fill) }"
}
