//! Writing a capture, pcap (nanosecond time stamps, which tcpdump, tshark
//! and Wireshark read) or pcapng, through the pcap-file crate, whole records
//! only as far as the output takes them: after a failed write the writer
//! knows how many records, and how many bytes of the file, were written
//! whole, so that a file can be cut back to its last whole record (see
//! [`CaptureWriter::whole_bytes`]).
use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, TsResolution};

/// Bytes of records gathered before they are written out.
const BATCH: usize = 1 << 16;

/// The file formats written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap, nanosecond time stamps.
    Pcap,
    /// pcapng, one Ethernet interface with nanosecond time stamps.
    PcapNg,
}

impl Format {
    /// pcapng for a `.pcapng` file name, pcap otherwise.
    pub fn for_path(path: &Path) -> Format {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pcapng"))
        {
            Format::PcapNg
        } else {
            Format::Pcap
        }
    }
}

/// Where pcap-file serializes to: bytes this writer then writes out itself.
#[derive(Clone, Default)]
struct Pending(Rc<RefCell<Vec<u8>>>);

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Serializer {
    Pcap(PcapWriter<Pending>),
    PcapNg(PcapNgWriter<Pending>),
}

fn pcap_error(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other),
    }
}

pub struct CaptureWriter<W: Write> {
    out: W,
    serializer: Serializer,
    /// Records not yet written, back to back.
    pending: Pending,
    /// Where each pending record ends in `pending`.
    pending_ends: Vec<usize>,
    whole_records: u64,
    whole_bytes: u64,
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the file header and flushes it, so that an output that cannot
    /// be written fails here, before the capture starts; `snaplen` is the
    /// largest record it will hold.
    pub fn new(mut out: W, format: Format, snaplen: u32) -> io::Result<CaptureWriter<W>> {
        let pending = Pending::default();
        let serializer = match format {
            Format::Pcap => Serializer::Pcap(
                PcapWriter::with_header(
                    pending.clone(),
                    PcapHeader {
                        snaplen,
                        datalink: DataLink::ETHERNET,
                        ts_resolution: TsResolution::NanoSecond,
                        endianness: Endianness::Little,
                        ..Default::default()
                    },
                )
                .map_err(pcap_error)?,
            ),
            Format::PcapNg => {
                let mut w = PcapNgWriter::new(pending.clone()).map_err(pcap_error)?;
                w.write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: DataLink::ETHERNET,
                    snaplen,
                    options: vec![InterfaceDescriptionOption::IfTsResol(9)],
                })
                .map_err(pcap_error)?;
                Serializer::PcapNg(w)
            }
        };
        let header = std::mem::take(&mut *pending.0.borrow_mut());
        out.write_all(&header)?;
        out.flush()?;
        Ok(CaptureWriter {
            out,
            serializer,
            pending,
            pending_ends: Vec::new(),
            whole_records: 0,
            whole_bytes: header.len() as u64,
        })
    }

    /// One record: when it was captured, the captured bytes and the frame's
    /// length on the wire.
    pub fn write(&mut self, time: Duration, orig_len: u32, data: &[u8]) -> io::Result<()> {
        match &mut self.serializer {
            Serializer::Pcap(w) => w
                .write_packet(&PcapPacket::new(time, orig_len, data))
                .map_err(pcap_error)?,
            Serializer::PcapNg(w) => w
                .write_pcapng_block(EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: time,
                    original_len: orig_len,
                    data: Cow::Borrowed(data),
                    options: Vec::new(),
                })
                .map_err(pcap_error)?,
        };
        let len = self.pending.0.borrow().len();
        self.pending_ends.push(len);
        if len >= BATCH {
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
        let pending = std::mem::take(&mut *self.pending.0.borrow_mut());
        let mut done = 0;
        let result = loop {
            if done == pending.len() {
                break self.out.flush();
            }
            match self.out.write(&pending[done..]) {
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
        self.pending_ends.clear();
        result
    }
}

/// pcap's customary "whole frame" snap length.
const WHOLE_FRAME: u32 = 262_144;

/// Where a capture is written: a file, or stdout (`-w -`).
enum CaptureTarget {
    File(File),
    Stdout,
}

/// What the pcap writer writes to: for a file, a second handle on it, the
/// capture keeping the first to cut the file back after a failed write.
struct TargetWriter(CaptureTarget);

impl Write for TargetWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            CaptureTarget::File(f) => f.write(buf),
            CaptureTarget::Stdout => io::stdout().lock().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            CaptureTarget::File(f) => f.flush(),
            CaptureTarget::Stdout => io::stdout().lock().flush(),
        }
    }
}

/// A capture file (or stdout) being written.
pub struct CaptureFile {
    writer: CaptureWriter<TargetWriter>,
    target: CaptureTarget,
    /// How the output is named in messages: its path, or stdout.
    name: String,
}

impl CaptureFile {
    /// Opens `path` (`-` for stdout) and writes the capture header to it at
    /// once, so that an output that cannot be written is an error before the
    /// capture; pcapng for a `.pcapng` name, else pcap. `snaplen` 0 means
    /// whole frames.
    pub fn create(path: &Path, snaplen: u32) -> Result<CaptureFile> {
        let (target, name) = if path == Path::new("-") {
            (CaptureTarget::Stdout, "stdout".to_string())
        } else {
            let file =
                File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
            (CaptureTarget::File(file), path.display().to_string())
        };
        let snaplen = if snaplen == 0 { WHOLE_FRAME } else { snaplen };
        let out = TargetWriter(match &target {
            CaptureTarget::File(f) => CaptureTarget::File(f.try_clone()?),
            CaptureTarget::Stdout => CaptureTarget::Stdout,
        });
        let writer = CaptureWriter::new(out, Format::for_path(path), snaplen)
            .with_context(|| format!("writing the pcap header to {name}"))?;
        Ok(CaptureFile {
            writer,
            target,
            name,
        })
    }

    /// One record; see [`CaptureWriter::write`].
    pub fn write(&mut self, time: Duration, orig_len: u32, data: &[u8]) -> io::Result<()> {
        self.writer.write(time, orig_len, data)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    /// Records written whole.
    pub fn whole_records(&self) -> u64 {
        self.writer.whole_records()
    }

    /// What to tell the user about a failed write, after cutting a file
    /// back to its last whole record so that it stays readable.
    pub fn failed(&mut self, e: io::Error) -> anyhow::Error {
        let whole = self.writer.whole_records();
        let cut = match &self.target {
            CaptureTarget::File(file) => file
                .set_len(self.writer.whole_bytes())
                .map(|()| ", and the file ends after the last of them".to_string())
                .unwrap_or_else(|cut| format!(", but cutting the file after them failed: {cut}")),
            CaptureTarget::Stdout => String::new(),
        };
        let frames = if whole == 1 { "frame" } else { "frames" };
        anyhow::anyhow!(
            "writing {}: {e}; {whole} {frames} written whole{cut}",
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records_have_the_documented_layout() {
        let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, 128).unwrap();
        w.write(
            Duration::new(1_700_000_000, 123_456_789),
            1514,
            &[0xaa; 128],
        )
        .unwrap();
        w.write(Duration::new(1_700_000_001, 5), 60, &[0xbb; 60])
            .unwrap();
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
        assert!(CaptureWriter::new(full(10), Format::Pcap, 65535).is_err());
        // Room for the header, two records of 16 + 60 and half a third.
        let mut w = CaptureWriter::new(full(24 + 2 * 76 + 30), Format::Pcap, 65535).unwrap();
        for _ in 0..3 {
            w.write(Duration::new(1, 2), 60, &[0xcc; 60]).unwrap();
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
