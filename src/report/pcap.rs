//! Classic pcap with nanosecond time stamps (magic 0xa1b23c4d), which
//! tcpdump, tshark and Wireshark read. Two fixed headers; no crate needed.
use std::io::{self, Write};

const MAGIC_NANOSECONDS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;

pub struct PcapWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header; `snaplen` is the largest record it will hold.
    pub fn new(mut out: W, snaplen: u32) -> io::Result<PcapWriter<W>> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_NANOSECONDS.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // time zone: UTC
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, written: 0 })
    }

    /// One record: the captured bytes and the frame's length on the wire.
    pub fn write(&mut self, sec: u32, nsec: u32, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&sec.to_le_bytes());
        h[4..8].copy_from_slice(&nsec.to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)?;
        self.written += 1;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records_have_the_documented_layout() {
        let mut w = PcapWriter::new(Vec::new(), 128).unwrap();
        w.write(1_700_000_000, 123_456_789, 1514, &[0xaa; 128])
            .unwrap();
        w.write(1_700_000_001, 5, 60, &[0xbb; 60]).unwrap();
        assert_eq!(w.written(), 2);
        let b = w.out;
        assert_eq!(b.len(), 24 + 16 + 128 + 16 + 60);
        assert_eq!(&b[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(
            u32::from_le_bytes(b[16..20].try_into().unwrap()),
            128,
            "snaplen"
        );
        assert_eq!(
            u32::from_le_bytes(b[20..24].try_into().unwrap()),
            1,
            "Ethernet"
        );
        let rec = &b[24..40];
        assert_eq!(
            u32::from_le_bytes(rec[4..8].try_into().unwrap()),
            123_456_789
        );
        assert_eq!(
            u32::from_le_bytes(rec[8..12].try_into().unwrap()),
            128,
            "captured"
        );
        assert_eq!(
            u32::from_le_bytes(rec[12..16].try_into().unwrap()),
            1514,
            "on the wire"
        );
    }
}
