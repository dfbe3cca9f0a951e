//! What a new user runs into in the first hour (issue 14), each with the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{DTN, Daemon, text};

/// A daemon started from `cwd` with `--config CONFIG` (both as given), its log to `log`.
fn start_in(cwd: &Path, config: &str, dir: &Path, log: Stdio) -> Daemon {
    let child = Command::new(DTN)
        .current_dir(cwd)
        .args(["daemon", "--config", config])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the daemon");
    Daemon::adopt(child, dir)
}

/// `dir/node.toml` for node ipn:1.0 with its data in `dir/data`, then `extra`; its path.
fn config_with(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("node.toml");
    let text = format!("node_id = \"ipn:1.0\"\ndata_dir = \"{}\"\n{extra}", dir.join("data").display());
    std::fs::write(&config, text).expect("config");
    config
}

/// A daemon on `config_with(dir, extra)` logging to `dir/daemon.log`; and the log's path.
fn logging_daemon(dir: &Path, extra: &str) -> (Daemon, PathBuf) {
    let config = config_with(dir, extra);
    let log = dir.join("daemon.log");
    let file = std::fs::File::create(&log).expect("log file");
    (start_in(dir, &config.display().to_string(), dir, file.into()), log)
}

/// Twenty sends of a 5 MiB file to a daemon on `config_with(.., extra)`, each refused with a
/// message containing `reason`.
fn refused_twenty_times(extra: &str, reason: &str) -> (Daemon, String, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("tempdir");
    config_with(root.path(), extra);
    let daemon = Daemon::start(root.path());
    let file = root.path().join("five.bin");
    std::fs::write(&file, common::noise(5 << 20, 7)).expect("payload");
    let file = file.display().to_string();
    for attempt in 0..20 {
        let out = daemon.dtn(&["send", "--to", "ipn:2.1", "--lifetime", "1h", &file]);
        assert_eq!(out.status.code(), Some(1), "attempt {attempt}");
        let message = text(&out.stderr);
        assert!(message.contains(reason), "attempt {attempt}: {message}");
    }
    (daemon, file, root)
}

