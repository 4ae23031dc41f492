//! Safe wrappers over the few DPDK calls sluice makes (feature `dpdk`). Everything returns an
//! error that names what failed and DPDK's own reason; nothing aborts the process.
//!
//! The poll-mode dataplane (an mbuf packet device for tcpstack, one stack per lcore, RSS) is
//! built on these and is not written yet.

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

/// A configured, started port.
pub struct Port {
    pub id: u16,
}

impl Port {
    /// Finds the port DPDK created for `name` (a vdev name or PCI address), configures its
    /// queues and starts it.
    pub fn start(
        _eal: &Eal,
        name: &str,
        rx_queues: u16,
        tx_queues: u16,
        rx_desc: u16,
        tx_desc: u16,
        pool: &Mempool,
    ) -> Result<Port, String> {
        let cname = CString::new(name).map_err(|_| "port name contains a NUL byte".to_string())?;
        let mut id = 0u16;
        // SAFETY: out-pointer to a u16 we own.
        if unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) } != 0 {
            return Err(format!(
                "port {name}: DPDK has no such device (is it in eal.vdevs or bound to vfio-pci?)"
            ));
        }
        let conf = sys::rte_eth_conf::default();
        // SAFETY: a zeroed rte_eth_conf is DPDK's "defaults" configuration.
        let r = unsafe { sys::rte_eth_dev_configure(id, rx_queues, tx_queues, &conf) };
        if r != 0 {
            return Err(format!(
                "port {name}: configure {rx_queues} RX / {tx_queues} TX queues: {}",
                reason(r)
            ));
        }
        for q in 0..rx_queues {
            // SAFETY: the port is configured; a null rxconf means the driver's defaults.
            let r = unsafe {
                sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    rx_desc,
                    sys::rte_socket_id(),
                    std::ptr::null(),
                    pool.0,
                )
            };
            if r != 0 {
                return Err(format!(
                    "port {name}: RX queue {q} with {rx_desc} descriptors: {}",
                    reason(r)
                ));
            }
        }
        for q in 0..tx_queues {
            // SAFETY: as above.
            let r = unsafe {
                sys::rte_eth_tx_queue_setup(id, q, tx_desc, sys::rte_socket_id(), std::ptr::null())
            };
            if r != 0 {
                return Err(format!(
                    "port {name}: TX queue {q} with {tx_desc} descriptors: {}",
                    reason(r)
                ));
            }
        }
        // SAFETY: queues are set up.
        let r = unsafe { sys::rte_eth_dev_start(id) };
        if r != 0 {
            return Err(format!("port {name}: start: {}", reason(r)));
        }
        Ok(Port { id })
    }

    /// Sends one frame (copied into an mbuf from `pool`); false if the queue was full.
    pub fn send(&self, queue: u16, pool: &Mempool, frame: &[u8]) -> Result<bool, String> {
        self.send_with(queue, pool, frame.len(), &mut |buf| {
            buf.copy_from_slice(frame)
        })
    }

    /// Sends one frame of `len` bytes that `fill` writes straight into an mbuf from `pool`;
    /// false if the queue was full (the frame is dropped).
    pub fn send_with(
        &self,
        queue: u16,
        pool: &Mempool,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, String> {
        let len16 =
            u16::try_from(len).map_err(|_| format!("a {len}-byte frame does not fit an mbuf"))?;
        // SAFETY: pool is valid; the mbuf is either handed to the driver or freed here, and
        // `fill` writes only inside the `len` bytes appended.
        unsafe {
            let m = sys::sluice_pktmbuf_alloc(pool.0);
            if m.is_null() {
                return Err("mempool exhausted".into());
            }
            let dst = sys::sluice_mbuf_append(m, len16);
            if dst.is_null() {
                sys::sluice_pktmbuf_free(m);
                return Err(format!("a {len}-byte frame does not fit an mbuf"));
            }
            fill(std::slice::from_raw_parts_mut(dst as *mut u8, len));
            let mut one = [m];
            if sys::sluice_tx_burst(self.id, queue, one.as_mut_ptr(), 1) == 1 {
                Ok(true)
            } else {
                sys::sluice_pktmbuf_free(m);
                Ok(false)
            }
        }
    }

    /// Receives up to `max` frames, each handed to `f` in place (no copy), then freed.
    pub fn receive(&self, queue: u16, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mut burst = [std::ptr::null_mut::<sys::rte_mbuf>(); 32];
        let n = max.min(burst.len()) as u16;
        // SAFETY: the driver fills at most `n` pointers; each mbuf is read, then freed once.
        unsafe {
            let got = sys::sluice_rx_burst(self.id, queue, burst.as_mut_ptr(), n);
            for m in &burst[..got as usize] {
                let data = sys::sluice_mbuf_data(*m) as *const u8;
                let len = sys::sluice_mbuf_data_len(*m) as usize;
                f(std::slice::from_raw_parts(data, len));
                sys::sluice_pktmbuf_free(*m);
            }
            got as usize
        }
    }
}
