//! Helpers for the integration tests: start the real `sluice` binary on a config, talk to its
//! admin API, and run real third-party peers (socat, curl, iperf3, Envoy) next to it.
//!
//! Readiness is always a signal, never a sleep: sluice writes its admin address to a file once it
//! serves (`--admin-address-path`), peers are ready when their port shows up as LISTEN in
//! /proc/net/tcp, and config reloads are complete when `/stats/prometheus` shows the new version.

pub mod bolt;
pub mod fallback;
pub mod frames;
pub mod hostile;
pub mod http;
pub mod netns;
pub mod xds;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A scratch directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "sluice-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The directory holding the workspace's built binaries (next to this test executable).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

pub fn sluice_bin() -> PathBuf {
    let p = bin_dir().join("sluice");
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build --workspace --bins, same profile as the tests)",
        p.display()
    );
    p
}

/// Envoy 1.40 as installed by scripts/setup/deps.sh (or $SLUICE_ENVOY).
pub fn envoy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_ENVOY") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/envoy");
    assert!(
        p.exists(),
        "Envoy is not installed: run scripts/setup/deps.sh test"
    );
    p
}

/// Fails with a clear message if a third-party program the test needs is missing.
pub fn require_program(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: run scripts/setup/deps.sh test"
    );
}

