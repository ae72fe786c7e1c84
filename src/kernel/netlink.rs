//! Just enough generic netlink to ask the "netdev" family for every
//! device's XDP feature bits. Read-only; nothing is attached to find out.
use std::collections::HashMap;
use std::io;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

struct Socket(i32);

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(self.0) };
    }
}

fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut a = Vec::with_capacity((len + 3) & !3);
    a.extend_from_slice(&(len as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize((len + 3) & !3, 0);
    a
}

fn request(
    sock: &Socket,
    family: u16,
    flags: u16,
    cmd: u8,
    attrs: &[u8],
) -> io::Result<Vec<Vec<u8>>> {
    let len = 16 + 4 + attrs.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&family.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid
    msg.extend_from_slice(&[cmd, 1, 0, 0]); // genl header: cmd, version
    msg.extend_from_slice(attrs);
    // SAFETY: sending our buffer on our socket.
    if unsafe { libc::send(sock.0, msg.as_ptr().cast(), msg.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: receiving into our buffer.
        let n = unsafe { libc::recv(sock.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut at = 0;
        let n = n as usize;
        while at + 16 <= n {
            let mlen = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
            if mlen < 16 || at + mlen > n {
                return Err(io::Error::other("bad netlink message"));
            }
            match kind {
                NLMSG_DONE => return Ok(replies),
                NLMSG_ERROR => {
                    let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    return Ok(replies);
                }
                _ => replies.push(buf[at + 20..at + mlen].to_vec()),
            }
            at += (mlen + 3) & !3;
        }
        if flags & NLM_F_DUMP == 0 {
            return Ok(replies);
        }
    }
}

fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

fn dump_xdp_features() -> io::Result<HashMap<u32, u64>> {
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_GENERIC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let sock = Socket(fd);
    let family = request(
        &sock,
        GENL_ID_CTRL,
        0,
        CTRL_CMD_GETFAMILY,
        &attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0"),
    )?
    .iter()
    .flat_map(|m| {
        attrs(m)
            .into_iter()
            .map(|(k, v)| (k, v.to_vec()))
            .collect::<Vec<_>>()
    })
    .find(|(k, v)| *k == CTRL_ATTR_FAMILY_ID && v.len() >= 2)
    .map(|(_, v)| u16::from_ne_bytes([v[0], v[1]]))
    .ok_or_else(|| io::Error::other("no netdev family"))?;
    let mut out = HashMap::new();
    for msg in request(&sock, family, NLM_F_DUMP, NETDEV_CMD_DEV_GET, &[])? {
        let (mut ifindex, mut features) = (None, 0u64);
        for (kind, v) in attrs(&msg) {
            match kind {
                NETDEV_A_DEV_IFINDEX if v.len() >= 4 => {
                    ifindex = Some(u32::from_ne_bytes(v[..4].try_into().unwrap()))
                }
                NETDEV_A_DEV_XDP_FEATURES if v.len() >= 8 => {
                    features = u64::from_ne_bytes(v[..8].try_into().unwrap())
                }
                _ => {}
            }
        }
        if let Some(i) = ifindex {
            out.insert(i, features);
        }
    }
    Ok(out)
}

/// What the netdev generic-netlink family says each interface's driver
/// supports in XDP (kernel 6.3 and later): ifindex -> NETDEV_XDP_ACT_* bits.
pub fn xdp_features() -> Option<HashMap<u32, u64>> {
    dump_xdp_features().ok()
}
