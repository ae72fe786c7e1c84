//! Interfaces and their XDP attachments: lookup, query, attach through a
//! bpf_link, and detaching what is there for `--replace`.
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::libbpf_sys;
use libbpf_rs::query::{LinkInfoIter, LinkTypeInfo};
use serde::Serialize;

use super::netlink;

/// The interface index of `name` in this network namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
        bail!("'{name}' is not a valid interface name");
    }
    nix::net::if_::if_nametoindex(name)
        .map_err(|_| anyhow!("no interface named '{name}' in this network namespace"))
}

/// The mode a program is actually attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    Native,
    Skb,
}

impl XdpMode {
    fn flag(self) -> u32 {
        match self {
            XdpMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            XdpMode::Skb => libbpf_sys::XDP_FLAGS_SKB_MODE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Skb => "skb",
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A program already attached to an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedProgram {
    pub id: u32,
    pub name: String,
    pub mode: &'static str,
    /// The id of the bpf_link holding it, if it is held by one.
    pub link_id: Option<u32>,
}

impl fmt::Display for AttachedProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "id {} name '{}' in {} mode",
            self.id, self.name, self.mode
        )?;
        if let Some(link) = self.link_id {
            write!(f, " (bpf_link {link})")?;
        }
        Ok(())
    }
}

fn errno_result(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::from_raw_os_error(-ret))
    } else {
        Ok(ret)
    }
}

/// The name of the loaded program with this id.
pub fn program_name(id: u32) -> Result<String> {
    let fd = errno_result(unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) })
        .with_context(|| format!("opening program id {id}"))?;
    // SAFETY: the fd was just returned to us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let info = prog_info(fd.as_fd())?;
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&name).into_owned())
}

/// The kernel's `bpf_prog_info` for a program fd.
pub fn prog_info(fd: BorrowedFd<'_>) -> Result<libbpf_sys::bpf_prog_info> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    errno_result(unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len)
    })
    .context("reading program info")?;
    Ok(info)
}

/// The bpf_link holding program `prog_id` on `ifindex`, if a link holds it.
/// Link info names only the ifindex, which repeats across network
/// namespaces, so the program id must match too; a program shared by links
/// in several namespaces is ambiguous and reported as an error.
fn xdp_link_id(ifindex: u32, prog_id: u32) -> Result<Option<u32>> {
    let links: Vec<u32> = LinkInfoIter::default()
        .filter_map(|link| match link.info {
            LinkTypeInfo::Xdp(xdp) if xdp.ifindex == ifindex && link.prog_id == prog_id => {
                Some(link.id)
            }
            _ => None,
        })
        .collect();
    match links[..] {
        [] => Ok(None),
        [id] => Ok(Some(id)),
        _ => bail!(
            "program {prog_id} is attached through several bpf_links ({links:?}) and netprobe \
             cannot tell which is this interface's; detach it with bpftool"
        ),
    }
}

/// The XDP program on `ifindex` in any mode, if there is one.
pub fn attached_program(ifindex: u32) -> Result<Option<AttachedProgram>> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    errno_result(unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) })
        .context("querying the interface's XDP program")?;
    let (id, mode) = if opts.drv_prog_id != 0 {
        (opts.drv_prog_id, "native")
    } else if opts.skb_prog_id != 0 {
        (opts.skb_prog_id, "skb")
    } else if opts.hw_prog_id != 0 {
        (opts.hw_prog_id, "offload")
    } else {
        return Ok(None);
    };
    let name = program_name(id).unwrap_or_else(|_| "?".into());
    Ok(Some(AttachedProgram {
        id,
        name,
        mode,
        link_id: xdp_link_id(ifindex, id)?,
    }))
}

/// Removes `prog` from `ifindex`: detaches its bpf_link, or for a program
/// attached through netlink, clears it in its mode.
pub fn detach(ifindex: u32, prog: &AttachedProgram) -> Result<()> {
    if let Some(link_id) = prog.link_id {
        let fd = errno_result(unsafe { libbpf_sys::bpf_link_get_fd_by_id(link_id) })
            .with_context(|| format!("opening bpf_link {link_id}"))?;
        // SAFETY: the fd was just returned to us and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        errno_result(unsafe { libbpf_sys::bpf_link_detach(fd.as_raw_fd()) })
            .with_context(|| format!("detaching bpf_link {link_id}"))?;
        return Ok(());
    }
    let flag = match prog.mode {
        "native" => libbpf_sys::XDP_FLAGS_DRV_MODE,
        "skb" => libbpf_sys::XDP_FLAGS_SKB_MODE,
        _ => libbpf_sys::XDP_FLAGS_HW_MODE,
    };
    errno_result(unsafe { libbpf_sys::bpf_xdp_detach(ifindex as i32, flag, std::ptr::null()) })
        .with_context(|| format!("detaching XDP program {}", prog.id))?;
    Ok(())
}

/// Attaches `prog` to `ifindex` in `mode` through a bpf_link: the kernel
/// detaches it when the returned fd closes, also when the process dies.
pub fn attach_xdp_link(prog: BorrowedFd<'_>, ifindex: u32, mode: XdpMode) -> io::Result<OwnedFd> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        flags: mode.flag(),
        ..Default::default()
    };
    let fd = errno_result(unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, libbpf_sys::BPF_XDP, &opts)
    })?;
    // SAFETY: the fd was just returned to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches in `mode`, or with `None` natively if the driver can and in skb