#[test]
fn a_relative_data_dir_is_taken_from_the_config_files_directory_not_the_working_one() {
    let root = tempfile::tempdir().expect("tempdir");
    let conf = root.path().join("conf");
    let elsewhere = root.path().join("elsewhere");
    let other = root.path().join("other");
    for dir in [&conf, &elsewhere, &other] {
        std::fs::create_dir(dir).expect("mkdir");
    }
    std::fs::write(conf.join("node.toml"), "node_id = \"ipn:4.0\"\ndata_dir = \"data\"\n").expect("config");
    // Started from one directory with a relative path to the file ...
    let daemon = start_in(&elsewhere, "../conf/node.toml", &conf, Stdio::null());
    assert!(conf.join("data/store.sqlite").exists(), "the store is beside the config file");
    assert!(!elsewhere.join("data").exists(), "nothing in the working directory");
    let sent = daemon.dtn(&["send", "--to", "ipn:9.1", "--lifetime", "1h", "-"]);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    drop(daemon);
    // ... and from another: the same store, with the bundle in it.
    let daemon = start_in(&other, &conf.join("node.toml").display().to_string(), &conf, Stdio::null());
    let status = daemon.dtn(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(status["store"]["bundles"], 1, "{status}");
    assert!(!other.join("data").exists());
}

#[test]
fn dtn_init_writes_the_data_dir_it_was_given_as_an_absolute_path() {
    let root = tempfile::tempdir().expect("tempdir");
    let out = Command::new(DTN)
        .current_dir(root.path())
        .args(["init", "--node-id", "ipn:5.0", "--data-dir", "./node5"])
        .output()
        .expect("run dtn init");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = format!("data_dir = \"{}\"", root.path().join("node5").display());
    assert!(text(&out.stdout).contains(&expected), "{}", text(&out.stdout));
}

#[test]
fn recv_out_into_a_directory_not_there_yet_makes_it_and_leaves_no_part_file() {
    let root = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(root.path());
    for payload in ["one", "two"] {
        let file = root.path().join(format!("{payload}.txt"));
        std::fs::write(&file, payload).expect("payload");
        let sent = daemon.dtn(&["send", "--to", "ipn:1.5", "--lifetime", "1h", &file.display().to_string()]);
        assert!(sent.status.success(), "{}", text(&sent.stderr));
    }
    // As docs/cli.md writes it: a name ending in '/'.
    let inbox = root.path().join("inbox/");
    let out =
        daemon.dtn(&["recv", "--endpoint", "ipn:1.5", "--count", "1", "--out", &inbox.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // One bundle into a new name without a trailing /: a file.
    let more = root.path().join("more");
    let out =
        daemon.dtn(&["recv", "--endpoint", "ipn:1.5", "--count", "1", "--out", &more.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(more.is_file(), "one bundle into a new name without '/' is a file");
    let names = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    let received = names(&inbox);
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(!received[0].ends_with(".part"), "{received:?}");
    // A file in a directory that is not there: said before anything is received.
    let missing = root.path().join("nowhere/file.txt");
    let out = daemon.dtn(&["recv", "--endpoint", "ipn:1.5", "--out", &missing.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let message = text(&out.stderr);
    assert!(
        message.contains("does not exist (end the name with / to receive into a new directory)"),
        "{message}"
    );
    assert!(!root.path().join("nowhere").exists());
    assert!(names(root.path()).iter().all(|n| !n.ends_with(".part")), "{:?}", names(root.path()));
}

#[test]
fn a_second_daemon_on_the_same_store_says_so_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let _first = Daemon::start(root.path());
    let second = Command::new(DTN)
        .args(["daemon", "--config", &root.path().join("node.toml").display().to_string()])
        .output()
        .expect("run a second daemon");
    assert_eq!(second.status.code(), Some(1));
    let message = text(&second.stderr);
    let line = message.lines().find(|l| l.starts_with("dtn: ")).unwrap_or_default().to_string();
    assert_eq!(
        line,
        format!(
            "dtn: cannot open the store in {0}: the store in {0} is in use by another process (a dtn \
             daemon?): stop it first, or use another data directory",
            root.path().join("data").display()
        ),
        "{message}"
    );
}

#[test]
fn a_ping_nobody_answers_says_no_replies_not_a_negative_average() {
    let root = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(root.path());
    let out = daemon.dtn(&["ping", "ipn:9.0", "--count", "1", "--timeout", "200ms"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.ends_with("1 sent, no replies\n"), "{stdout}");
    let out = daemon.dtn(&["ping", "ipn:9.0", "--count", "1", "--timeout", "200ms", "--json"]);
    assert_eq!(text(&out.stdout), "{\"from\":\"ipn:9.7\",\"rtt_ms\":null,\"seq\":0}\n");
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let root = tempfile::tempdir().expect("tempdir");
    let (daemon, log) = logging_daemon(root.path(), "");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut written = String::new();
    while !written.contains("dtn daemon running") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        written = std::fs::read_to_string(&log).expect("log");
    }
    drop(daemon);
    assert!(written.contains("dtn daemon running"), "{written}");
    assert!(!written.contains('\u{1b}'), "colour codes in a log file: {written:?}");
}

#[test]
fn an_unreachable_peer_is_one_warning_not_one_line_per_retry() {
    let root = tempfile::tempdir().expect("tempdir");
    let closed = common::free_port();
    let peer =
        format!("[tcpcl]\nreconnect_max = \"50ms\"\n[[tcpcl.peers]]\naddress = \"127.0.0.1:{closed}\"\n");
    let (daemon, log) = logging_daemon(root.path(), &peer);
    // Many retries at most 50 ms apart.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(daemon);
    let written = std::fs::read_to_string(&log).expect("log");
    let warnings: Vec<&str> = written.lines().filter(|l| l.contains("not reachable")).collect();
    assert_eq!(warnings.len(), 1, "{written}");
    assert!(warnings[0].contains("WARN"), "{written}");
}

#[test]
fn the_daemon_listens_where_socket_says_and_offline_tools_do_not_take_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = root.path().join("node.toml");
    std::fs::write(
        &config,
        format!("node_id = \"ipn:1.0\"\ndata_dir = \"{}\"\n", root.path().join("data").display()),
    )
    .expect("config");
    let socket = root.path().join("elsewhere.sock");
    let mut child = Command::new(DTN)
        .args([
            "daemon",
            "--config",
            &config.display().to_string(),
            "--socket",
            &socket.display().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new(DTN)
        .args(["status", "--socket", &socket.display().to_string()])
        .output()
        .expect("dtn status");
    let _ = child.kill();
    let _ = child.wait();
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(!root.path().join("data/api.sock").exists(), "not the default socket");
    // A tool that talks to no daemon does not offer --socket.
    for args in [
        &["init", "--socket", "x"][..],
        &["bundle", "inspect", "--socket", "x", "f"],
        &["store", "check", "--socket", "x"],
    ] {
        let out = Command::new(DTN).args(args).output().expect("run dtn");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains("unexpected argument '--socket'"), "{}", text(&out.stderr));
    }
}

#[test]
fn a_refused_send_with_a_large_body_shows_the_daemons_reason_every_time() {
    let reason = "the payload is larger than the limit of 1000000 bytes ([api] max_payload)";
    let (daemon, file, _root) = refused_twenty_times("[api]\nmax_payload = 1000000\n", reason);
    // Arguments the client can check are checked before it connects.
    let out = daemon.dtn(&["send", "--to", "ipn:2.1", "--lifetime", "1x", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("dtn: --lifetime: invalid duration \"1x\""),
        "{}",
        text(&out.stderr)
    );
    let out = daemon.dtn(&["send", "--to", "nowhere", &file]);
    assert!(
        text(&out.stderr).starts_with("dtn: --to \"nowhere\" is not an endpoint ID"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_send_into_a_full_store_shows_the_daemons_reason_every_time() {
    refused_twenty_times("[store]\nmax_bytes = 1000000\n", "depleted storage");
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_definitions() {
    let bash = Command::new(DTN).args(["completions", "bash"]).output().expect("run dtn");
    assert!(bash.status.success());
    let script = text(&bash.stdout);
    assert!(
        script.contains("_dtn()") && script.contains("--lifetime") && script.contains("daemon"),
        "{script}"
    );
    let zsh = Command::new(DTN).args(["completions", "zsh"]).output().expect("run dtn");
    assert!(text(&zsh.stdout).starts_with("#compdef dtn"));
    let man = Command::new(DTN).arg("man").output().expect("run dtn");
    assert!(man.status.success());
    let page = text(&man.stdout);
    for title in [".TH dtn 1", ".TH dtn-daemon 1", ".TH dtn-send 1", ".TH dtn-store 1"] {
        assert!(page.contains(title), "{title} missing");
    }
    assert!(page.contains("\\-\\-lifetime"), "options are in the page");
    let wrong = Command::new(DTN).args(["completions", "tcsh"]).output().expect("run dtn");
    assert_eq!(wrong.status.code(), Some(2));
}
