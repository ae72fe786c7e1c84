#!/bin/bash
# make vmtest: the kernel matrix. Boots Debian's 6.1 and 6.12 cloud kernels
# under qemu (TCG: no KVM here) with a busybox initramfs holding netprobe,
# and runs tests/vm/scenarios.sh there, where kprobes and fentry work; then
# runs the same scenarios on this host's kernel, where they do not.
# Kernel packages are cached outside the repository, in $CACHE.
# With --bench first, it runs the connect() cost benchmark instead and prints
# "VMBENCH kernel backend ns_per_connect" lines (benches/kprobe.rs reads them).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${NETPROBE_VMTEST_CACHE:-/var/cache/netprobe-vmtest}
BENCH=
if [ "${1:-}" = --bench ]; then
	BENCH=1
	shift
fi
NETPROBE=${1:-target/release/netprobe}
KERNELS=(${NETPROBE_VMTEST_KERNELS:-linux-image-6.1.0-47-cloud-amd64 linux-image-6.12.111+deb12-cloud-amd64-unsigned})
[ "$(id -u)" = 0 ] || { echo "vmtest: run as root" >&2; exit 1; }
[ -x "$NETPROBE" ] || { echo "vmtest: $NETPROBE is not built (make build)" >&2; exit 1; }

total_pass=0
total_fail=0
tally() { # log name
	local summary
	summary=$(grep -a 'VMTEST summary' "$1" | tail -1 || true)
	grep -a 'VMTEST \(ok\|FAIL\)' "$1" | sed "s/.*VMTEST /  $2: /" || true
	if [ -z "$summary" ]; then
		echo "  $2: FAIL no summary (the run did not finish); last lines:"
		tail -20 "$1" | sed 's/^/    /'
		total_fail=$((total_fail + 1))
		return
	fi
	total_pass=$((total_pass + $(echo "$summary" | sed 's/.*pass=\([0-9]*\).*/\1/')))
	total_fail=$((total_fail + $(echo "$summary" | sed 's/.*fail=\([0-9]*\).*/\1/')))
}

kernel_dir() { # package -> unpacked directory, downloading once
	local pkg=$1 dir=$CACHE/$1
	if [ ! -d "$dir/boot" ]; then
		mkdir -p "$CACHE"
		if ! ls "$CACHE/${pkg}"_*.deb >/dev/null 2>&1; then
			(cd "$CACHE" && { apt-get download "$pkg" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "$pkg"; }; })
		fi
		rm -rf "$dir.tmp"
		dpkg -x "$CACHE/${pkg}"_*.deb "$dir.tmp"
		mv "$dir.tmp" "$dir"
	fi
	echo "$dir"
}

# Copies a program and the shared libraries it needs into the image.
copy_with_libs() { # root source destination
	local root=$1 src=$2 dst=$3 lib
	mkdir -p "$root$(dirname "$dst")"
	cp -L "$src" "$root$dst"
	for lib in $(ldd "$src" | grep -o '/[^ )]*'); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}

build_initramfs() { # kernel-dir output
	local kdir=$1 out=$2 root veth
	root=$(mktemp -d)
	mkdir -p "$root"/{bin,sbin,lib,proc,sys,dev,run,tmp,etc}
	cp /bin/busybox "$root/bin/busybox"
	copy_with_libs "$root" "$NETPROBE" /bin/netprobe
	copy_with_libs "$root" "$(command -v ip)" /sbin/ip
	copy_with_libs "$root" "$(command -v setpriv)" /sbin/setpriv
	# netprobe opens libpcap at run time (dlopen), for rules its tables cannot hold.
	pcap=$(ldconfig -p | grep -o '/[^ ]*/libpcap\.so\.0\.8$' | head -1)
	[ -z "$pcap" ] || copy_with_libs "$root" "$pcap" "$pcap"
	veth=$(find "$kdir/lib/modules" -name 'veth.ko*' | head -1)
	case "$veth" in
	*.xz) xz -dc "$veth" >"$root/lib/veth.ko" ;; # busybox insmod cannot decompress
	*) cp "$veth" "$root/lib/veth.ko" ;;
	esac
	cp tests/vm/scenarios.sh "$root/scenarios.sh"
	[ -z "$BENCH" ] || gcc -O2 -static -o "$root/bin/connect_loop" tests/vm/connect_loop.c
	cat >"$root/init" <<INIT
#!/bin/busybox sh
${BENCH:+export CONNECT_LOOP=/bin/connect_loop}
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf
/sbin/ip link set lo up
insmod /lib/veth.ko
echo "VMTEST kernel \$(uname -r)"
IP=/sbin/ip SETPRIV=/sbin/setpriv sh /scenarios.sh /bin/netprobe "kprobe fentry tracepoint" "kprobe fentry"
poweroff -f
INIT
	chmod +x "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
	rm -rf "$root"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for pkg in "${KERNELS[@]}"; do
	kdir=$(kernel_dir "$pkg")
	vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -1)
	echo "vmtest: $pkg" >&2
	build_initramfs "$kdir" "$work/initramfs.gz"
	# A kernel that dies before its init runs (under TCG, 6.12 now and then
	# takes an int3 oops in early boot) has run nothing of netprobe's: it is
	# booted again, twice at most. A death after init started is a failure.
	for boot in 1 2 3; do
		timeout 900 qemu-system-x86_64 -accel tcg -cpu max -m 2048 -smp 2 -nographic -no-reboot \
			-kernel "$vmlinuz" -initrd "$work/initramfs.gz" \
			-append "console=ttyS0 quiet panic=-1" >"$work/$pkg.log" 2>&1 || true
		grep -aq 'VMTEST kernel' "$work/$pkg.log" || ! grep -aq 'Kernel panic' "$work/$pkg.log" && break
		echo "vmtest: $pkg died booting, before its init ran (boot $boot); booting it again" >&2
	done
	kernel=$(grep -a -m1 'VMTEST kernel' "$work/$pkg.log" | sed 's/.*VMTEST kernel //' | tr -d '\r' || echo "$pkg")
	if [ -n "$BENCH" ]; then
		grep -a 'VMBENCH' "$work/$pkg.log" | tr -d '\r' | sed "s/.*VMBENCH /VMBENCH $kernel /"
		continue
	fi
	tally "$work/$pkg.log" "$kernel"
done
[ -z "$BENCH" ] || exit 0

echo "vmtest: host kernel" >&2
# The host's expectations follow what netprobe check finds here (on this
# project's machines: no kprobes, fentry refused, so only the tracepoint).
check=$("$NETPROBE" check --json)
host_backends=tracepoint
host_auto=tracepoint
for b in kprobe fentry; do
	item=$(echo "$check" | grep -o "{[^{}]*\"what\":\"${b}s\?\"}" || true)
	if echo "$item" | grep -q '"available":true'; then
		host_backends="$host_backends $b"
		[ "$host_auto" = fentry ] || host_auto=$b
	fi
done
sh tests/vm/scenarios.sh "$(realpath "$NETPROBE")" "$host_backends" "$host_auto" >"$work/host.log" 2>&1 || true
tally "$work/host.log" "host $(uname -r)"

echo "vmtest: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && [ "$total_pass" -gt 0 ]
