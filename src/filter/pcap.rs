//! libpcap as the compiler of last resort: a rule the tables cannot hold
//! (`vlan`, `ether`, packet-data tests, service and host names, and the
//! rules of fields with `not` or an `or` of different fields, whose
//! clauses the direct path matches only on frames not cut short) is
//! compiled by libpcap itself, exactly as tcpdump compiles it, into a
//! classic BPF program that src/bpf/cbpf.h runs.
//!
//! libpcap is opened at run time (dlopen), so that netprobe still runs
//! where it is missing; only such rules then fail, with a line that says
//! which package to install.
use std::borrow::Cow;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

use super::words::tokens;

/// A classic BPF instruction (`struct bpf_insn`, `struct np_cbpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Instructions a program may have (`NP_PROGRAM_INSNS`): the kernel's own
/// limit for a classic BPF filter (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;
/// The link type and snap length tcpdump reads an Ethernet capture with.
const DLT_EN10MB: c_int = 1;
const SNAPLEN: c_int = 262_144;
/// The netmask tcpdump compiles with when it reads a file (`-r`): it
/// decides what `ip broadcast` means.
const NETMASK: u32 = 0;

#[repr(C)]
struct BpfProgram {
    len: c_uint,
    insns: *mut Insn,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type Compile =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type GetErr = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FreeCode = unsafe extern "C" fn(*mut BpfProgram);
type Close = unsafe extern "C" fn(*mut c_void);

struct Libpcap {
    open_dead: OpenDead,
    compile: Compile,
    geterr: GetErr,
    freecode: FreeCode,
    close: Close,
}

/// The names libpcap's shared library goes by (Debian's first).
const LIBRARY_NAMES: [&CStr; 3] = [c"libpcap.so.0.8", c"libpcap.so.1", c"libpcap.so"];

/// What to tell a user whose system has no libpcap.
pub const MISSING: &str = "netprobe compiles this with libpcap, which is not installed \
                           (Debian: apt-get install libpcap0.8)";

fn library() -> Option<&'static Libpcap> {
    static LIB: OnceLock<Option<Libpcap>> = OnceLock::new();
    LIB.get_or_init(|| {
        // SAFETY: dlopen/dlsym with NUL-terminated names; the handle is
        // never closed, so the function pointers stay valid.
        unsafe {
            let handle = LIBRARY_NAMES
                .iter()
                .map(|name| libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL))
                .find(|h| !h.is_null())?;
            let sym = |name: &CStr| {
                let p = libc::dlsym(handle, name.as_ptr());
                (!p.is_null()).then_some(p)
            };
            Some(Libpcap {
                open_dead: std::mem::transmute::<*mut c_void, OpenDead>(sym(c"pcap_open_dead")?),
                compile: std::mem::transmute::<*mut c_void, Compile>(sym(c"pcap_compile")?),
                geterr: std::mem::transmute::<*mut c_void, GetErr>(sym(c"pcap_geterr")?),
                freecode: std::mem::transmute::<*mut c_void, FreeCode>(sym(c"pcap_freecode")?),
                close: std::mem::transmute::<*mut c_void, Close>(sym(c"pcap_close")?),
            })
        }
    })
    .as_ref()
}

/// Whether libpcap could be opened.
pub fn available() -> bool {
    library().is_some()
}

/// Compiles `expr` as tcpdump does for an Ethernet capture (optimized).
/// `Err` is libpcap's message, or [`MISSING`].
pub fn compile(expr: &str) -> Result<Vec<Insn>, String> {
    compile_as(expr, true)
}

/// Compiles `expr` as `tcpdump -O` does, without libpcap's optimizer: the
/// expression's plain meaning, where the optimizer gets one wrong (it calls
/// `dst net 2001:db8::/127 and dst net 2001:db8::/127` one that rejects
/// all packets).
pub fn compile_unoptimized(expr: &str) -> Result<Vec<Insn>, String> {
    compile_as(expr, false)
}

