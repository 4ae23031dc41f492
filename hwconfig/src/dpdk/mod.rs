//! Safe wrappers over the few DPDK calls sluice makes (feature `dpdk`). Everything returns an
//! error that names what failed and DPDK's own reason; nothing aborts the process.
//!
//! The fast path is [`RxBurst`] / [`TxBurst`]: frames read inside their mbufs and written
//! straight into mbufs, a burst per driver call.

#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    clippy::all
)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/dpdk_bindings.rs"));
}

use crate::rss::RssSteering;
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};

fn reason(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local string.
    let s = unsafe { CStr::from_ptr(sys::rte_strerror(code.abs())) };
    s.to_string_lossy().into_owned()
}

fn last_reason() -> String {
    // SAFETY: reads DPDK's thread-local errno.
    reason(unsafe { sys::sluice_errno() })
}

static EAL_UP: AtomicBool = AtomicBool::new(false);

/// DPDK's environment; it can be brought up once per process.
pub struct Eal(());

impl Eal {
    pub fn init(args: &[String]) -> Result<Eal, String> {
        if EAL_UP.swap(true, Ordering::SeqCst) {
            return Err("the DPDK EAL is already initialised in this process".into());
        }
        let owned: Vec<CString> = args
            .iter()
            .map(|a| {
                CString::new(a.as_str())
                    .map_err(|_| format!("EAL argument {a:?} contains a NUL byte"))
            })
            .collect::<Result<_, _>>()?;
        let mut ptrs: Vec<*mut libc::c_char> = owned.iter().map(|c| c.as_ptr() as *mut _).collect();
        // SAFETY: argv-style array of NUL-terminated strings that outlive the call.
        let r = unsafe { sys::rte_eal_init(ptrs.len() as i32, ptrs.as_mut_ptr()) };
        if r < 0 {
            EAL_UP.store(false, Ordering::SeqCst);
            return Err(format!(
                "DPDK EAL initialisation failed ({}): arguments {}",
                last_reason(),
                args.join(" ")
            ));
        }
        Ok(Eal(()))
    }

    pub fn ports_available(&self) -> u16 {
        // SAFETY: EAL is up.
        unsafe { sys::rte_eth_dev_count_avail() }
    }
}

/// A pool of packet buffers.
pub struct Mempool(*mut sys::rte_mempool);

// SAFETY: DPDK mempools are safe to use from several threads (per-lcore caches, atomic rings).
unsafe impl Send for Mempool {}
unsafe impl Sync for Mempool {}

/// Registers the calling thread with DPDK so it gets an lcore id, and with it a mempool cache
/// of its own (unregistered threads go to the shared ring for every mbuf).
pub fn register_thread(_eal: &Eal) -> Result<(), String> {
    // SAFETY: EAL is up.
    if unsafe { sys::rte_thread_register() } != 0 {
        return Err(format!(
            "cannot register the worker thread with DPDK: {}",
            last_reason()
        ));
    }
    Ok(())
}

impl Mempool {
    pub fn create(
        _eal: &Eal,
        name: &str,
        mbufs: u32,
        cache: u32,
        data_room: u16,
    ) -> Result<Mempool, String> {
        let cname =
            CString::new(name).map_err(|_| "mempool name contains a NUL byte".to_string())?;
        // SAFETY: EAL is up (witnessed by `_eal`); arguments are plain values.
        let p = unsafe {
            sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                mbufs,
                cache,
                0,
                data_room,
                sys::rte_socket_id() as i32,
            )
        };
        if p.is_null() {
            return Err(format!(
                "mempool {name} ({mbufs} mbufs of {data_room} bytes): {}",
                last_reason()
            ));
        }
        Ok(Mempool(p))
    }
}

/// What to set up on a port.
pub struct PortSetup<'a> {
    /// The DPDK device name: a vdev name ("net_tap0") or a PCI address.
    pub device: &'a str,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    pub mtu: u16,
    /// The RSS key to program (used when the port has several RX queues and hashes in hardware).
    pub rss_key: &'a [u8],
    /// The pool each RX queue fills its descriptors from (one per queue, or one for all).
    pub rx_pools: &'a [&'a Mempool],
}

