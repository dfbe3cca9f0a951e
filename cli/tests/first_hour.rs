//! What a new user runs into in the first hour (issue 14), each with the real binary.

mod common;

use std::process::{Command, Stdio};

use common::{DTN, Daemon, text};

/// A daemon started from `cwd` with `--config CONFIG` (both as given).
fn start_in(cwd: &std::path::Path, config: &str, dir: &std::path::Path) -> Daemon {
    let child = Command::new(DTN)
        .current_dir(cwd)
        .args(["daemon", "--config", config])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    Daemon::adopt(child, dir)
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
    let daemon = start_in(&elsewhere, "../conf/node.toml", &conf);
    assert!(conf.join("data/store.sqlite").exists(), "the store is beside the config file");
    assert!(!elsewhere.join("data").exists(), "nothing in the working directory");
    let sent = daemon.dtn(&["send", "--to", "ipn:9.1", "--lifetime", "1h", "-"]);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    drop(daemon);
    // ... and from another: the same store, with the bundle in it.
    let daemon = start_in(&other, &conf.join("node.toml").display().to_string(), &conf);
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
