//! BPF_PROG_TEST_RUN on one frame: the program runs as if the frame had
//! arrived, without an interface. Callable from several threads at once on
//! the same program (each run uses the calling CPU's per-CPU map slots).
use std::io;
use std::os::fd::RawFd;

use libbpf_rs::libbpf_sys;

/// What one run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunResult {
    /// The program's return value (the XDP action, or a socket filter's
    /// byte count).
    pub retval: u32,
    /// Bytes of the frame as the program left it, written to `out`.
    pub out_len: usize,
}

/// Runs program `prog` once on `frame`; with `out`, the frame as the
/// program left it is written there (it must have room for what the
/// program may add).
pub fn run_once(prog: RawFd, frame: &[u8], out: Option<&mut [u8]>) -> io::Result<RunResult> {
    let (out_ptr, out_size) = match out {
        Some(buf) => (buf.as_mut_ptr().cast(), buf.len() as u32),
        None => (std::ptr::null_mut(), 0),
    };
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: frame.as_ptr().cast(),
        data_size_in: frame.len() as u32,
        data_out: out_ptr,
        data_size_out: out_size,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: the buffers outlive the call and their sizes are given.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog, &mut opts) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret));
    }
    Ok(RunResult {
        retval: opts.retval,
        out_len: opts.data_size_out as usize,
    })
}
