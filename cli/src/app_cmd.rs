//! The client commands: `dtn send`, `recv`, `ping`, `bundles` — each a short exchange with the
//! daemon's local API (`dtn status` is in status_cmd.rs).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::client::{ChannelBody, Client, api_error, encode, read_json};

/// Which daemon a client command talks to.
#[derive(Debug, Args)]
pub struct DaemonSocket {
    /// The daemon's API socket (default: $DTN_SOCKET, else the data directory's api.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub daemon: DaemonSocket,
    /// Destination endpoint ID.
    #[arg(long, value_name = "EID")]
    to: String,
    /// Source endpoint ID (default: the node ID).
    #[arg(long, value_name = "EID")]
    from: Option<String>,
    /// Lifetime: seconds or units (30m, 1h, 7d). Default: the daemon's (1 day).
    #[arg(long)]
    lifetime: Option<String>,
    /// Bundle flags: a number or names (must-not-fragment, report-delivery, ...).
    #[arg(long)]
    flags: Option<String>,
    /// Status reports to ask for: received, forwarded, delivered, deleted (comma-separated).
    #[arg(long, value_delimiter = ',')]
    report: Vec<String>,
    /// Custody transfer hop by hop: this node keeps the bundle until the next custodian takes
    /// it, and sends it again until one does (docs/custody.md).
    #[arg(long)]
    custody: bool,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    /// The payload: a file, or `-` / nothing for standard input.
    file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RecvArgs {
    #[command(flatten)]
    pub daemon: DaemonSocket,
    /// The local endpoint to receive on (registered for good on first use).
    #[arg(long, value_name = "EID")]
    endpoint: String,
    /// How many bundles to receive.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Keep receiving until interrupted.
    #[arg(long, conflicts_with = "count")]
    follow: bool,
    /// Give up after this long without a bundle: exit code 2, or with --follow, exit 0 if any
    /// bundle was received (2 if none). Default: wait for ever.
    #[arg(long)]
    wait: Option<String>,
    /// Where payloads go: a directory (one file per bundle, named by bundle ID) or a file (one
    /// bundle). Default: standard output.
    #[arg(long, value_name = "DIR|FILE")]
    out: Option<PathBuf>,
    /// Print one JSON line per bundle (payloads go to --out).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub daemon: DaemonSocket,
    /// The node (or echo endpoint) to ping: ipn:N.0 pings ipn:N.7; dtn://name/ pings dtn://name/echo.
    target: String,
    /// How many pings.
    #[arg(long, default_value_t = 4)]
    count: u32,
    /// Time between pings.
    #[arg(long, default_value = "1s")]
    interval: String,
    /// How long to wait for each reply.
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// One JSON line per ping instead of text: `seq`, `from`, `rtt_ms` (null: no reply in time).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BundlesCommand {
    /// What the store holds and why each bundle waits.
    ///
    /// Example: dtn bundles list --json
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON, as the local API answers, instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One stored bundle, with its blocks.
    ///
    /// Example: dtn bundles show 42
    Show {
        id: u64,
        /// Print JSON, as the local API answers, instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Deletes a stored bundle (a deletion report goes out if it asked for one).
    ///
    /// Example: dtn bundles delete 42
    Delete { id: u64 },
}

/// `dtn bundles show` for people: what the store holds of one bundle, and the bundle itself.
fn bundle_text(b: &Value) -> String {
    use std::fmt::Write as _;
    let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let mut out = String::new();
    let _ = writeln!(out, "bundle {} ({})", b["id"], s(&b["bundle_id"]));
    let _ = writeln!(out, "  why        {}", s(&b["why"]));
    let _ = writeln!(out, "  to         {}", s(&b["destination"]));
    let _ = writeln!(out, "  size       {} bytes as stored", b["length"]);
    let _ = writeln!(out, "  received   {}", s(&b["received_at"]));
    let _ = writeln!(out, "  expires    {}", s(&b["expires_at"]));
    let custody = &b["custody"];
    if custody.is_object() {
        let mut line = match custody["custodian"].as_str() {
            Some(custodian) => format!("custodian {custodian}"),
            None => "not under custody here".to_string(),
        };
        if let Some(from) = custody["awaiting_signal_from"].as_str() {
            let _ = write!(line, "; awaiting the signal of {from}");
        }
        if let Some(at) = custody["retransmit_at"].as_str() {
            let _ = write!(line, "; sent again at {at}");
        }
        let _ = write!(line, "; {} transmissions", custody["transmissions"]);
        let _ = writeln!(out, "  custody    {line}");
    }
    let bundle = &b["bundle"];
    if bundle.is_object() {
        let _ =
            writeln!(out, "  from       {} (reports to {})", s(&bundle["source"]), s(&bundle["report_to"]));
        let created = bundle["creation_time"].as_u64().unwrap_or(0);
        let created =
            if created == 0 { "no clock (time 0)".to_string() } else { bpa::time::format_dtn_time(created) };
        let _ = writeln!(
            out,
            "  created    {created}, sequence {}, lifetime {}",
            bundle["sequence"],
            human_ms(bundle["lifetime_ms"].as_u64().unwrap_or(0))
        );
        let flags: Vec<String> =
            bundle["flag_names"].as_array().map_or_else(Vec::new, |names| names.iter().map(s).collect());
        let _ = writeln!(
            out,
            "  flags      {:#x}{}",
            bundle["flags"].as_u64().unwrap_or(0),
            if flags.is_empty() { String::new() } else { format!(" ({})", flags.join(", ")) }
        );
        if bundle["fragment"].is_object() {
            let _ = writeln!(
                out,
                "  fragment   at offset {} of an ADU of {} bytes",
                bundle["fragment"]["offset"], bundle["fragment"]["total_adu_length"]
            );
        }
        let _ = writeln!(out, "  payload    {} bytes", bundle["payload_length"]);
        for block in bundle["blocks"].as_array().map_or(&[][..], Vec::as_slice) {
            let code = block["type"].as_u64().unwrap_or(0);
            let _ = writeln!(
                out,
                "  block {:<4} {} (type {code}), {} bytes, flags {:#x}",
                block["number"].as_u64().unwrap_or(0),
                bpa::bundle::block_type_name(code),
                block["length"],
                block["flags"].as_u64().unwrap_or(0)
            );
        }
    }
    out
}

/// A length of time for people: 90 s, 2.5 h, 3 d.
pub(crate) fn span(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds} s")
    } else if seconds < 7_200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else if seconds < 172_800.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.1} d", seconds / 86_400.0)
    }
}

