//! The probe's shape, through the real binary (issue 12): A → B over TCPCL, small and 20 MiB
//! bundles sent to A while an application reads at B throughout, and A and B SIGKILLed at
//! random moments. Afterwards every bundle A's API acknowledged was delivered exactly once,
//! byte-identical, and both stores are empty.
//!
//! `CRASH_KILLS` (default 12) sets the number of kills and `CRASH_SEED` the random seed
//! (printed, for reproduction); `scripts/crash-soak` runs it longer.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{DTN, Daemon, free_port, noise, text};

/// A small deterministic generator (xorshift64*), seeded per run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A payload that says what it must be: its first 8 bytes are its seed, the rest noise of it.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut out = seed.to_le_bytes().to_vec();
    out.extend(noise(len - 8, seed));
    out
}

fn intact(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && {
        let seed = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        bytes[8..] == noise(bytes.len() - 8, seed)
    }
}

fn socket(dir: &Path) -> PathBuf {
    dir.join("data/api.sock")
}

/// Runs a client command against the daemon in `dir`.
fn dtn(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(DTN).env("DTN_SOCKET", socket(dir)).args(args).output().expect("run dtn")
}

/// The name `dtn recv --out DIR` gives a bundle's file.
fn file_name(bundle_id: &str) -> String {
    bundle_id.chars().map(|c| if c.is_ascii_alphanumeric() || "-.+".contains(c) { c } else { '_' }).collect()
}

/// Sends `payload` to ipn:2.5 through the API at `socket`; the bundle ID if the daemon
/// acknowledged it (a daemon killed meanwhile answers nothing).
fn api_send(socket: &Path, payload: &[u8]) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    let head = format!(
        "POST /v1/send?to=ipn:2.5&lifetime=1h HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(payload).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer);
    if !answer.starts_with("HTTP/1.1 201") {
        return None;
    }
    let body: serde_json::Value = serde_json::from_str(answer.split_once("\r\n\r\n")?.1).ok()?;
    Some(body["bundle_id"].as_str()?.to_string())
}

/// The daemons, which the killer replaces; `None` while one is down.
struct Nodes {
    a: Mutex<Option<Daemon>>,
    b: Mutex<Option<Daemon>>,
}

