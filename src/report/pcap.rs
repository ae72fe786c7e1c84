//! Classic pcap with nanosecond time stamps (magic 0xa1b23c4d), which
//! tcpdump, tshark and Wireshark read. Two fixed headers; no crate needed.
use std::io::{self, Write};

const MAGIC_NANOSECONDS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;

/// Bytes of records gathered before they are written out.
const BATCH: usize = 1 << 16;

/// Writes whole records only as far as the output takes them: after a
/// failed write it knows how many records, and how many bytes of the file,
/// were written whole, so that a file can be cut back to its last whole
/// record (see [`PcapWriter::whole_bytes`]).
pub struct PcapWriter<W: Write> {
    out: W,
    /// Records not yet written, back to back.
    pending: Vec<u8>,
    /// Where each pending record ends in `pending`.
    pending_ends: Vec<usize>,
    whole_records: u64,
    whole_bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header and flushes it, so that an output that cannot
    /// be written fails here, before the capture starts; `snaplen` is the
    /// largest record it will hold.
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
        out.flush()?;
        Ok(PcapWriter {
            out,
            pending: Vec::with_capacity(BATCH),
            pending_ends: Vec::new(),
            whole_records: 0,
            whole_bytes: h.len() as u64,
        })
    }

    /// One record: the captured bytes and the frame's length on the wire.
    pub fn write(&mut self, sec: u32, nsec: u32, orig_len: u32, data: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(&sec.to_le_bytes());
        self.pending.extend_from_slice(&nsec.to_le_bytes());
        self.pending
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(&orig_len.to_le_bytes());
        self.pending.extend_from_slice(data);
        self.pending_ends.push(self.pending.len());
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Records written whole to the output.
    pub fn whole_records(&self) -> u64 {
        self.whole_records
    }

    /// Bytes of the output up to the end of the last whole record.
    pub fn whole_bytes(&self) -> u64 {
        self.whole_bytes
    }

    /// Writes the pending records out. On an error, the records written
    /// whole before it are counted; the rest are dropped.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut done = 0;
        let result = loop {
            if done == self.pending.len() {
                break self.out.flush();
            }
            match self.out.write(&self.pending[done..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let whole = self.pending_ends.partition_point(|&end| end <= done);
        self.whole_records += whole as u64;
        self.whole_bytes += whole
            .checked_sub(1)
            .map_or(0, |last| self.pending_ends[last]) as u64;
        self.pending.clear();
        self.pending_ends.clear();
        result
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
        w.flush().unwrap();
        assert_eq!(w.whole_records(), 2);
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

    /// Takes `room` bytes, then fails with ENOSPC, as a full disk does.
    struct Full {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room - self.taken.len());
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_output_counts_only_whole_records() {
        let full = |room| Full {
            taken: Vec::new(),
            room,
        };
        // No room for the header: an error at once.
        assert!(PcapWriter::new(full(10), 65535).is_err());
        // Room for the header, two records of 16 + 60 and half a third.
        let mut w = PcapWriter::new(full(24 + 2 * 76 + 30), 65535).unwrap();
        for _ in 0..3 {
            w.write(1, 2, 60, &[0xcc; 60]).unwrap();
        }
        let e = w.flush().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(w.whole_records(), 2);
        assert_eq!(w.whole_bytes(), 24 + 2 * 76);
        assert_eq!(
            w.out.taken.len(),
            24 + 2 * 76 + 30,
            "the cut record is there to cut"
        );
    }
}
