//! Reading a capture: pcap (microsecond or nanosecond time stamps, either
//! byte order) or pcapng (any number of interfaces, each with its own time
//! stamp resolution), from a file or standard input, through the pcap-file
//! crate. Only Ethernet frames are taken; a cut last record ends the capture
//! and is reported, as when tcpdump was killed while writing.
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, PcapError, TsResolution};

use crate::console;

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Since the Unix epoch.
    pub time: Duration,
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// What was captured of it.
    pub data: Vec<u8>,
}

/// What a pcapng interface says about the frames it captured.
struct Interface {
    linktype: DataLink,
    /// Time stamp units per second.
    units_per_sec: u64,
}

enum Format {
    Pcap {
        reader: Box<PcapReader<Box<dyn Read>>>,
        /// Time stamp units per second.
        units_per_sec: u64,
    },
    PcapNg {
        reader: Box<PcapNgReader<Box<dyn Read>>>,
        interfaces: Vec<Interface>,
    },
}

/// A capture being read, frame by frame.
pub struct CaptureReader {
    format: Format,
    /// How the capture is named in messages.
    name: String,
    frames: u64,
    /// Set when the capture ended in a cut record.
    truncated: bool,
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// A link type as tcpdump names it (`LINUX_SLL`), or its number.
fn link_name(link: DataLink) -> String {
    format!("{link:?}")
}

fn ethernet_only(link: DataLink, name: &str) -> Result<()> {
    if link != DataLink::ETHERNET {
        bail!(
            "{name} holds {} frames; netprobe replays Ethernet (EN10MB) frames only",
            link_name(link)
        );
    }
    Ok(())
}

/// Whether a read error means the capture ended inside a record.
fn cut_short(e: &PcapError) -> bool {
    matches!(e, PcapError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof)
        || matches!(e, PcapError::IncompleteBuffer)
}

impl CaptureReader {
    /// Opens `path` (`-` for standard input) and reads its header.
    pub fn open(path: &Path) -> Result<CaptureReader> {
        let (input, name): (Box<dyn Read>, String) = if path == Path::new("-") {
            (Box::new(io::stdin()), "standard input".into())
        } else {
            if fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo()) {
                console::note(format!(
                    "waiting for a writer on the FIFO {}",
                    path.display()
                ));
            }
            let file =
                File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            if file.metadata().is_ok_and(|m| m.is_dir()) {
                bail!("{} is a directory, not a capture", path.display());
            }
            (Box::new(file), path.display().to_string())
        };
        let mut input = BufReader::with_capacity(1 << 16, input);
        let head = input
            .fill_buf()
            .with_context(|| format!("reading {name}"))?;
        if head.is_empty() {
            bail!("{name} is empty: no capture header");
        }
        let magic: [u8; 4] = head
            .get(..4)
            .and_then(|m| m.try_into().ok())
            .ok_or_else(|| anyhow!("{name} is not a pcap or pcapng capture (too short)"))?;
        let input: Box<dyn Read> = Box::new(input);
        let format = if PCAP_MAGICS.contains(&magic) {
            let reader = PcapReader::new(input)
                .map_err(|e| anyhow!("{name}: not a readable pcap header ({e})"))?;
            ethernet_only(reader.header().datalink, &name)?;
            let units_per_sec = match reader.header().ts_resolution {
                TsResolution::MicroSecond => 1_000_000,
                TsResolution::NanoSecond => 1_000_000_000,
            };
            Format::Pcap {
                reader: Box::new(reader),
                units_per_sec,
            }
        } else if magic == PCAPNG_MAGIC {
            let reader = PcapNgReader::new(input)
                .map_err(|e| anyhow!("{name}: not a readable pcapng section header ({e})"))?;
            Format::PcapNg {
                reader: Box::new(reader),
                interfaces: Vec::new(),
            }
        } else {
            bail!("{name} is not a pcap or pcapng capture");
        };
        Ok(CaptureReader {
            format,
            name,
            frames: 0,
            truncated: false,
        })
    }