/// mode otherwise (`--mode auto`). Returns the link, the mode it got, and
/// for `None` the reason native mode was not used.
pub fn attach_xdp(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    iface: &str,
    mode: Option<XdpMode>,
) -> Result<(OwnedFd, XdpMode, Option<String>)> {
    let explain = |mode: XdpMode, err: io::Error| -> anyhow::Error {
        match (mode, err.raw_os_error()) {
            (XdpMode::Native, Some(libc::EOPNOTSUPP)) => anyhow!(
                "interface {iface} does not support native XDP (its driver lacks it); \
                 use --mode skb or --mode auto"
            ),
            (_, Some(libc::EBUSY | libc::EEXIST)) => {
                anyhow!("interface {iface} already has an XDP program; use --replace")
            }
            (_, Some(libc::EINVAL | libc::ERANGE)) => anyhow!(
                "interface {iface} refused XDP in {mode} mode ({err}); \
                 an MTU too large for XDP is a common cause"
            ),
            _ => anyhow!("attaching XDP to {iface} in {mode} mode: {err}"),
        }
    };
    match mode {
        Some(mode) => attach_xdp_link(prog, ifindex, mode)
            .map(|l| (l, mode, None))
            .map_err(|e| explain(mode, e)),
        None => match attach_xdp_link(prog, ifindex, XdpMode::Native) {
            Ok(link) => Ok((link, XdpMode::Native, None)),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EBUSY | libc::EEXIST | libc::EPERM)
                ) =>
            {
                Err(explain(XdpMode::Native, e))
            }
            Err(native_err) => {
                let why = match native_err.raw_os_error() {
                    Some(libc::EOPNOTSUPP) => "the driver lacks native XDP".to_string(),
                    _ => format!("native mode failed: {native_err}"),
                };
                attach_xdp_link(prog, ifindex, XdpMode::Skb)
                    .map(|l| (l, XdpMode::Skb, Some(why)))
                    .map_err(|e| explain(XdpMode::Skb, e))
            }
        },
    }
}

/// The driver behind `iface`, as ethtool names it (`veth`, `mlx5_core`),
/// if the interface answers ETHTOOL_GDRVINFO.
pub fn driver(iface: &str) -> Option<String> {
    /// `struct ethtool_drvinfo`.
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 4 * 32 + 12 + 5 * 4],
    }
    const ETHTOOL_GDRVINFO: u32 = 3;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    if iface.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 4 * 32 + 12 + 5 * 4],
    };
    // SAFETY: a zeroed ifreq is valid; the name fits with its NUL.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the fd was just returned to us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCETHTOOL with GDRVINFO writes at most sizeof(DrvInfo) into `info`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) } < 0 {
        return None;
    }
    let len = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..len]).into_owned())
}

/// The name of interface `index`, or `ifN` if it has gone.
pub fn interface_name(index: i32) -> String {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: the buffer has room for IF_NAMESIZE bytes as the call requires.
    let name = unsafe { libc::if_indextoname(index as u32, buf.as_mut_ptr().cast()) };
    if name.is_null() {
        return format!("if{index}");
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// The IPv4 and IPv6 addresses of `iface`.
pub fn interface_addrs(iface: &str) -> Result<Vec<IpAddr>> {
    let addrs = nix::ifaddrs::getifaddrs().context("listing interface addresses")?;
    Ok(addrs
        .filter(|a| a.interface_name == iface)
        .filter_map(|a| {
            let sa = a.address?;
            if let Some(v4) = sa.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect())
}

/// An interface and the XDP modes its driver offers.
#[derive(Serialize)]
pub struct InterfaceModes {
    pub name: String,
    pub ifindex: u32,
    /// Whether the driver runs XDP itself; `None` where the kernel (< 6.3)
    /// does not say.
    pub native: Option<bool>,
    pub skb: bool,
}

impl InterfaceModes {
    /// The modes as shown by `list` and `check`.
    pub fn modes_text(&self) -> &'static str {
        match self.native {
            Some(true) => "native, skb",
            Some(false) => "skb",
            None => "skb (native: unknown, kernel < 6.3 does not report it)",
        }
    }
}

/// NETDEV_XDP_ACT_BASIC: the driver runs XDP programs itself.
const XDP_ACT_BASIC: u64 = 1;

/// Every interface in this network namespace with its XDP modes, by ifindex.
pub fn interfaces() -> Vec<InterfaceModes> {
    let features = netlink::xdp_features();
    let mut out: Vec<InterfaceModes> = nix::net::if_::if_nameindex()
        .map(|list| {
            list.iter()
                .map(|i| {
                    let ifindex = i.index();
                    InterfaceModes {
                        name: i.name().to_string_lossy().into_owned(),
                        ifindex,
                        native: features
                            .as_ref()
                            .map(|f| f.get(&ifindex).is_some_and(|b| b & XDP_ACT_BASIC != 0)),
                        skb: true,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|i| i.ifindex);
    out
}