/// A configured, started port.
pub struct Port {
    pub id: u16,
    pub device: String,
    pub mac: [u8; 6],
    /// RSS as the device has it. `rss_hardware` false: the device does not hash (a vdev), and
    /// whoever feeds its queues decides; `steering` then holds the key and a round-robin table
    /// such a feeder is expected to follow.
    pub steering: RssSteering,
    pub rss_hardware: bool,
    /// Whether the RETA came from the device, not from assuming its default.
    pub reta_queried: bool,
}

// SAFETY: a port is an id into DPDK's thread-safe device table; queue calls are made by the one
// worker that owns each queue.
unsafe impl Send for Port {}
unsafe impl Sync for Port {}

/// RETA entries assumed for a device that reports none.
const DEFAULT_RETA: usize = 128;

impl Port {
    /// Finds the port DPDK created for the device, configures its queues, RSS and MTU, starts
    /// it, and reads back its MAC address and RSS state. Errors name the device and setting.
    pub fn start(_eal: &Eal, s: &PortSetup<'_>) -> Result<Port, String> {
        let name = s.device;
        let cname = CString::new(name).map_err(|_| "port name contains a NUL byte".to_string())?;
        let mut id = 0u16;
        // SAFETY: out-pointer to a u16 we own.
        if unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) } != 0 {
            return Err(format!(
                "port {name}: DPDK has no such device (a vdev must be in eal.vdevs, and its driver may have refused to create it: see DPDK's messages above; a NIC must be bound to vfio-pci)"
            ));
        }
        let mut info = sys::sluice_port_info::default();
        // SAFETY: out-pointer to a struct we own.
        let r = unsafe { sys::sluice_port_info(id, &mut info) };
        if r != 0 {
            return Err(format!("port {name}: device info: {}", reason(r)));
        }
        if s.rx_queues > info.max_rx_queues || s.tx_queues > info.max_tx_queues {
            return Err(format!(
                "port {name}: rx_queues {} / tx_queues {}: the device has at most {} / {}",
                s.rx_queues, s.tx_queues, info.max_rx_queues, info.max_tx_queues
            ));
        }
        if info.max_mtu != 0 && (s.mtu > info.max_mtu || s.mtu < info.min_mtu) {
            return Err(format!(
                "port {name}: mtu {}: the device takes {} to {}",
                s.mtu, info.min_mtu, info.max_mtu
            ));
        }
        // SAFETY: a constant.
        let wanted = unsafe { sys::sluice_rss_hf_wanted() };
        let rss_hf = if s.rx_queues > 1 {
            wanted & info.rss_offloads
        } else {
            0
        };
        let mut key = s.rss_key.to_vec();
        if rss_hf != 0 && info.hash_key_size != 0 && key.len() != info.hash_key_size as usize {
            if key.len() < info.hash_key_size as usize {
                // A longer key repeats the symmetric pattern (or pads the given key) so every
                // hashed bit still sees the 16-bit period that makes hashing symmetric.
                let pattern = key.clone();
                key = pattern
                    .iter()
                    .cycle()
                    .take(info.hash_key_size as usize)
                    .copied()
                    .collect();
            } else {
                key.truncate(info.hash_key_size as usize);
            }
        }
        // SAFETY: `key` outlives the call; DPDK copies it.
        let r = unsafe {
            sys::sluice_port_configure(
                id,
                s.rx_queues,
                s.tx_queues,
                key.as_ptr(),
                key.len() as u8,
                rss_hf,
                s.mtu,
            )
        };
        if r != 0 {
            return Err(format!(
                "port {name}: configure {} RX / {} TX queues, mtu {}: {}",
                s.rx_queues,
                s.tx_queues,
                s.mtu,
                reason(r)
            ));
        }
        for q in 0..s.rx_queues {
            let pool = s.rx_pools[(q as usize).min(s.rx_pools.len() - 1)];
            // SAFETY: the port is configured; a null rxconf means the driver's defaults.
            let r = unsafe {
                sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    s.rx_descriptors,
                    sys::rte_socket_id(),
                    std::ptr::null(),
                    pool.0,
                )
            };
            if r != 0 {
                return Err(format!(
                    "port {name}: RX queue {q} with {} descriptors: {}",
                    s.rx_descriptors,
                    reason(r)
                ));
            }
        }
        for q in 0..s.tx_queues {
            // SAFETY: as above.
            let r = unsafe {
                sys::rte_eth_tx_queue_setup(
                    id,
                    q,
                    s.tx_descriptors,
                    sys::rte_socket_id(),
                    std::ptr::null(),
                )
            };
            if r != 0 {
                return Err(format!(
                    "port {name}: TX queue {q} with {} descriptors: {}",
                    s.tx_descriptors,
                    reason(r)
                ));
            }
        }
        // SAFETY: queues are set up.
        let r = unsafe { sys::rte_eth_dev_start(id) };
        if r != 0 {
            return Err(format!("port {name}: start: {}", reason(r)));
        }
        let mut mac = [0u8; 6];
        // SAFETY: 6-byte out-buffer.
        let r = unsafe { sys::sluice_port_mac(id, mac.as_mut_ptr()) };
        if r != 0 {
            return Err(format!("port {name}: MAC address: {}", reason(r)));
        }
        let (steering, reta_queried) = read_steering(id, &info, rss_hf != 0, key, s.rx_queues);
        Ok(Port {
            id,
            device: name.to_string(),
            mac,
            steering,
            rss_hardware: rss_hf != 0,
            reta_queried,
        })
    }

    /// Whether the link is up, and its speed in Mbit/s.
    pub fn link(&self) -> Result<(bool, u32), String> {
        let (mut up, mut speed) = (0, 0u32);
        // SAFETY: out-pointers we own.
        let r = unsafe { sys::sluice_port_link(self.id, &mut up, &mut speed) };
        if r != 0 {
            return Err(format!("port {}: link state: {}", self.device, reason(r)));
        }
        Ok((up != 0, speed))
    }
}

