//! An AF_PACKET socket with a socket filter and a memory-mapped TPACKET_V3
//! receive ring: the kernel writes frames into shared blocks, user space
//! reads them in place and hands each block back, with no copy per frame.
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use anyhow::{Context, Result};

/// Ring geometry: 32 blocks of 1 MiB. A block goes back to the kernel as soon
/// as it has been read; a block that is not full is handed over after
/// `BLOCK_TIMEOUT_MS` so that quiet links still show their frames promptly.
const BLOCK_SIZE: u32 = 1 << 20;
const BLOCK_COUNT: u32 = 32;
const FRAME_SIZE: u32 = 2048;
const BLOCK_TIMEOUT_MS: u32 = 50;

/// One frame as the ring holds it.
pub struct Frame<'a> {
    pub sec: u32,
    pub nsec: u32,
    /// The frame's length on the wire.
    pub len: u32,
    /// What reached user space: at most the filter's snap length.
    pub data: &'a [u8],
    pub ifindex: i32,
    pub outgoing: bool,
    /// The VLAN tag (TPID and TCI, big-endian) the kernel took off the
    /// frame into its metadata, if it did.
    pub vlan_tag: Option<[u8; 4]>,
}

/// `TP_STATUS_VLAN_VALID`, `TP_STATUS_VLAN_TPID_VALID` (linux/if_packet.h).
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ETH_P_8021Q: u16 = 0x8100;
/// Where a VLAN tag sits: after the destination and source addresses.
const TAG_AT: usize = 12;

impl Frame<'_> {
    /// The frame as it was on the wire, its VLAN tag back in place as
    /// tcpdump puts it back, at most `snaplen` bytes (0: all); and its
    /// length on the wire.
    pub fn on_the_wire(&self, snaplen: u32) -> (std::borrow::Cow<'_, [u8]>, u32) {
        let Some(tag) = self.vlan_tag.filter(|_| self.data.len() >= TAG_AT) else {
            return (self.data.into(), self.len);
        };
        let mut data = Vec::with_capacity(self.data.len() + tag.len());
        data.extend_from_slice(&self.data[..TAG_AT]);
        data.extend_from_slice(&tag);
        data.extend_from_slice(&self.data[TAG_AT..]);
        if snaplen > 0 {
            data.truncate(snaplen as usize);
        }
        (data.into(), self.len + tag.len() as u32)
    }
}

/// Kernel socket statistics since the socket was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames the filter passed to the socket, whether or not there was room.
    pub received: u64,
    /// Of those, frames dropped because the ring was full.
    pub dropped: u64,
}

pub struct PacketSocket {
    fd: OwnedFd,
    ring: NonNull<u8>,
    ring_len: usize,
    next_block: u32,
    stats: SocketStats,
}

fn check(ret: libc::c_int, what: &str) -> Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error()).with_context(|| what.to_string())
    } else {
        Ok(ret)
    }
}

/// The kernel charges a socket's filter to `net.core.optmem_max` and says
/// only ENOMEM when the filter is larger: name the setting.
fn too_small_optmem(e: anyhow::Error) -> anyhow::Error {
    let enomem = e
        .downcast_ref::<io::Error>()
        .is_some_and(|io| io.raw_os_error() == Some(libc::ENOMEM));
    let Ok(limit) = std::fs::read_to_string("/proc/sys/net/core/optmem_max") else {
        return e;
    };
    if !enomem {
        return e;
    }
    e.context(format!(
        "the kernel takes a socket filter of at most net.core.optmem_max ({} bytes) and this \
         one is larger; raise it: sysctl -w net.core.optmem_max=65536",
        limit.trim()
    ))
}

fn setsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    what: &str,
) -> Result<()> {
    // SAFETY: `value` points to a live T of the size given.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    check(ret, what).map(drop)
}

