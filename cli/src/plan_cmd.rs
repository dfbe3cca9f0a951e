//! Contact plans from the command line: `dtn plan check|load`, `dtn route`, `dtn contacts`.
//! Each answers offline from a plan file (`--plan`), or asks the running daemon.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bpa::Eid;
use bpa::agent::{plan_endpoint, plan_name};
use clap::{Args, Subcommand};
use hyper::Method;
use routing::cgr::{ContactGraph, Query};
use routing::explain::{self, ContactTable, RouteReport};
use routing::{Plan, PlanFormat};

use crate::app_cmd::{DaemonSocket, span};
use crate::client::{Client, encode, read_json};

/// A plan file larger than this is refused (a plan of a million contacts is ~60 MB of text).
const MAX_PLAN_FILE: u64 = 256 * 1024 * 1024;

/// Contacts listed at most by `dtn contacts` (the SVG too).
const MAX_CONTACTS_SHOWN: usize = 100_000;

/// The lifetime assumed when none is given (the daemon's default).
const DEFAULT_LIFETIME: &str = "1d";

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Check a contact plan file: errors with their line and column, else a summary.
    ///
    /// Example: dtn plan check contacts.rc
    Check {
        /// The plan (ION `ionrc`, HDTN JSON, dtn-tvg-util JSON, or TOML).
        file: PathBuf,
        /// Read it as this form instead of guessing from its name and content.
        #[arg(long, value_name = "ion|hdtn|tvgutil|toml")]
        format: Option<PlanFormat>,
    },
    /// Replace the running daemon's contact plan; what waits is routed again.
    ///
    /// Example: dtn plan load contacts.rc
    Load {
        file: PathBuf,
        #[arg(long, value_name = "ion|hdtn|tvgutil|toml")]
        format: Option<PlanFormat>,
        #[command(flatten)]
        daemon: DaemonSocket,
    },
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The destination: an endpoint ID, or a plan node's name.
    #[arg(long, value_name = "EID")]
    to: String,
    /// The bundle's size in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1000)]
    size: u64,
    /// Its lifetime from the time asked about (30m, 1h, 7d; default 1d).
    #[arg(long, value_name = "DURATION")]
    lifetime: Option<String>,
    /// When: +SECONDS after the plan's reference time, or UTC yyyy/mm/dd-hh:mm:ss (default: now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Answer from this plan file alone, no daemon (its reference time is now).
    #[arg(long, value_name = "FILE", requires = "from")]
    plan: Option<PathBuf>,
    /// With --plan: the node the bundle is at (an endpoint ID or a plan node's name).
    #[arg(long, value_name = "NODE-ID", requires = "plan")]
    from: Option<String>,
    /// Print the decision as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    daemon: DaemonSocket,
}

#[derive(Debug, Args)]
pub struct ContactsArgs {
    /// Show this plan file (its reference time is now) instead of the daemon's plan.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// Write an SVG timeline here instead of printing a table.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Print the contacts as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    daemon: DaemonSocket,
}

/// Reads a plan file, with the reference time `reference` (DTN ms).
pub fn read_plan(
    path: &Path,
    format: Option<PlanFormat>,
    reference: u64,
) -> anyhow::Result<(Plan, PlanFormat)> {
    let text = read_text(path)?;
    let name = path.to_string_lossy();
    let format = format.unwrap_or_else(|| PlanFormat::detect(&name, &text));
    let plan = format.parse(&text, reference).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((plan, format))
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    let size = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    anyhow::ensure!(
        size <= MAX_PLAN_FILE,
        "{} is {size} bytes: a plan file is at most {MAX_PLAN_FILE} bytes",
        path.display()
    );
    std::fs::read_to_string(path).with_context(|| format!("cannot read {} as text", path.display()))
}

fn now_dtn_ms() -> u64 {
    use bpa::Clock as _;
    bpa::SystemClock.now_dtn_ms()
}

/// A plan node as shown: its node ID when it has one.
fn shown(name: &str) -> String {
    plan_endpoint(name).map_or_else(|| name.to_string(), |eid| eid.to_string())
}