/// A duration in milliseconds, for people: 500 ms, 90 s, 2.5 h, 3 d.
fn human_ms(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { span(ms as f64 / 1000.0) }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn send(client: Client, args: SendArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(send_async(client, args))
}

async fn send_async(client: Client, args: SendArgs) -> anyhow::Result<ExitCode> {
    // What can be checked here is checked before anything is sent.
    args.to
        .parse::<bpa::Eid>()
        .map_err(|e| anyhow::anyhow!("--to {:?} is not an endpoint ID: {e}", args.to))?;
    if let Some(from) = &args.from {
        from.parse::<bpa::Eid>()
            .map_err(|e| anyhow::anyhow!("--from {from:?} is not an endpoint ID: {e}"))?;
    }
    if let Some(lifetime) = &args.lifetime {
        bpa::time::parse_duration(lifetime).map_err(|e| anyhow::anyhow!("--lifetime: {e}"))?;
    }
    let mut flags = match &args.flags {
        Some(text) => text.parse::<bpa::BundleFlags>().map_err(anyhow::Error::msg)?.0,
        None => 0,
    };
    for report in &args.report {
        flags |= match report.as_str() {
            "received" => bpa::bundle::BundleFlags::REPORT_RECEPTION,
            "forwarded" => bpa::bundle::BundleFlags::REPORT_FORWARDING,
            "delivered" => bpa::bundle::BundleFlags::REPORT_DELIVERY,
            "deleted" => bpa::bundle::BundleFlags::REPORT_DELETION,
            other => anyhow::bail!("unknown report {other:?}: use received, forwarded, delivered, deleted"),
        };
    }
    let mut path = format!("/v1/send?to={}", encode(&args.to));
    if let Some(from) = &args.from {
        path.push_str(&format!("&from={}", encode(from)));
    }
    if let Some(lifetime) = &args.lifetime {
        path.push_str(&format!("&lifetime={}", encode(lifetime)));
    }
    if flags != 0 {
        path.push_str(&format!("&flags={flags}"));
    }
    if args.custody {
        path.push_str("&custody=true");
    }
    // The payload streams to the daemon, which streams it into its store: neither side holds
    // it in memory. Standard input goes chunked (its length is not known in advance).
    let (reader, length): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) =
        match args.file.as_deref().filter(|p| *p != Path::new("-")) {
            Some(file) => {
                let handle = tokio::fs::File::open(file)
                    .await
                    .with_context(|| format!("cannot open {}", file.display()))?;
                let length =
                    handle.metadata().await.with_context(|| format!("cannot read {}", file.display()))?.len();
                (Box::new(handle), Some(length))
            }
            None => (Box::new(tokio::io::stdin()), None),
        };
    let bar = length.and_then(progress_bar);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let streamer = tokio::spawn(stream_reader(reader, tx, bar.clone()));
    let response = client.request(Method::POST, &path, ChannelBody::new(rx, length)).await;
    streamer.abort();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let response = response?;
    let answer = read_json(response).await?;
    if args.json {
        println!("{answer}");
    } else {
        println!(
            "sent {} (store id {}, {} bytes): durable on this node",
            answer["bundle_id"].as_str().unwrap_or("?"),
            answer["id"],
            answer["payload_length"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on a terminal, none when stderr is piped.
fn progress_bar(length: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || length < 1 << 20 {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(length), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec} {eta}")
    {
        bar.set_style(style);
    }
    Some(bar)
}

async fn stream_reader(
    mut file: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    bar: Option<indicatif::ProgressBar>,
) {
    loop {
        let mut chunk = vec![0u8; 256 * 1024];
        match file.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => {
                chunk.truncate(n);
                if let Some(bar) = &bar {
                    bar.inc(n as u64);
                }
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = tx.send(Err(error)).await;
                return;
            }
        }
    }
}

pub fn recv(client: Client, args: RecvArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(recv_async(client, args))
}

/// Where received payloads go.
enum Output {
    Stdout,
    Dir(PathBuf),
    File(PathBuf),
}

async fn recv_async(client: Client, args: RecvArgs) -> anyhow::Result<ExitCode> {
    let output = match &args.out {
        None if args.json => anyhow::bail!("--json prints metadata only: give --out DIR for the payloads"),
        None => Output::Stdout,
        Some(dir) if dir.is_dir() => Output::Dir(dir.clone()),
        // A name ending in `/` that is not there yet: a directory, made now (before anything is
        // received, so nothing is half written if it cannot be).
        Some(dir) if !dir.exists() && dir.as_os_str().as_encoded_bytes().ends_with(b"/") => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make the directory --out {}", dir.display()))?;
            Output::Dir(dir.clone())
        }
        Some(_) if args.follow || args.count > 1 => {
            anyhow::bail!("--out names a file but more than one bundle is asked for: give a directory")
        }
        Some(file) => {
            let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !parent.is_dir() {
                anyhow::bail!(
                    "--out {}: the directory {} does not exist (end the name with / to receive into a new directory)",
                    file.display(),
                    parent.display()
                );
            }
            Output::File(file.clone())
        }
    };
    let limit = match &args.wait {
        Some(text) => Some(bpa::time::parse_duration(text)?),
        None => None,
    };
    let mut received = 0u64;
    while args.follow || received < args.count {
        let started = Instant::now();
        let response = loop {
            // Long polls of at most a minute, so a daemon restart is noticed.
            let mut wait = Duration::from_secs(60);
            if let Some(limit) = limit {
                let left = limit.saturating_sub(started.elapsed());
                if left.is_zero() {
                    let wait = args.wait.as_deref().unwrap_or("");
                    if received > 0 {
                        eprintln!(
                            "dtn recv: {received} received; nothing more for {} within {wait}",
                            args.endpoint
                        );
                    } else {
                        eprintln!("dtn recv: nothing for {} within {wait}", args.endpoint);
                    }
                    // --follow ends after the wait without a bundle: success if it got any.
                    return Ok(if args.follow && received > 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(2)
                    });
                }
                wait = wait.min(left);
            }
            let path =
                format!("/v1/receive?endpoint={}&wait={}ms", encode(&args.endpoint), wait.as_millis().max(1));
            // A bundle found damaged while it is read is cut off by the daemon: before its answer
            // has started (this error), or during it (below).
            let response = client.request(Method::GET, &path, Full::new(Bytes::new())).await.map_err(|error| {
                if error.is::<crate::client::NoDaemon>() {
                    error
                } else {
                    error.context(
                        "the payload was cut off or the daemon went away (nothing was acknowledged; it stays on the node)",
                    )
                }
            })?;
            match response.status() {
                StatusCode::NO_CONTENT => continue,
                StatusCode::OK => break response,
                status => {
                    let body = response.into_body().collect().await?.to_bytes();
                    return Err(api_error(status, &body));
                }
            }
        };
        let header = |name: &str| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
        };
        let store_id = header(bpa::api::headers::STORE_ID);
        let bundle_id = header(bpa::api::headers::BUNDLE_ID);
        let source = header(bpa::api::headers::SOURCE);
        let mut body = response.into_body();
        let written_to = match &output {
            Output::Stdout => None,
            Output::Dir(dir) => Some(dir.join(file_name(&bundle_id))),
            Output::File(file) => Some(file.clone()),
        };
        // Durable before acknowledged, on this side too: the payload is written under a
        // temporary name of its own (created exclusively, so two receivers sharing a folder
        // never share one), fsynced and renamed into place before the ack.
        let mut part = match &written_to {
            Some(target) => Some(PartFile::create(target)?),
            None => None,
        };
        let mut stdout = std::io::stdout().lock();
        let mut length = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.context("the payload was cut off (nothing was acknowledged; it stays on the node)")?;
            if let Ok(data) = frame.into_data() {
                length += data.len() as u64;
                match &mut part {
                    Some(part) => part.write(&data)?,
                    None => stdout.write_all(&data).context("cannot write standard output")?,
                }
            }
        }
        match (part, &written_to) {
            (Some(part), Some(target)) => part.finish(target)?,
            _ => stdout.flush().context("cannot write standard output")?,
        }
        let ack = format!("/v1/ack?endpoint={}&id={}", encode(&args.endpoint), encode(&store_id));
        client.json(Method::POST, &ack).await?;
        received += 1;
        if args.json {
            let line = json!({
                "bundle_id": bundle_id, "source": source, "payload_length": length,
                "file": written_to.as_ref().map(|p| p.display().to_string()),
            });
            println!("{line}");
        } else if let Some(path) = &written_to {
            eprintln!("received {bundle_id} from {source}: {length} bytes in {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A payload being written: a temporary file beside its target, removed unless finished.
struct PartFile {
    file: std::fs::File,
    path: PathBuf,
    finished: bool,
}

impl PartFile {
    /// `.NAME.PID-N.part` beside `target`, created exclusively (`O_EXCL`): no other receiver,
    /// in this process or another, writes the same file.
    fn create(target: &Path) -> anyhow::Result<PartFile> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".{name}.{}-{n}.part", std::process::id()));
            match std::fs::File::options().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok(PartFile { file, path, finished: false }),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error).with_context(|| format!("cannot create {}", path.display())),
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.file.write_all(data).with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Makes the payload durable under its own name: fsync, rename, fsync of the directory.
    fn finish(mut self, target: &Path) -> anyhow::Result<()> {
        self.file.sync_all().with_context(|| format!("cannot write {}", self.path.display()))?;
        std::fs::rename(&self.path, target)
            .with_context(|| format!("cannot rename {} to {}", self.path.display(), target.display()))?;
        self.finished = true;
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(dir) = std::fs::File::open(parent)
        {
            dir.sync_all().with_context(|| format!("cannot sync the directory {}", parent.display()))?;
        }
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A file name for a bundle ID: its characters that are safe in names, others as `_`.
fn file_name(bundle_id: &str) -> String {
    bundle_id.chars().map(|c| if c.is_ascii_alphanumeric() || "-.+".contains(c) { c } else { '_' }).collect()
}

pub fn ping(client: Client, args: PingArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(ping_async(client, args))
}

async fn ping_async(client: Client, args: PingArgs) -> anyhow::Result<ExitCode> {
    let target: bpa::Eid =
        args.target.parse().map_err(|e| anyhow::anyhow!("{:?} is not an endpoint ID: {e}", args.target))?;
    let echo = match &target {
        bpa::bundle::Eid::Ipn { allocator, node, service: 0 } => {
            bpa::bundle::Eid::Ipn { allocator: *allocator, node: *node, service: 7 }
        }
        bpa::bundle::Eid::Dtn { node, demux } if demux.is_empty() => {
            bpa::bundle::Eid::dtn(node, "echo").map_err(anyhow::Error::msg)?
        }
        other => other.clone(),
    };
    let interval = bpa::time::parse_duration(&args.interval)?;
    let timeout = bpa::time::parse_duration(&args.timeout)?;
    let status = client.json(Method::GET, "/v1/status").await?;
    let node: bpa::Eid = status["node_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the daemon's status has no node ID")?;
    // A private endpoint for the replies, forgotten at the end.
    let clock_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let nonce = u64::from(std::process::id()) * 1000 + clock_nanos % 1000;
    let me = match &node {
        bpa::bundle::Eid::Ipn { allocator, node, .. } => {
            bpa::bundle::Eid::Ipn { allocator: *allocator, node: *node, service: 0x10_0000 + nonce }
        }
        bpa::bundle::Eid::Dtn { node, .. } => {
            bpa::bundle::Eid::dtn(node, &format!("ping-{nonce}")).map_err(anyhow::Error::msg)?
        }
        bpa::bundle::Eid::Null => anyhow::bail!("the daemon has no node ID"),
    };
    let lifetime_s = timeout.as_secs().max(1);
    let mut replies = 0u32;
    let mut rtts = Vec::new();
    let result: anyhow::Result<()> = async {
        for seq in 0..args.count {
            let payload = format!("dtn-ping {seq} {nonce}");
            let path = format!(
                "/v1/send?to={}&from={}&lifetime={lifetime_s}",
                encode(&echo.to_string()),
                encode(&me.to_string())
            );
            let sent = Instant::now();
            let response = client.request(Method::POST, &path, Full::new(Bytes::from(payload.clone()))).await?;
            read_json(response).await?;
            let deadline = sent + timeout;
            let mut answered = false;
            while Instant::now() < deadline {
                let wait = deadline.saturating_duration_since(Instant::now()).as_millis().max(1);
                let path = format!("/v1/receive?endpoint={}&wait={wait}ms", encode(&me.to_string()));
                let response = client.request(Method::GET, &path, Full::new(Bytes::new())).await?;
                if response.status() == StatusCode::NO_CONTENT {
                    break;
                }
                let store_id = response
                    .headers()
                    .get(bpa::api::headers::STORE_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let body = response.into_body().collect().await?.to_bytes();
                client.json(Method::POST, &format!("/v1/ack?endpoint={}&id={store_id}", encode(&me.to_string()))).await?;
                if body.as_ref() == payload.as_bytes() {
                    let rtt = sent.elapsed();
                    rtts.push(rtt);
                    replies += 1;
                    answered = true;
                    if args.json {
                        println!("{}", json!({ "seq": seq, "from": echo.to_string(), "rtt_ms": rtt.as_secs_f64() * 1000.0 }));
                    } else {
                        println!("reply from {echo}: seq={seq} time={:.1} ms", rtt.as_secs_f64() * 1000.0);
                    }
                    break;
                }
            }
            if !answered {
                if args.json {
                    println!("{}", json!({ "seq": seq, "from": echo.to_string(), "rtt_ms": null }));
                } else {
                    println!("no reply from {echo}: seq={seq} within {}", args.timeout);
                }
            }
            if seq + 1 < args.count {
                tokio::time::sleep(interval.saturating_sub(sent.elapsed())).await;
            }
        }
        Ok(())
    }
    .await;
    let _ =
        client.json(Method::DELETE, &format!("/v1/registrations?endpoint={}", encode(&me.to_string()))).await;
    result?;
    if !args.json {
        if rtts.is_empty() {
            println!("{} sent, no replies", args.count);
        } else {
            let avg = rtts.iter().map(Duration::as_secs_f64).sum::<f64>() / rtts.len() as f64;
            println!("{} sent, {replies} replies, average {:.1} ms", args.count, avg * 1000.0);
        }
    }
    Ok(if replies == args.count { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub fn bundles(client: Client, command: BundlesCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match command {
            BundlesCommand::List { limit, json } => {
                let mut after = 0u64;
                let mut left = limit;
                let mut all = Vec::new();
                while left > 0 {
                    let page_size = left.min(1000);
                    let page = client
                        .json(Method::GET, &format!("/v1/bundles?after={after}&limit={page_size}"))
                        .await?;
                    let bundles = page["bundles"].as_array().cloned().unwrap_or_default();
                    left -= bundles.len().min(left);
                    all.extend(bundles);
                    match page["next_after"].as_u64() {
                        Some(next) => after = next,
                        None => break,
                    }
                }
                if json {
                    println!("{}", Value::Array(all));
                } else if all.is_empty() {
                    println!("the store is empty");
                } else {
                    println!(
                        "{:>8}  {:>10}  {:<28}  {:<24}  {:<9}  WHY",
                        "ID", "BYTES", "DESTINATION", "EXPIRES", "CUSTODY"
                    );
                    for b in &all {
                        println!(
                            "{:>8}  {:>10}  {:<28}  {:<24}  {:<9}  {}",
                            b["id"].to_string(),
                            b["length"].to_string(),
                            b["destination"].as_str().unwrap_or(""),
                            b["expires_at"].as_str().unwrap_or(""),
                            if b["custodial"].as_bool() == Some(true) { "custodian" } else { "-" },
                            b["why"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            BundlesCommand::Show { id, json } => {
                let b = client.json(Method::GET, &format!("/v1/bundles/{id}")).await?;
                if json {
                    println!("{b}");
                } else {
                    print!("{}", bundle_text(&b));
                }
            }
            BundlesCommand::Delete { id } => {
                client.json(Method::DELETE, &format!("/v1/bundles/{id}")).await?;
                println!("deleted bundle {id}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
