//! Contact plans through the real `dtn` binary (issue 15): `dtn plan check`, `dtn route`
//! (offline and from a daemon), `dtn contacts`, and two daemons whose TCPCL session opens at a
//! planned contact's start and closes at its end, on the wall clock (seconds).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{DTN, Daemon, free_port, text};

const CHAIN: &str = "\
# a chain 1 -> 2 -> 3 -> 4 with disjoint windows
a contact +10 +70 1 2 100000
a contact +100 +160 2 3 100000
a contact +200 +260 3 4 100000
a contact +0 +1000 1 4 100
a range +0 +1000 1 2 1
a range +0 +1000 2 3 1
a range +0 +1000 3 4 1
a range +0 +1000 1 4 0
";

fn dtn(args: &[&str]) -> std::process::Output {
    Command::new(DTN).args(args).output().expect("run dtn")
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    path.display().to_string()
}

#[test]
fn plan_check_summarises_or_names_the_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(dir.path(), "chain.rc", CHAIN);
    let out = dtn(&["plan", "check", &plan]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Relative times count from now, as a daemon loading the plan now would count them; each
    // end is shown as a UTC time too.
    let said = text(&out.stdout);
    assert!(
        said.starts_with(&format!(
            "{plan}: ion plan, 4 nodes, 4 contacts, 4 ranges, from +0 s to +1000 s after 20"
        )),
        "{said}"
    );
    assert!(said.ends_with("Z, 16.7 min)\n"), "{said}");
    // Absolute times are shown as they are, whenever the check runs.
    let absolute = write(
        dir.path(),
        "absolute.rc",
        "a contact 2031/01/02-03:04:05 2031/01/02-04:04:05 1 2 1000\na range 2031/01/02-00:00:00 2031/01/03-00:00:00 1 2 1\n",
    );
    let said = text(&dtn(&["plan", "check", &absolute]).stdout);
    assert!(said.contains("(2031-01-02T03:04:05.000Z to 2031-01-02T04:04:05.000Z, 60.0 min)"), "{said}");
    let bad = write(dir.path(), "bad.rc", "a contact +0 +10 1 2 1000\na contact +0 +10 1 2 fast\n");
    let out = dtn(&["plan", "check", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "dtn: {bad}: read as ion: line 2, column 22: the rate (bytes per second) \"fast\" is not a whole number\n"
        )
    );
    let json = write(
        dir.path(),
        "hdtn.json",
        r#"{"contacts":[{"contact":0,"source":1,"dest":2,"startTime":0,"endTime":10,"rateBitsPerSec":8000,"owlt":0}]}"#,
    );
    assert!(
        text(&dtn(&["plan", "check", &json]).stdout).contains("hdtn plan, 2 nodes, 1 contacts, 1 ranges")
    );
    let toml = write(
        dir.path(),
        "p.toml",
        "[[contact]]\nfrom = 1\nto = 2\nstart = 0\nduration = 60\nrate = \"1 Mbit/s\"\nbidirectional = true\n",
    );
    assert!(text(&dtn(&["plan", "check", &toml]).stdout).contains("toml plan, 2 nodes, 2 contacts"));
    let unranged = write(dir.path(), "u.rc", "a contact +0 +10 1 2 1000\n");
    assert!(
        text(&dtn(&["plan", "check", &unranged]).stdout)
            .contains("1 contacts have no range covering their start")
    );
}

