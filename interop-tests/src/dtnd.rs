//! A dtn7-rs 0.21.0 `dtnd` process for interop tests, with the convergence layer asked for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::dtn7_program;

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A convergence layer of dtnd, as its `-C` and peer URLs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtndCla {
    /// TCPCLv4 (`tcp`).
    Tcp,
    /// MTCP (`mtcp`).
    Mtcp,
    /// UDP (`udp`).
    Udp,
}

/// A `dtnd` process, killed by its PID when dropped; its log is kept in its directory.
#[derive(Debug)]
pub struct Dtnd {
    child: Child,
    web_port: u16,
    cla_port: u16,
    dir: PathBuf,
    name: String,
}

impl Dtnd {
    /// `dtnd -n NAME` with epidemic routing, endpoint `incoming`, the layer `cla` listening on
    /// loopback, and the given static peers (`tcp://127.0.0.1:PORT/NAME`, `mtcp://...`).
    pub fn start(dir: &Path, name: &str, cla: DtndCla, peers: &[String]) -> Dtnd {
        let program = dtn7_program("dtnd");
        let (web_port, cla_port) = (free_port(), free_port());
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let mut command = Command::new(&program);
        let spec = match cla {
            DtndCla::Tcp => format!("tcp:port={cla_port}:bind=127.0.0.1"),
            DtndCla::Mtcp => format!("mtcp:port={cla_port}"),
            DtndCla::Udp => format!("udp:port={cla_port}"),
        };
        command
            .args(["-n", name, "-W"])
            .arg(dir)
            .args(["-w", &web_port.to_string()])
            .args(["-C", &spec])
            .args(["-r", "epidemic", "-e", "incoming", "--disable_nd", "-j", "1s", "-d"]);
        for peer in peers {
            command.args(["-s", peer]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install it with `cargo install --locked dtn7 --version 0.21.0` \
                     (scripts/test does)",
                    program.display()
                )
            });
        let dtnd = Dtnd { child, web_port, cla_port, dir: dir.to_path_buf(), name: name.to_string() };
        let deadline = Instant::now() + Duration::from_secs(30);
        // (A UDP port cannot be probed: the web port's readiness stands for it.)
        while std::net::TcpStream::connect(("127.0.0.1", web_port)).is_err()
            || (cla != DtndCla::Udp && std::net::TcpStream::connect(("127.0.0.1", cla_port)).is_err())
        {
            assert!(Instant::now() < deadline, "dtnd never listened; log:\n{}", dtnd.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        dtnd
    }

    /// Its convergence layer's address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.cla_port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// `dtnsend` of `payload` to `receiver` through this dtnd.
    pub fn send(&self, receiver: &str, payload: &[u8]) {
        let file = self.dir.join("to-send.bin");
        std::fs::write(&file, payload).expect("payload file");
        let out = Command::new(dtn7_program("dtnsend"))
            .args(["-p", &self.web_port.to_string(), "-r", receiver])
            .arg(&file)
            .output()
            .expect("run dtnsend");
        assert!(out.status.success(), "dtnsend failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `dtnrecv -e incoming`: the next payload waiting there, if any.
    pub fn receive(&self) -> Option<Vec<u8>> {
        let file = self.dir.join("received.bin");
        let _ = std::fs::remove_file(&file);
        let out = Command::new(dtn7_program("dtnrecv"))
            .args(["-p", &self.web_port.to_string(), "-e", "incoming", "-o"])
            .arg(&file)
            .output()
            .expect("run dtnrecv");
        if !out.status.success() {
            return None;
        }
        std::fs::read(&file).ok()
    }

    /// The next `count` payloads at `incoming`, waiting up to `within`.
    pub fn receive_all(&self, count: usize, within: Duration) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let deadline = Instant::now() + within;
        while got.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} bundles reached dtnd; log:\n{}",
                got.len(),
                self.log()
            );
            match self.receive() {
                Some(p) => got.push(p),
                None => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        got
    }
}

impl Drop for Dtnd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
