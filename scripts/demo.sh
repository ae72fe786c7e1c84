#!/bin/bash
# make demo: a two-namespace test network, netprobe xdp on one end, mixed
# traffic from the other for DEMO_SECONDS, the live table in between.
set -euo pipefail
NETPROBE=$(realpath "${1:-target/release/netprobe}")
SECONDS_TO_RUN=${DEMO_SECONDS:-8}
cd "$(dirname "$0")"
. ./netns-lib.sh

[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates network namespaces)" >&2; exit 1; }
make_pair
echo "demo: $NS_A/$IF_A (198.18.0.1) <-> $NS_B/$IF_B (198.18.0.2); netprobe xdp on $IF_B for ${SECONDS_TO_RUN}s"
echo "demo: from $NS_A: UDP frames of 60 and 1000 bytes and TCP frames of 60 bytes, one every 2 ms (trafgen), an IPv4 ping every 100 ms, an IPv6 ping every 250 ms"
echo "demo: 'program cost' is the XDP program's own run time per packet from the kernel's BPF statistics; at this low rate every packet finds cold caches, so it reads far higher than at line rate (README, --cost)"

conf=$(mktemp)
{ trafgen_frame 17 60; trafgen_frame 6 60; trafgen_frame 17 1000; } > "$conf"
ip netns exec "$NS_A" trafgen --dev "$IF_A" --conf "$conf" -t 2ms -q >/dev/null 2>&1 & disown
ip netns exec "$NS_A" ping -q -i 0.1 198.18.0.2 >/dev/null 2>&1 & disown
ip netns exec "$NS_A" ping -6 -q -i 0.25 2001:2::2 >/dev/null 2>&1 & disown

ip netns exec "$NS_B" "$NETPROBE" xdp "$IF_B" --mode auto --cost --duration "${SECONDS_TO_RUN}s"
rm -f "$conf"
echo "demo: done; namespaces removed"