    /// How the capture is named in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the capture ended in a record cut short.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The next frame; `None` at the end (or at a cut last record, which
    /// [`CaptureReader::truncated`] then says).
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let name = &self.name;
        let frame = match &mut self.format {
            // Raw records: pcap-file's checked ones refuse a frame longer
            // on the wire than the snap length, which is what `tcpdump -s`
            // writes.
            Format::Pcap {
                reader,
                units_per_sec,
            } => match reader.next_raw_packet() {
                None => None,
                Some(Err(e)) if cut_short(&e) => {
                    self.truncated = true;
                    None
                }
                Some(Err(e)) => bail!("{name}: record {}: {e}", self.frames + 1),
                Some(Ok(p)) => {
                    let units_per_sec = *units_per_sec;
                    if u64::from(p.ts_frac) >= units_per_sec {
                        bail!(
                            "{name}: record {}: a time stamp fraction of a second past one second",
                            self.frames + 1
                        );
                    }
                    Some(Frame {
                        time: Duration::from_secs(u64::from(p.ts_sec))
                            + units_to_duration(u64::from(p.ts_frac), units_per_sec),
                        orig_len: p.orig_len,
                        data: p.data.into_owned(),
                    })
                }
            },
            Format::PcapNg { reader, interfaces } => {
                loop {
                    let block = match reader.next_block() {
                        None => break None,
                        Some(Err(e)) if cut_short(&e) => {
                            self.truncated = true;
                            break None;
                        }
                        Some(Err(e)) => bail!("{name}: block after frame {}: {e}", self.frames),
                        Some(Ok(b)) => b,
                    };
                    match block {
                        Block::SectionHeader(_) => interfaces.clear(),
                        Block::InterfaceDescription(idb) => {
                            ethernet_only(idb.linktype, name)?;
                            interfaces.push(Interface {
                                linktype: idb.linktype,
                                units_per_sec: ts_units(&idb.options),
                            });
                        }
                        Block::EnhancedPacket(epb) => {
                            let iface = interfaces.get(epb.interface_id as usize).ok_or_else(|| {
                            anyhow!("{name}: a frame names interface {}, which is not described", epb.interface_id)
                        })?;
                            ethernet_only(iface.linktype, name)?;
                            // pcap-file hands over the raw time stamp as if it
                            // counted nanoseconds; the interface says what it counts.
                            let raw = epb.timestamp.as_nanos() as u64;
                            break Some(Frame {
                                time: units_to_duration(raw, iface.units_per_sec),
                                orig_len: epb.original_len,
                                data: epb.data.into_owned(),
                            });
                        }
                        Block::SimplePacket(spb) => {
                            let iface = interfaces.first().ok_or_else(|| {
                                anyhow!("{name}: a frame comes before any interface is described")
                            })?;
                            ethernet_only(iface.linktype, name)?;
                            break Some(Frame {
                                time: Duration::ZERO,
                                orig_len: spb.original_len,
                                data: spb.data.into_owned(),
                            });
                        }
                        // Statistics, name resolution, comments: nothing to replay.
                        _ => {}
                    }
                }
            }
        };
        self.frames += u64::from(frame.is_some());
        Ok(frame)
    }
}

/// An interface's time stamp units per second, from `if_tsresol`
/// (default microseconds).
fn ts_units(options: &[InterfaceDescriptionOption<'_>]) -> u64 {
    let resol = options.iter().find_map(|o| match o {
        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
        _ => None,
    });
    match resol {
        None => 1_000_000,
        Some(r) if r & 0x80 != 0 => 1u64.checked_shl(u32::from(r & 0x7f)).unwrap_or(u64::MAX),
        Some(r) => 10u64.checked_pow(u32::from(r)).unwrap_or(u64::MAX),
    }
}

fn units_to_duration(raw: u64, units_per_sec: u64) -> Duration {
    let secs = raw / units_per_sec;
    let rest = u128::from(raw % units_per_sec);
    Duration::new(
        secs,
        (rest * 1_000_000_000 / u128::from(units_per_sec)) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_stamp_resolutions() {
        assert_eq!(ts_units(&[]), 1_000_000);
        assert_eq!(
            ts_units(&[InterfaceDescriptionOption::IfTsResol(9)]),
            1_000_000_000
        );
        assert_eq!(
            ts_units(&[InterfaceDescriptionOption::IfTsResol(0x80 | 10)]),
            1024
        );
        assert_eq!(
            units_to_duration(1_700_000_000_123_456, 1_000_000),
            Duration::new(1_700_000_000, 123_456_000)
        );
        assert_eq!(
            units_to_duration(2048 + 512, 1024),
            Duration::new(2, 500_000_000)
        );
    }
}