/// The key and RETA the device actually uses: read back where it can tell, else the key
/// programmed and a round-robin table (the default every driver sets up).
fn read_steering(
    id: u16,
    info: &sys::sluice_port_info,
    hardware: bool,
    programmed: Vec<u8>,
    queues: u16,
) -> (RssSteering, bool) {
    let mut key = programmed;
    if hardware {
        let mut buf = [0u8; 64];
        // SAFETY: `buf` is 64 bytes, as told.
        let n = unsafe { sys::sluice_port_rss_key(id, buf.as_mut_ptr(), buf.len() as u8) };
        if n > 0 {
            key = buf[..n as usize].to_vec();
        }
        if info.reta_size > 0 {
            let mut reta = vec![0u16; info.reta_size as usize];
            // SAFETY: `reta` holds reta_size entries.
            let r = unsafe { sys::sluice_port_reta(id, reta.as_mut_ptr(), info.reta_size) };
            if r == 0 {
                return (RssSteering { key, reta }, true);
            }
        }
    }
    let entries = if info.reta_size > 0 {
        info.reta_size as usize
    } else {
        DEFAULT_RETA
    };
    (RssSteering::round_robin(key, entries, queues), false)
}

const BURST: usize = 32;

/// A burst of received frames, read in place inside their mbufs. A frame stays valid until the
/// next `refill` (or drop), when the whole burst goes back to its pool at once.
pub struct RxBurst {
    mbufs: [*mut sys::rte_mbuf; BURST],
    len: usize,
    next: usize,
}

impl Default for RxBurst {
    fn default() -> Self {
        RxBurst {
            mbufs: [std::ptr::null_mut(); BURST],
            len: 0,
            next: 0,
        }
    }
}

impl RxBurst {
    /// Frees the frames of the previous burst and receives the next one; returns how many came.
    pub fn refill(&mut self, port: &Port, queue: u16) -> usize {
        self.release();
        // SAFETY: the driver fills at most BURST pointers.
        let got =
            unsafe { sys::sluice_rx_burst(port.id, queue, self.mbufs.as_mut_ptr(), BURST as u16) };
        self.len = got as usize;
        got as usize
    }