/// An unused TCP port on 127.0.0.1 (for peers that must be told a port up front).
///
/// It is taken below the kernel's ephemeral range, not from `bind(0)`: a port from `bind(0)` goes
/// back to the kernel when the probe closes, and another test's outgoing connection could take it
/// as its source port before the peer binds it (CI once saw socat fail to listen so). Each test
/// process walks that range from a start drawn from its pid and never hands a port out twice.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    const LOW: usize = 10_000;
    let high = ephemeral_low().clamp(LOW + 1_000, 65_536);
    let span = high - LOW;
    let start = std::process::id() as usize * 7_919 % span;
    for _ in 0..span {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{high}");
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether something listens on 127.0.0.1:port (or any address), read from /proc/net/tcp{,6}
/// without connecting (a connect would use up a one-shot server's only accept).
pub fn is_listening(port: u16) -> bool {
    let want = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&want) && cols[3] == "0A"
            })
    })
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(mut cmd: Command, name: &str) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Waits for exit within `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a socat server on `port` and waits until it listens.
pub fn socat_server(port: u16, args: &[&str]) -> Proc {
    require_program("socat");
    let mut cmd = Command::new("socat");
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let mut p = Proc::spawn(cmd, "socat");
    let ok = wait_until(Duration::from_secs(10), || {
        is_listening(port) || p.child.try_wait().unwrap().is_some()
    });
    assert!(ok && is_listening(port), "socat did not listen on {port}");
    p
}

/// A socat server on a fresh port that connects every accepted connection (one process each)
/// to `target`, a socat address such as `EXEC:cat` or `OPEN:/dev/zero`.
pub fn forking_server(target: &str) -> (Proc, u16) {
    let port = free_port();
    let p = socat_server(
        port,
        &[
            &format!("TCP-LISTEN:{port},reuseaddr,fork,bind=127.0.0.1"),
            target,
        ],
    );
    (p, port)
}

/// An echo server.
pub fn echo_server() -> (Proc, u16) {
    forking_server("EXEC:cat")
}

/// A server that answers every connection with `reply` and closes.
pub fn reply_server(reply: &str) -> (Proc, u16) {
    forking_server(&format!("SYSTEM:echo {reply}"))
}

/// A running sluice.
pub struct Sluice {
    pub proc: Proc,
    pub admin: SocketAddr,
    pub dir: TempDir,
}

pub struct Exit {
    pub status: ExitStatus,
    pub stderr: String,
    pub stdout: String,
}

impl Sluice {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("sluice.yaml")
    }

    /// Starts sluice on `yaml` (written to a file) and waits until its admin API is up.
    pub fn start(yaml: &str, extra: &[&str]) -> Sluice {
        Sluice::start_with_fd_limit(yaml, extra, None)
    }

    /// As [`Sluice::start`], with RLIMIT_NOFILE (soft and hard) set to `nofile` for the process.
    pub fn start_with_fd_limit(yaml: &str, extra: &[&str], nofile: Option<u64>) -> Sluice {
        let dir = TempDir::new("sluice");
        let cfg = dir.join("sluice.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let addr_file = dir.join("admin.addr");
        let log = std::fs::File::create(dir.join("sluice.log")).unwrap();
        let mut cmd = Command::new(sluice_bin());
        cmd.arg("-c")
            .arg(&cfg)
            .arg("--admin-address-path")
            .arg(&addr_file)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut proc = Proc::spawn(cmd, "sluice");
        let up = wait_until(Duration::from_secs(20), || {
            addr_file.exists() || proc.child.try_wait().unwrap().is_some()
        });
        let log = std::fs::read_to_string(dir.join("sluice.log")).unwrap_or_default();
        assert!(
            up && addr_file.exists(),
            "sluice did not come up; its log:\n{log}"
        );
        let admin = std::fs::read_to_string(&addr_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let s = Sluice { proc, admin, dir };
        assert_eq!(s.get("/ready").0, 200);
        s
    }

    /// Runs sluice to completion (for configs that must fail), with a time limit.
    pub fn run_to_exit(yaml: &str, extra: &[&str]) -> Exit {
        let dir = TempDir::new("sluice-exit");
        let cfg = dir.join("sluice.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        run_to_exit(Command::new(sluice_bin()).arg("-c").arg(&cfg).args(extra))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sluice.log")).unwrap_or_default()
    }

    /// GET on the admin API: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path)
    }

    /// The value of one Prometheus series, e.g. `sluice_cluster_upstream_cx_total{cluster="c"}`;
    /// 0 when the series does not exist yet.
    pub fn stat(&self, series: &str) -> u64 {
        let (_, body) = self.get("/stats/prometheus");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0)
    }

    /// The address a listener is bound to (listeners may ask for port 0).
    pub fn listener(&self, name: &str) -> SocketAddr {
        let (_, body) = self.get("/listeners");
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}::")))
            .unwrap_or_else(|| panic!("no listener {name} in /listeners:\n{body}"))
            .parse()
            .unwrap()
    }

    /// Writes a new config and sends SIGHUP; waits until sluice reports the reload applied
    /// (`expect_ok`) or rejected.
    pub fn reload(&self, yaml: &str, expect_ok: bool) {
        let version = self.stat("sluice_server_config_version");
        let failures = self.stat("sluice_server_config_reload_failures_total");
        std::fs::write(self.config_path(), yaml).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.proc.pid() as i32, libc::SIGHUP) };
        let done = wait_until(Duration::from_secs(20), || {
            self.stat("sluice_server_config_version") > version
                || self.stat("sluice_server_config_reload_failures_total") > failures
        });
        assert!(done, "reload did not finish; log:\n{}", self.log());
        let applied = self.stat("sluice_server_config_version") > version;
        assert_eq!(applied, expect_ok, "reload outcome; log:\n{}", self.log());
    }

    /// Resident memory of the sluice process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Exit {
    /// Asserts a start-up failure: exit code 1, `want` in stderr, and no panic.
    pub fn assert_fails_with(&self, want: &str) {
        assert_eq!(
            self.status.code(),
            Some(1),
            "expected exit 1 with {want:?}; stderr:\n{}",
            self.stderr
        );
        assert!(
            self.stderr.contains(want),
            "expected {want:?} in stderr:\n{}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
    }
}

/// Runs a command that should exit on its own; one still running after 30 s is killed (and
/// its output so far returned) rather than hanging the suite.
pub fn run_to_exit(cmd: &mut Command) -> Exit {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    // wait_with_output drains both pipes while waiting, so a chatty child cannot block on them.
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: kill(2) on our child's pid. It is still running 30 s in; it could only have
            // been reaped in the instant between the timeout and this call. The old version killed
            // the pid 30 s after *every* command, long after it had exited and the pid could be reused.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            rx.recv().unwrap()
        }
    }
    .unwrap();
    Exit {
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// A bare HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// [`http_get`] that reports a failed connection or read (10 s) instead of panicking.
pub fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {resp:?}")))?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// The body of a chunked HTTP/1.1 response (Envoy's admin sends them).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// Sends `msg`, half-closes, and reads everything back.
pub fn roundtrip(addr: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(msg)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// A STATIC cluster for [`bootstrap`]: name, lb_policy, endpoints as (port on 127.0.0.1, weight).
pub type ClusterSpec<'a> = (&'a str, &'a str, &'a [(u16, u32)]);

/// An Envoy-format bootstrap with one tcp_proxy listener per `(name, port, cluster)` and one
/// STATIC cluster per `(name, lb_policy, [(port, weight)])` on 127.0.0.1; admin on port 0.
pub fn bootstrap(
    listeners: &[(&str, u16, &str)],
    clusters: &[ClusterSpec<'_>],
    tcp_extra: &str,
    tail: &str,
) -> String {
    let mut y = String::from(
        "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: 0}}\nstatic_resources:\n  listeners:\n",
    );
    for (name, port, cluster) in listeners {
        y += &format!(
            "  - name: {name}\n    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}\n    filter_chains:\n    - filters:\n      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: {name}\n          cluster: {cluster}\n{tcp_extra}"
        );
    }
    y += "  clusters:\n";
    for (name, lb, eps) in clusters {
        y += &format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    lb_policy: {lb}\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n"
        );
        for (port, weight) in eps.iter() {
            y += &format!(
                "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}\n          load_balancing_weight: {weight}\n"
            );
        }
    }
    y + tail
}

/// The most common test config: listener `front` (port 0) proxying to cluster `up`, one
/// ROUND_ROBIN endpoint at 127.0.0.1:`port`.
pub fn front_to(port: u16) -> String {
    bootstrap(
        &[("front", 0, "up")],
        &[("up", "ROUND_ROBIN", &[(port, 1)])],
        "",
        "",
    )
}

/// A file of `len` pseudo-random bytes (xorshift; different seeds give different files).
pub fn random_file(path: &Path, len: usize, seed: u64) {
    let mut x = seed | 1;
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.truncate(len);
    std::fs::write(path, buf).unwrap();
}

/// sha256 of a file, by coreutils' sha256sum.
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
