//! pcap in and out. [`Recorder`] wraps any device and writes every frame it sends and receives to
//! a pcap file (what `tcpdump -r` and tshark read). [`read_frames`] loads a capture for replay.

use crate::device::{DeviceCaps, PacketDevice};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::DataLink;
use smoltcp::time::Instant;
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

/// Largest frame a capture keeps whole (a 64 KiB IP packet plus its Ethernet header).
const SNAPLEN: u32 = 65_535 + 14;

/// Bytes the pcap writer produces, held until `PcapSink` writes them to the file (the writer
/// owns its output and offers no way to flush it while it lives).
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

/// Flush to the file once this much is pending.
const FLUSH_BYTES: usize = 256 * 1024;

/// A pcap file being written. Packets reach the file every 256 KiB, on `flush`, and on drop.
pub struct PcapSink {
    writer: PcapWriter<Pending>,
    pending: Pending,
    file: File,
}

impl PcapSink {
    pub fn create(path: &Path) -> io::Result<PcapSink> {
        let file = File::create(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create pcap file {}: {e}", path.display()),
            )
        })?;
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let pending = Pending::default();
        let writer = PcapWriter::with_header(pending.clone(), header).map_err(to_io)?;
        let mut sink = PcapSink {
            writer,
            pending,
            file,
        };
        sink.flush()?;
        Ok(sink)
    }

    pub fn write(&mut self, now: Instant, frame: &[u8]) -> io::Result<()> {
        let ts = Duration::from_micros(now.total_micros().max(0) as u64);
        let kept = &frame[..frame.len().min(SNAPLEN as usize)];
        let packet = PcapPacket::new(ts, frame.len() as u32, kept);
        self.writer.write_packet(&packet).map_err(to_io)?;
        if self.pending.0.borrow().len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        let mut pending = self.pending.0.borrow_mut();
        if pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&pending)?;
        pending.clear();
        Ok(())
    }
}

impl Drop for PcapSink {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

fn to_io(e: pcap_file::PcapError) -> io::Error {
    io::Error::other(e.to_string())
}

/// A device whose every frame, both ways, is also written to a pcap file.
pub struct Recorder<D> {
    inner: D,
    sink: PcapSink,
    /// The first write error; recording stops then, the traffic does not.
    failed: bool,
}

impl<D: PacketDevice> Recorder<D> {
    pub fn new(inner: D, sink: PcapSink) -> Self {
        Recorder {
            inner,
            sink,
            failed: false,
        }
    }

    fn record(&mut self, now: Instant, frame: &[u8]) {
        if self.failed {
            return;
        }
        if let Err(e) = self.sink.write(now, frame) {
            tracing::error!("packet capture stopped: {e}");
            self.failed = true;
        }
    }
}

impl<D: PacketDevice> PacketDevice for Recorder<D> {
    fn caps(&self) -> DeviceCaps {
        self.inner.caps()
    }

    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let got = self.inner.recv(now, buf)?;
        if let Some(n) = got {
            self.record(now, &buf[..n]);
        }
        Ok(got)
    }

    fn send(
        &mut self,
        now: Instant,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> io::Result<()> {
        let mut copy = Vec::new();
        self.inner.send(now, len, &mut |buf| {
            fill(buf);
            copy.extend_from_slice(buf);
        })?;
        self.record(now, &copy);
        Ok(())
    }

    fn send_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
        offload: Option<&crate::device::VnetHeader>,
    ) -> io::Result<()> {
        self.inner.send_frame(now, frame, offload)?;
        self.record(now, frame);
        Ok(())
    }

    fn last_rx_offload(&self) -> Option<crate::device::VnetHeader> {
        self.inner.last_rx_offload()
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.raw_fd()
    }

    fn register_rx(&mut self, waker: &std::task::Waker) -> bool {
        self.inner.register_rx(waker)
    }

    /// Writes the capture out whenever traffic pauses, so it is complete on disk while sluice
    /// runs (and when it is killed).
    fn idle(&mut self) {
        if !self.failed {
            if let Err(e) = self.sink.flush() {
                tracing::error!("packet capture stopped: {e}");
                self.failed = true;
            }
        }
        self.inner.idle()
    }

    fn next_timer(&self) -> Option<Instant> {
        self.inner.next_timer()
    }

    fn flush_tx(&mut self) {
        self.inner.flush_tx()
    }

    fn last_rx_checksum_ok(&self) -> bool {
        self.inner.last_rx_checksum_ok()
    }
}

/// One captured frame and its timestamp (for sluice's own captures: the stack clock).
pub struct CapturedFrame {
    pub at: Duration,
    pub data: Vec<u8>,
}

/// Reads every frame of a pcap file.
pub fn read_frames(path: &Path) -> io::Result<Vec<CapturedFrame>> {
    let file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    let mut reader = PcapReader::new(file)
        .map_err(|e| io::Error::other(format!("{}: not a pcap file: {e}", path.display())))?;
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(|e| {
            io::Error::other(format!("{}: packet {}: {e}", path.display(), out.len() + 1))
        })?;
        out.push(CapturedFrame {
            at: packet.timestamp,
            data: packet.data.into_owned(),
        });
    }
    Ok(out)
}
