//! The libbpf-rs skeletons that `build.rs` generates from `src/bpf/*.bpf.c`.
#![allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    non_camel_case_types,
    unused
)]

pub mod xdp {
    include!(concat!(env!("OUT_DIR"), "/xdp.skel.rs"));
}

pub mod kprobe {
    include!(concat!(env!("OUT_DIR"), "/kprobe.skel.rs"));
}

pub mod sockfilter {
    include!(concat!(env!("OUT_DIR"), "/sockfilter.skel.rs"));
}

/// The empty `return XDP_PASS` program, the baseline of `make bench`.
pub mod xdp_pass {
    include!(concat!(env!("OUT_DIR"), "/xdp_pass.skel.rs"));
}

/// The minimal `return XDP_DROP` program, the drop baseline of `make bench`.
pub mod xdp_drop {
    include!(concat!(env!("OUT_DIR"), "/xdp_drop.skel.rs"));
}

/// A minimal validating IPv4 classifier: the floor under netprobe's cost in `make bench`.
pub mod xdp_floor {
    include!(concat!(env!("OUT_DIR"), "/xdp_floor.skel.rs"));
}