#[test]
fn acknowledged_bundles_are_delivered_exactly_once_intact_through_random_sigkills() {
    let kills: u32 = std::env::var("CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let seed: u64 = std::env::var("CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    eprintln!("CRASH_SEED={seed} CRASH_KILLS={kills}");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    for (node_dir, node, tcpcl) in [
        (&a_dir, 1, format!("reconnect_max = \"1s\"\n[[tcpcl.peers]]\naddress = \"127.0.0.1:{port}\"\n")),
        (&b_dir, 2, format!("listen = [\"127.0.0.1:{port}\"]\n")),
    ] {
        std::fs::create_dir_all(node_dir).expect("dir");
        let config = format!(
            "node_id = \"ipn:{node}.0\"\ndata_dir = \"{}\"\n[api]\nmax_payload = 60000000\n[tcpcl]\n{tcpcl}",
            node_dir.join("data").display()
        );
        std::fs::write(node_dir.join("node.toml"), config).expect("config");
    }
    let nodes = Arc::new(Nodes {
        a: Mutex::new(Some(Daemon::start(&a_dir))),
        b: Mutex::new(Some(Daemon::start(&b_dir))),
    });
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).expect("inbox");
    let done = Arc::new(AtomicBool::new(false));

    // The application at B: `dtn recv --follow`, started again whenever B went away.
    let deliveries: Arc<Mutex<Vec<String>>> = Arc::default();
    let receiver = {
        let (b_dir, inbox, done, deliveries) =
            (b_dir.clone(), inbox.clone(), done.clone(), deliveries.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let child = Command::new(DTN)
                    .env("DTN_SOCKET", socket(&b_dir))
                    .args(["recv", "--endpoint", "ipn:2.5", "--follow", "--wait", "2s", "--json", "--out"])
                    .arg(&inbox)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn();
                let Ok(mut child) = child else { continue };
                let stdout = child.stdout.take().expect("stdout");
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
                    deliveries
                        .lock()
                        .expect("lock")
                        .push(value["bundle_id"].as_str().expect("id").to_string());
                }
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // The killer: SIGKILL A or B at random moments, each started again at once.
    let killer = {
        let (nodes, a_dir, b_dir) = (nodes.clone(), a_dir.clone(), b_dir.clone());
        std::thread::spawn(move || {
            let mut random = Random(seed);
            for _ in 0..kills {
                std::thread::sleep(Duration::from_millis(300 + random.below(1200)));
                let (slot, node_dir) =
                    if random.below(2) == 0 { (&nodes.a, &a_dir) } else { (&nodes.b, &b_dir) };
                let mut guard = slot.lock().expect("lock");
                if let Some(daemon) = guard.take() {
                    daemon.sigkill();
                }
                *guard = Some(Daemon::start(node_dir));
            }
        })
    };

    // The sender: bursts of small bundles (some over the 64 KiB inline threshold) and four of
    // 20 MiB, straight to A's API; each is sent until A acknowledges one. Bursts keep many
    // bundles in flight between A and B when the kills come.
    let mut random = Random(seed ^ 0x5555);
    let mut acknowledged: HashMap<String, u64> = HashMap::new();
    let count = 800u64;
    for i in 0..count {
        let len = if i % 200 == 100 {
            20 << 20
        } else if i % 10 == 0 {
            70_000 + random.below(300_000) as usize
        } else {
            16 + random.below(5_000) as usize
        };
        let body = payload(i, len);
        loop {
            if let Some(id) = api_send(&socket(&a_dir), &body) {
                acknowledged.insert(id, i);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if i % 40 == 39 {
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    killer.join().expect("killer");

    // Everything acknowledged arrives, however long the restarts took (bounded). A bundle
    // counts as delivered when its file is in the inbox: the application's acknowledgement
    // can be durable at B while B dies before answering it (then `dtn recv` prints nothing).
    let delivered_files = |inbox: &Path| -> HashSet<String> {
        std::fs::read_dir(inbox)
            .expect("inbox")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".part"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let files = delivered_files(&inbox);
        let missing: Vec<&String> =
            acknowledged.keys().filter(|id| !files.contains(&file_name(id))).collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for (name, node_dir) in [("A", &a_dir), ("B", &b_dir)] {
                let out = dtn(node_dir, &["bundles", "list", "--json"]);
                eprintln!("{name}'s store: {}{}", text(&out.stdout), text(&out.stderr));
            }
            panic!(
                "{} acknowledged bundles never arrived, e.g. {:?} (seed {seed})",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Give a duplicate, if the agent were to make one, the time to show.
    std::thread::sleep(Duration::from_secs(3));
    done.store(true, Ordering::Relaxed);
    receiver.join().expect("receiver");

    let deliveries = deliveries.lock().expect("lock").clone();
    let mut seen = HashSet::new();
    for id in &deliveries {
        assert!(seen.insert(id), "{id} was delivered twice (seed {seed})");
    }
    for entry in std::fs::read_dir(&inbox).expect("inbox") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        assert!(!name.ends_with(".part"), "a temporary file was left: {name}");
        assert!(
            intact(&std::fs::read(&path).expect("read")),
            "{name} is not the payload that was sent (seed {seed})"
        );
    }
    for (name, node_dir) in [("A", &a_dir), ("B", &b_dir)] {
        let out = dtn(node_dir, &["status", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(status["store"]["bundles"], 0, "{name}'s store is not empty: {status}");
        assert_eq!(status["store"]["quarantined"], 0, "{name}: {status}");
    }
    eprintln!(
        "{} bundles acknowledged by A, {} delivered at B, {kills} kills",
        acknowledged.len(),
        deliveries.len()
    );
}