/// The words of `expr` as libpcap is given them. libpcap 1.10 has no `gre`
/// keyword, which netprobe's grammar has (and the tables hold): where a
/// primitive begins with it, libpcap reads `proto gre`, what it means.
fn libpcap_words(expr: &str) -> Cow<'_, str> {
    let tokens = tokens(expr);
    let is_gre = |i: usize| {
        tokens[i].text == "gre"
            && (i == 0
                || matches!(
                    tokens[i - 1].text,
                    "and" | "&&" | "or" | "||" | "not" | "!" | "("
                ))
    };
    if !(0..tokens.len()).any(is_gre) {
        return Cow::Borrowed(expr);
    }
    let words: Vec<&str> = (0..tokens.len())
        .map(|i| {
            if is_gre(i) {
                "proto gre"
            } else {
                tokens[i].text
            }
        })
        .collect();
    Cow::Owned(words.join(" "))
}

fn compile_as(expr: &str, optimize: bool) -> Result<Vec<Insn>, String> {
    // Old libpcaps compile through global state.
    static LOCK: Mutex<()> = Mutex::new(());
    let lib = library().ok_or_else(|| MISSING.to_string())?;
    let text = CString::new(libpcap_words(expr).as_ref())
        .map_err(|_| "the rule holds a NUL byte".to_string())?;
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the handle is checked for NULL and closed on every path; the
    // program is freed after its instructions are copied out.
    unsafe {
        let pcap = (lib.open_dead)(DLT_EN10MB, SNAPLEN);
        if pcap.is_null() {
            return Err("libpcap could not open a capture handle".into());
        }
        let mut prog = BpfProgram {
            len: 0,
            insns: std::ptr::null_mut(),
        };
        let result = if (lib.compile)(
            pcap,
            &mut prog,
            text.as_ptr(),
            c_int::from(optimize),
            NETMASK,
        ) != 0
        {
            let msg = CStr::from_ptr((lib.geterr)(pcap)).to_string_lossy();
            Err(msg
                .trim_start_matches("syntax error in filter expression: ")
                .to_string())
        } else {
            let insns = std::slice::from_raw_parts(prog.insns, prog.len as usize).to_vec();
            (lib.freecode)(&mut prog);
            Ok(insns)
        };
        (lib.close)(pcap);
        result
    }
}

/// Checks what cbpf.h relies on: known opcodes, jumps that stay inside the
/// program, scratch slots below 16, and a return at the end.
pub fn validate(insns: &[Insn]) -> Result<(), String> {
    if insns.is_empty() || insns.len() > MAX_INSNS {
        return Err(format!(
            "libpcap compiled it into {} instructions; netprobe runs programs of at most \
             {MAX_INSNS}: split the rule",
            insns.len()
        ));
    }
    for (pc, i) in insns.iter().enumerate() {
        let next = pc + 1;
        let inside = |off: u32| next + (off as usize) < insns.len();
        let ok = match i.code & 0x07 {
            // ld / ldx: imm, abs, ind, mem, len, msh
            0x00 => {
                matches!(
                    i.code,
                    0x00 | 0x20 | 0x28 | 0x30 | 0x40 | 0x48 | 0x50 | 0x80
                ) || (i.code == 0x60 && i.k < 16)
            }
            0x01 => matches!(i.code, 0x01 | 0x81 | 0xb1) || (i.code == 0x61 && i.k < 16),
            0x02 | 0x03 => i.code & 0xf8 == 0 && i.k < 16,
            0x04 => (i.code & 0xf0) <= 0xa0 && i.code & 0x07 == 0x04,
            0x05 => match i.code & 0xf0 {
                // libpcap's protochain loops back with an unsigned jump
                // that wraps around; cbpf.h adds it the same way.
                0x00 => i.code == 0x05 && (next as u32).wrapping_add(i.k) < insns.len() as u32,
                0x10..=0x40 => inside(u32::from(i.jt)) && inside(u32::from(i.jf)),
                _ => false,
            },
            0x06 => matches!(i.code & 0x18, 0x00 | 0x10),
            _ => matches!(i.code, 0x07 | 0x87),
        };
        // Loads at the kernel's ancillary offsets (SKF_AD_OFF) are for live
        // Linux sockets only; libpcap emits none for a dead handle.
        let ancillary = matches!(i.code & 0xe0, 0x20 | 0xa0) && i.k >= 0xffff_f000;
        if !ok || ancillary {
            return Err(format!(
                "libpcap produced instruction {pc} (code {:#06x}) that netprobe does not run",
                i.code
            ));
        }
    }
    if insns[insns.len() - 1].code & 0x07 != 0x06 {
        return Err("libpcap's program does not end in a return".into());
    }
    Ok(())
}
