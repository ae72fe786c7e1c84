//! What the kernel offers and how to ask for it: interfaces and XDP
//! attachment, feature probes, traceable functions, capabilities, BPF
//! run-time statistics, AF_PACKET rings, per-CPU counters and libbpf's log.
//! Everything above builds on this layer; it imports nothing above it.
pub mod bpf_stats;
pub mod counters;
pub mod features;
pub mod libbpf_log;
pub mod netdev;
pub mod netlink;
pub mod packet_socket;
pub mod privilege;
pub mod symbols;
pub mod test_run;