    /// The next frame of this burst, as a pointer and length valid until the next `refill`.
    pub fn next_frame(&mut self) -> Option<(*const u8, usize)> {
        if self.next == self.len {
            return None;
        }
        let m = self.mbufs[self.next];
        self.next += 1;
        // SAFETY: `m` is a received mbuf this burst still owns.
        unsafe {
            Some((
                sys::sluice_mbuf_data(m) as *const u8,
                sys::sluice_mbuf_data_len(m) as usize,
            ))
        }
    }

    fn release(&mut self) {
        if self.len > 0 {
            // SAFETY: the first `len` pointers are mbufs this burst owns; each is freed once.
            unsafe { sys::sluice_pktmbuf_free_bulk(self.mbufs.as_mut_ptr(), self.len as u32) };
        }
        self.len = 0;
        self.next = 0;
    }
}

impl Drop for RxBurst {
    fn drop(&mut self) {
        self.release();
    }
}

/// Frames a TX burst holds while the driver's ring is full: a few rounds' worth, so a short
/// stall of the ring (a slow peer, a busy NIC) does not turn into lost segments.
const TX_PENDING: usize = 1024;

/// Frames written straight into mbufs and sent in bursts.
pub struct TxBurst {
    mbufs: Box<[*mut sys::rte_mbuf; TX_PENDING]>,
    len: usize,
}

impl Default for TxBurst {
    fn default() -> Self {
        TxBurst {
            mbufs: Box::new([std::ptr::null_mut(); TX_PENDING]),
            len: 0,
        }
    }
}

/// What became of a frame handed to [`TxBurst::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// The TX ring and the burst are both full: the frame was dropped (TCP will resend).
    RingFull,
    /// No mbuf was free.
    PoolEmpty,
}

impl TxBurst {
    /// Writes a `len`-byte frame with `fill` into an mbuf from `pool` and queues it (sent at the
    /// next `flush`); when the queue is full it is flushed first.
    pub fn push(
        &mut self,
        port: &Port,
        queue: u16,
        pool: &Mempool,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Queued, String> {
        let len16 =
            u16::try_from(len).map_err(|_| format!("a {len}-byte frame does not fit an mbuf"))?;
        if self.len == TX_PENDING {
            self.flush(port, queue);
            if self.len == TX_PENDING {
                return Ok(Queued::RingFull);
            }
        }
        // SAFETY: the mbuf is either kept in this burst or freed here; `fill` writes only the
        // `len` bytes appended.
        unsafe {
            let m = sys::sluice_pktmbuf_alloc(pool.0);
            if m.is_null() {
                return Ok(Queued::PoolEmpty);
            }
            let dst = sys::sluice_mbuf_append(m, len16);
            if dst.is_null() {
                sys::sluice_pktmbuf_free(m);
                return Err(format!("a {len}-byte frame does not fit an mbuf"));
            }
            fill(std::slice::from_raw_parts_mut(dst as *mut u8, len));
            self.mbufs[self.len] = m;
            self.len += 1;
        }
        Ok(Queued::Yes)
    }

    /// Hands the queued frames to the driver; those it did not take stay queued for the next
    /// flush. Returns how many went.
    pub fn flush(&mut self, port: &Port, queue: u16) -> usize {
        if self.len == 0 {
            return 0;
        }
        // SAFETY: the first `len` pointers are mbufs this burst owns; the driver takes
        // ownership of the first `sent`.
        let sent = unsafe {
            sys::sluice_tx_burst(port.id, queue, self.mbufs.as_mut_ptr(), self.len as u16)
        } as usize;
        self.mbufs.copy_within(sent..self.len, 0);
        self.len -= sent;
        sent
    }

    pub fn pending(&self) -> usize {
        self.len
    }
}

impl Drop for TxBurst {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: mbufs this burst still owns.
            unsafe { sys::sluice_pktmbuf_free_bulk(self.mbufs.as_mut_ptr(), self.len as u32) };
        }
    }
}