#[test]
fn route_offline_explains_and_prints_the_documented_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(dir.path(), "chain.rc", CHAIN);
    let out = dtn(&["route", "--plan", &plan, "--from", "ipn:1.0", "--to", "ipn:4.1", "--size", "50000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let words = text(&out.stdout);
    assert!(words.contains("next hop ipn:2.0, arriving at +201.500 s"), "{words}");
    assert!(words.contains("ipn:2.0 -> ipn:3.0  contact +100.000 s .. +160.000 s at 100000 B/s"), "{words}");
    assert!(words.contains("not via ipn:4.0: arrives 298.500 s later, at +500.000 s"), "{words}");
    let out = dtn(&[
        "route", "--plan", &plan, "--from", "1", "--to", "ipn:4.1", "--size", "50000", "--at", "+20",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["destination"], "ipn:4.1");
    assert_eq!(json["size"], 50000);
    assert_eq!(json["reason"], serde_json::Value::Null);
    let best = &json["routes"][0];
    assert_eq!(best["next_hop"], "ipn:2.0");
    assert_eq!(best["arrival_offset_s"], 201.5);
    assert_eq!(best["hops"], 3);
    assert!(best["arrival_time"].as_u64().expect("arrival_time") > 0);
    let first = &best["contacts"][0];
    for key in ["from", "to", "start_offset_s", "end_offset_s", "rate"] {
        assert!(!first[key].is_null(), "{key} in {first}");
    }
    assert_eq!(first["transmit_offset_s"], 20.0, "asked at +20 s, during the contact");
    // No route: exit 0, routes empty, the reason.
    let out = dtn(&[
        "route",
        "--plan",
        &plan,
        "--from",
        "1",
        "--to",
        "ipn:4.1",
        "--size",
        "50000",
        "--lifetime",
        "30s",
        "--json",
    ]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["routes"], serde_json::json!([]));
    assert_eq!(
        json["reason"],
        "the earliest route arrives at +201.500 s, after the bundle expires at +30.000 s"
    );
    let out = dtn(&["route", "--plan", &plan, "--from", "ipn:9.0", "--to", "ipn:4.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "dtn: --from ipn:9.0: the plan has no node \"9\" (4 nodes)\n");
    let out = dtn(&["route", "--plan", &plan, "--to", "ipn:4.1"]);
    assert_eq!(out.status.code(), Some(2), "--plan needs --from");
}

#[test]
fn contacts_as_a_table_and_as_an_svg_timeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(dir.path(), "chain.rc", CHAIN);
    let out = dtn(&["contacts", "--plan", &plan]);
    let table = text(&out.stdout);
    assert!(table.starts_with("4 contacts; times in seconds after the plan's reference"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("ipn:1.0") && l.contains("+0") && l.ends_with("NOW")),
        "{table}"
    );
    let svg = dir.path().join("plan.svg");
    let out = dtn(&["contacts", "--plan", &plan, "--svg", &svg.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let svg = std::fs::read_to_string(&svg).expect("svg");
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(svg.matches("<rect ").count(), 4, "one bar per contact");
    assert_eq!(svg.matches("→").count() - 4, 4, "one row per node pair (labels), besides the bars' titles");
    assert!(svg.contains("stroke=\"red\""), "the current time is marked");
    assert!(svg.trim_end().ends_with("</svg>"));
}

/// Waits for `check` for at most `within`.
fn wait_for(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sessions(daemon: &Daemon) -> usize {
    let out = daemon.dtn(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    status["convergence_layers"][0]["sessions"].as_array().map_or(0, Vec::len)
}

#[test]
fn two_daemons_open_the_session_at_the_planned_contact_and_close_it_at_its_end() {
    let port = free_port();
    let (a_dir, b_dir) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    // A's plan: a contact to B from +4 s to +9 s; B listens, A knows its address.
    let plan = write(a_dir.path(), "plan.rc", "a contact +4 +9 1 2 1000000\na range +0 +100 1 2 0\n");
    std::fs::write(
        a_dir.path().join("node.toml"),
        format!(
            "node_id = \"ipn:1.0\"\ndata_dir = \"data\"\n[routing]\nplan = \"plan.rc\"\n\
             [[tcpcl.peers]]\naddress = \"127.0.0.1:{port}\"\nnode_id = \"ipn:2.0\"\n"
        ),
    )
    .expect("a config");
    std::fs::write(
        b_dir.path().join("node.toml"),
        format!("node_id = \"ipn:2.0\"\ndata_dir = \"data\"\n[tcpcl]\nlisten = [\"127.0.0.1:{port}\"]\n"),
    )
    .expect("b config");
    let started = Instant::now();
    let b = Daemon::start(b_dir.path());
    let a = Daemon::start(a_dir.path());
    let _ = plan;
    let payload = a_dir.path().join("hello.txt");
    std::fs::write(&payload, b"over the planned contact").expect("payload");
    let out = a.dtn(&["send", "--to", "ipn:2.5", &payload.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // What A says it will do.
    let out = a.dtn(&["route", "--to", "ipn:2.5", "--size", "100", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("route json");
    assert_eq!(json["routes"][0]["next_hop"], "ipn:2.0", "{json}");
    let contact_start = json["routes"][0]["contacts"][0]["start_offset_s"].as_f64().expect("start");
    assert_eq!(contact_start, 4.0);
    // Before the contact: no session, nothing at B.
    std::thread::sleep(Duration::from_secs(2));
    if started.elapsed() < Duration::from_secs(3) {
        assert_eq!(sessions(&a), 0, "no session before the contact");
    }
    // During it: the session opens and the bundle arrives.
    let out = b.dtn(&["recv", "--endpoint", "ipn:2.5", "--count", "1", "--wait", "20s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"over the planned contact");
    assert!(started.elapsed() >= Duration::from_secs(3), "not before the contact (A's plan starts ~+4 s)");
    // After it: A closes the session.
    wait_for(Duration::from_secs(20), "the session closes at the contact's end", || sessions(&a) == 0);
    assert!(started.elapsed() >= Duration::from_secs(8));
    // dtn contacts from the daemon shows the plan, the contact ended.
    let out = a.dtn(&["contacts"]);
    let table = text(&out.stdout);
    assert!(table.lines().any(|l| l.starts_with("ipn:1.0") && l.ends_with("ended")), "{table}");
    // A bundle sent now waits: no contact is planned any more.
    let out = a.dtn(&["send", "--to", "ipn:2.5", &payload.display().to_string()]);
    assert!(out.status.success());
    let out = a.dtn(&["route", "--to", "ipn:2.5", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("route json");
    assert_eq!(json["routes"], serde_json::json!([]));
    assert!(
        json["reason"].as_str().expect("reason").starts_with("no contact leaves ipn:1.0 after"),
        "{json}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sessions(&a), 0);
    // A new plan, live, with a contact from now: the waiting bundle goes.
    let now_plan = write(a_dir.path(), "now.rc", "a contact +0 +60 1 2 1000000\na range +0 +100 1 2 0\n");
    let out = a.dtn(&["plan", "load", &now_plan]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("loaded {now_plan}: ion plan, 2 nodes, 1 contacts")));
    let out = b.dtn(&["recv", "--endpoint", "ipn:2.5", "--count", "1", "--wait", "20s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Errors: no plan on B; a bad plan refused with its line.
    let out = b.dtn(&["route", "--to", "ipn:1.0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("this node has no contact plan"), "{}", text(&out.stderr));
    let bad = write(a_dir.path(), "bad.rc", "a contact +0\n");
    let out = a.dtn(&["plan", "load", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("line 1, column"), "{}", text(&out.stderr));
}

/// The peers connected over TCPCLv3 now.
fn tcpcl3_connected(daemon: &Daemon) -> usize {
    let out = daemon.dtn(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    status["convergence_layers"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["name"] == "tcpcl3"))
        .and_then(|layer| layer["connected"].as_array())
        .map_or(0, Vec::len)
}

#[test]
fn a_tcpcl3_peer_is_connected_only_during_its_planned_contact() {
    let port = free_port();
    let (a_dir, b_dir) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    write(a_dir.path(), "plan.rc", "a contact +3 +7 1 2 1000000\na range +0 +100 1 2 0\n");
    std::fs::write(
        a_dir.path().join("node.toml"),
        format!(
            "node_id = \"ipn:1.0\"\ndata_dir = \"data\"\n[routing]\nplan = \"plan.rc\"\n\
             [[tcpcl3.peers]]\naddress = \"127.0.0.1:{port}\"\nnode_id = \"ipn:2.0\"\n"
        ),
    )
    .expect("a config");
    std::fs::write(
        b_dir.path().join("node.toml"),
        format!("node_id = \"ipn:2.0\"\ndata_dir = \"data\"\n[tcpcl3]\nlisten = [\"127.0.0.1:{port}\"]\n"),
    )
    .expect("b config");
    let started = Instant::now();
    let b = Daemon::start(b_dir.path());
    let a = Daemon::start(a_dir.path());
    let payload = a_dir.path().join("hello.txt");
    std::fs::write(&payload, b"over TCPCLv3 at the planned contact").expect("payload");
    let out = a.dtn(&["send", "--to", "ipn:2.5", &payload.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    if started.elapsed() < Duration::from_secs(2) {
        assert_eq!(tcpcl3_connected(&a), 0, "no connection before the contact");
    }
    let out = b.dtn(&["recv", "--endpoint", "ipn:2.5", "--count", "1", "--wait", "20s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"over TCPCLv3 at the planned contact");
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the contact (+3 s)");
    wait_for(Duration::from_secs(20), "the connection closes at the contact's end", || {
        tcpcl3_connected(&a) == 0 && tcpcl3_connected(&b) == 0
    });
    assert!(started.elapsed() >= Duration::from_secs(6));
    // And it is not dialled again after the contact.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tcpcl3_connected(&a), 0);
}
