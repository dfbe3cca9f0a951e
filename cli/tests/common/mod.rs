//! What the tests of the real `dtn` binary share: a daemon process on its own data
//! directory, raw HTTP over its socket, payload generators.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const DTN: &str = env!("CARGO_BIN_EXE_dtn");

/// A daemon process on its own data directory; killed (by PID) when dropped.
pub struct Daemon {
    pub child: Child,
    pub dir: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path) -> Daemon {
        let config = dir.join("node.toml");
        if !config.exists() {
            std::fs::write(
                &config,
                format!(
                    "node_id = \"ipn:1.0\"\ndata_dir = \"{}\"\n[api]\nmax_payload = 60000000\n",
                    dir.join("data").display()
                ),
            )
            .expect("config");
        }
        let child = Command::new(DTN)
            .args(["daemon", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon");
        Daemon::adopt(child, dir)
    }

    /// As [`Daemon::start`] (the config must be there), its log (stderr) written to
    /// `dir/daemon.log` for the test to read ([`Daemon::log`]).
    pub fn start_logged(dir: &Path) -> Daemon {
        let log = std::fs::File::create(dir.join("daemon.log")).expect("log file");
        let child = Command::new(DTN)
            .args(["daemon", "--config"])
            .arg(dir.join("node.toml"))
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        Daemon::adopt(child, dir)
    }

    /// What the daemon has logged so far (started with [`Daemon::start_logged`]).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("daemon.log")).unwrap_or_default()).into_owned()
    }

    /// The daemon's `dtn status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = self.dtn(&["status", "--json"]);
        assert!(out.status.success(), "dtn status: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    /// The status of its convergence layer `name` (the first of that name).
    pub fn layer(&self, name: &str) -> serde_json::Value {
        let status = self.status();
        status["convergence_layers"]
            .as_array()
            .and_then(|layers| layers.iter().find(|l| l["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no {name} layer in {status}"))
    }

    /// A daemon started otherwise (under another umask, say), once it listens.
    pub fn adopt(child: Child, dir: &Path) -> Daemon {
        let daemon = Daemon { child, dir: dir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(daemon.socket()).is_err() {
            assert!(Instant::now() < deadline, "the daemon never listened on {}", daemon.socket().display());
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("data/api.sock")
    }

    /// Runs a client command against this daemon.
    pub fn dtn(&self, args: &[&str]) -> Output {
        Command::new(DTN).env("DTN_SOCKET", self.socket()).args(args).output().expect("run dtn")
    }

    /// One raw HTTP/1.1 request; returns the status code and the body.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        self.raw(&head, body, false)
    }

    /// A request head and body written as given, then, with `hang_up`, the write side shut (a
    /// client gone before its body was complete); returns the status code and the body.
    pub fn raw(&self, head: &str, body: &[u8], hang_up: bool) -> (u16, String) {
        let mut stream = UnixStream::connect(self.socket()).expect("connect");
        stream.write_all(head.as_bytes()).expect("write");
        // The daemon may answer (a 413 from the Content-Length alone) and close without reading
        // the body: its answer is still there to read.
        if let Err(error) = stream.write_all(body) {
            assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "write body: {error}");
        }
        if hang_up {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        let mut answer = Vec::new();
        // A daemon that closes with part of the body unread makes the kernel report a reset
        // once its answer has been read (unread data on close, AF_UNIX as TCP): the answer is
        // what counts. (Under load the reset was sometimes seen, failing this helper.)
        if let Err(error) = stream.read_to_end(&mut answer) {
            assert!(
                error.kind() == std::io::ErrorKind::ConnectionReset && !answer.is_empty(),
                "read: {error} after {} bytes",
                answer.len()
            );
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer.get(9..12).and_then(|s| s.parse().ok()).expect("a status line");
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// Kills the daemon with SIGKILL and returns its directory.
    pub fn sigkill(mut self) -> PathBuf {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
        self.dir.clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `len` pseudo-random bytes (xorshift), different for each `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    data
}

/// The peak resident memory of a process, in bytes (`VmHWM`).
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number");
    kib * 1024
}

/// A loopback TCP port free now (bound, read, released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Writes `chunks` MiB of noise to `path` (chunk `i` is `noise(1 MiB, i)`) without holding it.
pub fn write_noise_file(path: &Path, chunks: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for i in 0..chunks {
        file.write_all(&noise(1 << 20, i)).expect("write");
    }
    file.flush().expect("flush");
}

/// Writes `dir/node.toml` for node `node` with its data in `dir/data`, then `body`.
pub fn write_config(dir: &Path, node: &str, body: &str) {
    std::fs::write(dir.join("node.toml"), format!("node_id = \"{node}\"\ndata_dir = \"data\"\n{body}"))
        .expect("config");
}

/// Waits (up to 30 s) until `check` holds; fails the test naming `what` otherwise.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `payload` to `to` through `daemon` with `dtn send` (from a file named `name` in
/// `dir`), with `extra` options; fails the test on an error.
pub fn send_file(daemon: &Daemon, dir: &Path, name: &str, to: &str, payload: &[u8], extra: &[&str]) {
    let file = dir.join(name);
    std::fs::write(&file, payload).expect("payload file");
    let path = file.display().to_string();
    let mut args = vec!["send", "--to", to];
    args.extend_from_slice(extra);
    args.push(&path);
    let out = daemon.dtn(&args);
    assert!(out.status.success(), "dtn send: {}", text(&out.stderr));
}

/// One bundle for `endpoint` through `daemon` with `dtn recv` (waiting up to 30 s): its payload.
pub fn recv_one(daemon: &Daemon, endpoint: &str) -> Vec<u8> {
    let out = daemon.dtn(&["recv", "--endpoint", endpoint, "--wait", "30s"]);
    assert!(out.status.success(), "dtn recv: {}", text(&out.stderr));
    out.stdout
}
