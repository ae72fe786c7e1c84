//! Captures on disk: pcap and pcapng read for `--replay` and written for
//! `-w` and `--write-passed`/`--write-dropped`, through the pcap-file crate.
pub mod read;
pub mod write;
