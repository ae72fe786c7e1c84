#!/bin/bash
# make bench: runs every benchmark and rewrites BENCHMARKS.md from their output.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench: run as root (BPF and network namespaces)" >&2; exit 1; }
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
	echo "# netprobe benchmarks"
	echo
	echo "Written by \`make bench\` on $(date -u +%Y-%m-%d): Linux $(uname -r), $(nproc) cores, $(clang --version | head -1)."
	echo "One run on a shared, noisy machine: compare figures within one table, measured side by side,"
	echo "not absolutes across runs or machines. Every line is reproduced by \`make bench\`; the section"
	echo "names the benchmark source that produced it."
	echo
	for bench in benches/*.rs; do
		name=$(basename "$bench" .rs)
		echo "bench: $name" >&2
		cargo bench --locked --bench "$name" 2>/dev/null
	done
} > "$tmp"
mv "$tmp" BENCHMARKS.md
trap - EXIT
echo "bench: wrote BENCHMARKS.md" >&2
