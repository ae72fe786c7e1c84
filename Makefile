# netprobe: `make demo` shows it working, `make test` proves it. Both start
# from a bare Debian machine: `setup` installs what is missing (as root).

CARGO ?= cargo
PREFIX ?= /usr/local
NETPROBE := target/release/netprobe

# Build: clang/llvm compile the BPF C, libelf/zlib/pkg-config build the
# vendored libbpf. Run and test: iproute2 (namespaces, veth), bpftool
# (make vmlinux), netsniff-ng (trafgen), xdp-tools/libxdp1 (a peer program to
# replace, and the benchmark's peer), tcpdump (and libpcap0.8, which netprobe opens at
# run time to compile the rules its tables cannot hold), ping, setpriv (util-linux),
# nftables and ethtool. Kernel matrix (make vmtest): qemu, busybox, cpio, xz.
DEB_PACKAGES := clang llvm libelf-dev zlib1g-dev pkg-config make \
	iproute2 bpftool netsniff-ng xdp-tools libxdp1 tcpdump libpcap0.8 iputils-ping util-linux procps nftables \
	qemu-system-x86 busybox-static cpio xz-utils bpftrace prometheus curl

.PHONY: all setup build test lint unit vmtest demo bench vmlinux install install-files clean

all: build

setup:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "setup: installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "setup: cargo not found; install Rust first" >&2; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

build: setup
	$(CARGO) build --release --locked

lint: setup
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Everything, as root: unit tests, BPF_PROG_TEST_RUN, namespaces and live
# traffic, then the kernel matrix with the binary the tests just built.
test: setup lint
	$(CARGO) test --locked
	scripts/vmtest.sh target/debug/netprobe

# The kernel matrix alone: Debian 6.1 and 6.12 under qemu, and this host.
vmtest: build
	scripts/vmtest.sh $(NETPROBE)

# Only the tests that need no root.
unit: setup
	$(CARGO) test --locked --lib

demo: build
	scripts/demo.sh $(NETPROBE)

bench: setup
	scripts/bench.sh

# Regenerate vmlinux.h from the running kernel's BTF.
vmlinux:
	@command -v bpftool >/dev/null || $(MAKE) setup
	arch=$$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/'); \
	mkdir -p vmlinux/$$arch && \
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/$$arch/vmlinux.h.tmp && \
	mv vmlinux/$$arch/vmlinux.h.tmp vmlinux/$$arch/vmlinux.h

# Binary, man pages and completions, all generated from the same clap
# definitions. Honours PREFIX and DESTDIR.
BINDIR := $(DESTDIR)$(PREFIX)/bin
MANDIR := $(DESTDIR)$(PREFIX)/share/man/man1
BASHDIR := $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR := $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR := $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d

install: build install-files

install-files:
	install -d $(BINDIR) $(MANDIR) $(BASHDIR) $(ZSHDIR) $(FISHDIR)
	install -m 755 $(NETPROBE) $(BINDIR)/netprobe
	$(NETPROBE) manpages $(MANDIR)
	$(NETPROBE) completions bash > $(BASHDIR)/netprobe
	$(NETPROBE) completions zsh > $(ZSHDIR)/_netprobe
	$(NETPROBE) completions fish > $(FISHDIR)/netprobe.fish

clean:
	$(CARGO) clean