/// The plan node an argument names: an endpoint ID's node, or the name itself.
fn node_name(text: &str) -> String {
    match text.parse::<Eid>() {
        Ok(eid) => plan_name(&eid).unwrap_or_else(|| text.to_string()),
        Err(_) => text.to_string(),
    }
}

/// `+SECONDS` (or plain seconds) after `reference`, or an absolute UTC time.
fn time_arg(text: &str, reference: u64) -> anyhow::Result<u64> {
    bpa::api::plan_time(text, reference).map_err(|e| anyhow::anyhow!("--at: {e}"))
}

fn lifetime_ms(lifetime: Option<&str>) -> anyhow::Result<u64> {
    let text = lifetime.unwrap_or(DEFAULT_LIFETIME);
    let duration = bpa::time::parse_duration(text).map_err(|e| anyhow::anyhow!("--lifetime: {e}"))?;
    Ok(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

pub fn plan(command: PlanCommand) -> anyhow::Result<ExitCode> {
    match command {
        PlanCommand::Check { file, format } => {
            // Relative times count from now, as a daemon loading the plan now would count them.
            let reference = now_dtn_ms();
            let (plan, format) = read_plan(&file, format, reference)?;
            let graph = ContactGraph::new(plan);
            println!(
                "{}: {}",
                file.display(),
                describe_summary(&explain::summary(&graph), format, reference)
            );
            Ok(ExitCode::SUCCESS)
        }
        PlanCommand::Load { file, format, daemon } => {
            let text = read_text(&file)?;
            let format = format.unwrap_or_else(|| PlanFormat::detect(&file.to_string_lossy(), &text));
            // Checked here first: the daemon would refuse it with the same words.
            format.parse(&text, 0).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let client = Client::new(daemon.socket)?;
            crate::app_cmd::runtime()?.block_on(async {
                let path = format!("/v1/plan?format={format}");
                let response = client.request(Method::POST, &path, text).await?;
                let answer = read_json(response).await?;
                let summary: explain::PlanSummary =
                    serde_json::from_value(answer["summary"].clone()).context("the daemon's answer")?;
                let reference = answer["reference"].as_u64().unwrap_or_else(now_dtn_ms);
                println!(
                    "loaded {}: {}; what waits is routed again by it",
                    file.display(),
                    describe_summary(&summary, format, reference)
                );
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// One line about a plan whose relative times count from `reference` (DTN ms): its first start
/// and last end as UTC times, and how far from `reference` they are.
fn describe_summary(s: &explain::PlanSummary, format: PlanFormat, reference: u64) -> String {
    let mut line = format!("{format} plan, {} nodes, {} contacts, {} ranges", s.nodes, s.contacts, s.ranges);
    if let (Some(start), Some(end)) = (s.start_offset_s, s.end_offset_s) {
        let at = |offset: f64| {
            bpa::time::format_dtn_time(reference.saturating_add_signed((offset * 1000.0) as i64))
        };
        let _ = write!(
            line,
            ", from +{start:.0} s to +{end:.0} s after {} ({} to {}, {})",
            bpa::time::format_dtn_time(reference),
            at(start),
            at(end),
            span(end - start)
        );
    }
    if s.without_range > 0 {
        let _ = write!(
            line,
            "; {} contacts have no range covering their start and will never be used",
            s.without_range
        );
    }
    line
}

pub fn route(args: RouteArgs) -> anyhow::Result<ExitCode> {
    let lifetime = lifetime_ms(args.lifetime.as_deref())?;
    let report = match (&args.plan, &args.from) {
        (Some(file), Some(from)) => {
            let reference = now_dtn_ms();
            let (plan, _) = read_plan(file, None, reference)?;
            let now = args.at.as_deref().map_or(Ok(reference), |at| time_arg(at, reference))?;
            let (from_name, to_name) = (node_name(from), node_name(&args.to));
            let graph = ContactGraph::new(plan);
            let plan = graph.plan();
            let from = plan.find(&from_name).ok_or_else(|| {
                anyhow::anyhow!(
                    "--from {from}: the plan has no node {from_name:?} ({} nodes)",
                    plan.node_count()
                )
            })?;
            match plan.find(&to_name) {
                Some(to) => {
                    let expiry = now.saturating_add(lifetime);
                    let query = Query { from, to, now, size: args.size, expiry, previous_hop: None };
                    explain::explain(&graph, &query, &args.to, &shown)
                }
                None => RouteReport {
                    destination: args.to.clone(),
                    size: args.size,
                    routes: Vec::new(),
                    reason: Some(format!("the plan has no node {to_name:?}: no contact leads there")),
                    at_time: now,
                    at_offset_s: (now as f64 - reference as f64) / 1000.0,
                    expiry_time: now.saturating_add(lifetime),
                },
            }
        }
        _ => {
            let client = Client::new(args.daemon.socket.clone())?;
            crate::app_cmd::runtime()?.block_on(async {
                let mut path =
                    format!("/v1/route?to={}&size={}&lifetime_ms={lifetime}", encode(&args.to), args.size);
                if let Some(at) = &args.at {
                    path.push_str(&format!("&at={}", encode(at)));
                }
                let answer = client.json(Method::GET, &path).await?;
                serde_json::from_value::<RouteReport>(answer).context("the daemon's answer")
            })?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", route_in_words(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The decision explained: the route, its contacts, the arrival, and why the others lost.
pub fn route_in_words(report: &RouteReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} bytes for {}, asked at +{:.3} s, expiring at +{:.3} s ({}):",
        report.size,
        report.destination,
        report.at_offset_s,
        report.at_offset_s + (report.expiry_time.saturating_sub(report.at_time)) as f64 / 1000.0,
        bpa::time::format_dtn_time(report.expiry_time)
    );
    let Some(best) = report.routes.first() else {
        let _ = writeln!(out, "  no route: {}", report.reason.as_deref().unwrap_or("none found"));
        return out;
    };
    let _ = writeln!(
        out,
        "  next hop {}, arriving at +{:.3} s ({}), {} hop{}:",
        best.next_hop,
        best.arrival_offset_s,
        bpa::time::format_dtn_time(best.arrival_time),
        best.hops,
        if best.hops == 1 { "" } else { "s" }
    );
    for c in &best.contacts {
        let _ = writeln!(
            out,
            "    {} -> {}  contact +{:.3} s .. +{:.3} s at {} B/s: sent at +{:.3} s, there at +{:.3} s",
            c.from, c.to, c.start_offset_s, c.end_offset_s, c.rate, c.transmit_offset_s, c.arrival_offset_s
        );
    }
    for other in &report.routes[1..] {
        let later = other.arrival_offset_s - best.arrival_offset_s;
        let why = if later > 0.0 {
            format!("arrives {later:.3} s later, at +{:.3} s", other.arrival_offset_s)
        } else if other.hops > best.hops {
            format!("arrives as early but takes {} hops", other.hops)
        } else {
            "arrives as early with as many hops, but its first contact ends sooner".to_string()
        };
        let _ = writeln!(out, "  not via {}: {why}", other.next_hop);
    }
    out
}

pub fn contacts(args: ContactsArgs) -> anyhow::Result<ExitCode> {
    let table = match &args.plan {
        Some(file) => {
            let reference = now_dtn_ms();
            let (plan, _) = read_plan(file, None, reference)?;
            explain::contact_table(&ContactGraph::new(plan), reference, MAX_CONTACTS_SHOWN, &shown)
        }
        None => {
            let client = Client::new(args.daemon.socket.clone())?;
            crate::app_cmd::runtime()?.block_on(async {
                let answer =
                    client.json(Method::GET, &format!("/v1/contacts?limit={MAX_CONTACTS_SHOWN}")).await?;
                serde_json::from_value::<ContactTable>(answer).context("the daemon's answer")
            })?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&table)?);
    } else if let Some(path) = &args.svg {
        std::fs::write(path, svg(&table)).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {} ({} contacts)", path.display(), table.contacts.len());
    } else {
        print!("{}", contacts_table(&table));
    }
    Ok(ExitCode::SUCCESS)
}

fn contacts_table(table: &ContactTable) -> String {
    let now = (table.now as f64 - table.reference as f64) / 1000.0;
    let mut out = format!(
        "{} contacts; times in seconds after the plan's reference ({}), now +{now:.0} s\n",
        table.contacts.len(),
        bpa::time::format_dtn_time(table.reference)
    );
    let _ = writeln!(
        out,
        "{:<18} {:<18} {:>12} {:>12} {:>12} {:>8} {:>5}  STATE",
        "FROM", "TO", "START", "END", "RATE B/s", "OWLT s", "CONF"
    );
    for c in &table.contacts {
        let state = if c.owlt_s.is_none() {
            "no range: unused"
        } else if c.end_offset_s <= now {
            "ended"
        } else if c.start_offset_s <= now {
            "NOW"
        } else {
            ""
        };
        let owlt = c.owlt_s.map_or("-".to_string(), |o| format!("{o}"));
        let _ = writeln!(
            out,
            "{:<18} {:<18} {:>12} {:>12} {:>12} {:>8} {:>5}  {state}",
            c.from,
            c.to,
            format!("+{}", c.start_offset_s),
            format!("+{}", c.end_offset_s),
            c.rate,
            owlt,
            c.confidence
        );
    }
    out
}

/// Escapes text for SVG.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The plan as an SVG timeline: a row per node pair, each contact a bar over its time, darker
/// for a higher rate, and the current time as a red line.
pub fn svg(table: &ContactTable) -> String {
    let mut pairs: Vec<(String, String)> =
        table.contacts.iter().map(|c| (c.from.clone(), c.to.clone())).collect();
    pairs.sort();
    pairs.dedup();
    let now = (table.now as f64 - table.reference as f64) / 1000.0;
    let start = table.contacts.iter().map(|c| c.start_offset_s).fold(now, f64::min);
    let end = table.contacts.iter().map(|c| c.end_offset_s).fold(now, f64::max).max(start + 1.0);
    let max_rate = table.contacts.iter().map(|c| c.rate).max().unwrap_or(1).max(1) as f64;
    let (label, width, row) = (240.0, 1200.0, 18.0);
    let height = 40.0 + row * pairs.len() as f64 + 20.0;
    let x = |t: f64| label + (t - start) / (end - start) * width;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">\n",
        label + width + 20.0
    );
    let _ = writeln!(
        out,
        "<title>contact plan: {} contacts, {} node pairs</title>",
        table.contacts.len(),
        pairs.len()
    );
    let _ = writeln!(
        out,
        "<text x=\"{label}\" y=\"14\">+{start:.0} s</text><text x=\"{}\" y=\"14\" text-anchor=\"end\">+{end:.0} s</text>",
        label + width
    );
    for (i, (from, to)) in pairs.iter().enumerate() {
        let y = 30.0 + row * i as f64;
        let _ = writeln!(out, "<text x=\"4\" y=\"{}\">{} → {}</text>", y + 12.0, xml(from), xml(to));
    }
    for c in &table.contacts {
        let Ok(i) = pairs.binary_search(&(c.from.clone(), c.to.clone())) else { continue };
        let y = 30.0 + row * i as f64;
        let opacity = 0.25 + 0.75 * (c.rate as f64 / max_rate);
        let colour = if c.owlt_s.is_some() { "#1f5fa8" } else { "#999999" };
        let _ = writeln!(
            out,
            "<rect x=\"{:.2}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"{colour}\" fill-opacity=\"{opacity:.2}\"><title>{} → {}: +{} s .. +{} s, {} B/s</title></rect>",
            x(c.start_offset_s),
            y + 2.0,
            (x(c.end_offset_s) - x(c.start_offset_s)).max(0.5),
            row - 4.0,
            xml(&c.from),
            xml(&c.to),
            c.start_offset_s,
            c.end_offset_s,
            c.rate
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{0:.2}\" y1=\"20\" x2=\"{0:.2}\" y2=\"{1}\" stroke=\"red\" stroke-width=\"1.5\"><title>now</title></line>",
        x(now),
        height - 10.0
    );
    out.push_str("</svg>\n");
    out
}