impl PacketSocket {
    /// Opens a socket on `ifindex` (0: every interface) with `filter`
    /// attached. The socket is bound only after the filter and the ring are
    /// in place, so no frame reaches it unfiltered.
    pub fn open(ifindex: u32, filter: BorrowedFd<'_>) -> Result<PacketSocket> {
        // Protocol 0: receives nothing until bind() names ETH_P_ALL.
        // SAFETY: plain socket(2).
        let raw = check(
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) },
            "opening an AF_PACKET socket",
        )?;
        // SAFETY: a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_BPF,
            &filter.as_raw_fd(),
            "attaching the socket filter (SO_ATTACH_BPF)",
        )
        .map_err(too_small_optmem)?;
        setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V3 as libc::c_int),
            "selecting TPACKET_V3",
        )?;
        let req = libc::tpacket_req3 {
            tp_block_size: BLOCK_SIZE,
            tp_block_nr: BLOCK_COUNT,
            tp_frame_size: FRAME_SIZE,
            tp_frame_nr: BLOCK_SIZE / FRAME_SIZE * BLOCK_COUNT,
            tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            &req,
            "setting up the receive ring",
        )?;
        let ring_len = (BLOCK_SIZE * BLOCK_COUNT) as usize;
        // SAFETY: mapping the ring the kernel just allocated for this fd.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error()).context("mapping the receive ring");
        }
        let socket = PacketSocket {
            fd,
            ring: NonNull::new(ring.cast()).context("mmap returned null")?,
            ring_len,
            next_block: 0,
            stats: SocketStats::default(),
        };
        // SAFETY: zeroed sockaddr_ll is valid; the fields set are the ones bind reads.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: binding with a sockaddr_ll of the right size.
        let ret = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        check(ret, "binding the packet socket")?;
        Ok(socket)
    }

    fn block(&self, index: u32) -> *mut libc::tpacket_block_desc {
        // SAFETY: index < BLOCK_COUNT, so the offset stays inside the mapping.
        unsafe { self.ring.as_ptr().add((index * BLOCK_SIZE) as usize).cast() }
    }

    /// Calls `f` for every frame in the blocks the kernel has handed over,
    /// returning each block as soon as it is read; stops early when `f`
    /// returns false. Returns the number of frames read.
    pub fn drain(&mut self, mut f: impl FnMut(&Frame<'_>) -> bool) -> usize {
        let mut frames = 0;
        loop {
            let block = self.block(self.next_block);
            // SAFETY: the block header lies in the mapping; block_status is
            // shared with the kernel, so it is read and written volatile.
            let status =
                unsafe { std::ptr::addr_of!((*block).hdr.bh1.block_status).read_volatile() };
            if status & libc::TP_STATUS_USER == 0 {
                return frames;
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            // SAFETY: the kernel handed this block over (TP_STATUS_USER).
            let (count, first) = unsafe {
                (
                    (*block).hdr.bh1.num_pkts,
                    (*block).hdr.bh1.offset_to_first_pkt,
                )
            };
            let mut offset = first as usize;
            let mut keep_going = true;
            for _ in 0..count {
                // SAFETY: offsets come from the kernel and stay within the block.
                let (frame, next) = unsafe { self.frame_at(block.cast(), offset) };
                frames += 1;
                keep_going = f(&frame);
                if !keep_going || next == 0 {
                    break;
                }
                offset += next as usize;
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            // SAFETY: as above; handing the block back to the kernel.
            unsafe {
                std::ptr::addr_of_mut!((*block).hdr.bh1.block_status)
                    .write_volatile(libc::TP_STATUS_KERNEL)
            };
            self.next_block = (self.next_block + 1) % BLOCK_COUNT;
            if !keep_going {
                return frames;
            }
        }
    }

    /// # Safety
    /// `block` must be a block handed to user space and `offset` the offset
    /// of a frame header in it.
    unsafe fn frame_at<'a>(&self, block: *const u8, offset: usize) -> (Frame<'a>, u32) {
        let hdr = &*block.add(offset).cast::<libc::tpacket3_hdr>();
        let addr_off = (std::mem::size_of::<libc::tpacket3_hdr>() + libc::TPACKET_ALIGNMENT - 1)
            & !(libc::TPACKET_ALIGNMENT - 1);
        let sll = &*block.add(offset + addr_off).cast::<libc::sockaddr_ll>();
        let data = std::slice::from_raw_parts(
            block.add(offset + usize::from(hdr.tp_mac)),
            hdr.tp_snaplen as usize,
        );
        (
            Frame {
                sec: hdr.tp_sec,
                nsec: hdr.tp_nsec,
                len: hdr.tp_len,
                data,
                ifindex: sll.sll_ifindex,
                outgoing: sll.sll_pkttype == libc::PACKET_OUTGOING,
                vlan_tag: (hdr.tp_status & TP_STATUS_VLAN_VALID != 0).then(|| {
                    let tpid = if hdr.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                        hdr.hv1.tp_vlan_tpid
                    } else {
                        ETH_P_8021Q
                    };
                    let tci = hdr.hv1.tp_vlan_tci as u16;
                    let [a, b] = tpid.to_be_bytes();
                    let [c, d] = tci.to_be_bytes();
                    [a, b, c, d]
                }),
            },
            hdr.tp_next_offset,
        )
    }

    /// Kernel statistics since open (the kernel resets its own on every read).
    pub fn stats(&mut self) -> Result<SocketStats> {
        // SAFETY: zeroed tpacket_stats_v3 is valid.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: getsockopt into a buffer of the size given.
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        check(ret, "reading PACKET_STATISTICS")?;
        self.stats.received += u64::from(st.tp_packets);
        self.stats.dropped += u64::from(st.tp_drops);
        Ok(self.stats)
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what open() mapped.
        unsafe { libc::munmap(self.ring.as_ptr().cast(), self.ring_len) };
    }
}
