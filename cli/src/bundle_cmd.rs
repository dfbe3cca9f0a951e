//! `dtn bundle create | inspect | validate`: offline tools over bundle files and stdin.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bpa::admin::{AdminRecord, AdminRecordTypes};
use bpa::bundle::{
    BlockFlags, BundleBuilder, BundleError, BundleFlags, BundleHeader, CrcType, CreationTimestamp, Eid,
    ParseOptions, PayloadCheck, block_type, block_type_name,
};
use bpa::time::{Clock, SystemClock, format_dtn_time};
use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::input;

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Make a bundle from a payload file (or stdin) and write it to a file (or stdout).
    ///
    /// Example: echo hello | dtn bundle create --from ipn:1.1 --to ipn:2.1 --lifetime 1h -o hello.bundle
    Create(Box<CreateArgs>),
    /// Print what a bundle holds; with --json, a machine-readable summary.
    ///
    /// Example: dtn bundle inspect --json hello.bundle
    Inspect {
        /// Bundle file; `-` or nothing reads stdin.
        file: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        parse: ParseArgs,
    },
    /// Check a bundle against every rule of RFC 9171 §4; exit status 0 if valid, 1 if not.
    ///
    /// Example: dtn bundle validate received.bundle
    Validate {
        /// Bundle file; `-` or nothing reads stdin.
        file: Option<PathBuf>,
        #[command(flatten)]
        parse: ParseArgs,
    },
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Accept a primary block without CRC (as dtn7-rs sends) and creation time 0 without a
    /// Bundle Age block (as the RFC 9173 examples do), and say so.
    #[arg(long)]
    lenient: bool,
    /// Largest bundle to accept, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = ParseOptions::default().max_bundle_size)]
    max_size: u64,
}

impl ParseArgs {
    fn options(&self) -> ParseOptions {
        let base = if self.lenient { ParseOptions::lenient() } else { ParseOptions::default() };
        ParseOptions { max_bundle_size: self.max_size, ..base }
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Destination endpoint, e.g. ipn:2.1 or dtn://node/service.
    #[arg(long, value_name = "EID")]
    to: Eid,
    /// Source node/endpoint; dtn:none makes an anonymous bundle (then "must not be fragmented"
    /// is set for you, RFC 9171 §4.2.3).
    #[arg(long, value_name = "EID", default_value = "dtn:none")]
    from: Eid,
    /// Where status reports go.
    #[arg(long, value_name = "EID", default_value = "dtn:none")]
    report_to: Eid,
    /// How long the bundle lives: 500ms, 30s, 10m, 1h, 2d (a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration_ms)]
    lifetime: u64,
    /// Creation time in ms since 2000-01-01T00:00:00Z; default now. 0 means "no clock" and
    /// adds a Bundle Age block.
    #[arg(long, value_name = "MS")]
    creation_time: Option<u64>,
    /// Creation timestamp sequence number.
    #[arg(long, value_name = "N", default_value_t = 0)]
    sequence: u64,
    /// Bundle flags: a number (0x..) or names separated by commas: must-not-fragment,
    /// admin-record, app-ack, status-time, report-reception, report-forwarding,
    /// report-delivery, report-deletion.
    #[arg(long, value_name = "FLAGS", default_value = "0", value_parser = parse_bundle_flags)]
    flags: u64,
    /// CRC of the primary block: 16 or 32 (CRC-32C).
    #[arg(long, value_name = "TYPE", default_value = "32", value_parser = parse_primary_crc)]
    primary_crc: CrcType,
    /// CRC of the other blocks: none, 16 or 32.
    #[arg(long, value_name = "TYPE", default_value = "32", value_parser = parse_crc)]
    crc: CrcType,
    /// Add a Hop Count block with this limit (1-255).
    #[arg(long, value_name = "N")]
    hop_limit: Option<u64>,
    /// Add a Bundle Age block with this age in ms.
    #[arg(long, value_name = "MS")]
    age: Option<u64>,
    /// Add a Previous Node block naming this node.
    #[arg(long, value_name = "EID")]
    previous_node: Option<Eid>,
    /// Make the bundle a fragment: OFFSET:TOTAL_ADU_LENGTH.
    #[arg(long, value_name = "OFFSET:TOTAL", value_parser = parse_fragment)]
    fragment: Option<(u64, u64)>,
    /// Add an extension block: TYPE:HEXDATA[:FLAGS], e.g. 200:cafe:0x10. Repeatable.
    #[arg(long = "block", value_name = "TYPE:HEX[:FLAGS]", value_parser = parse_block)]
    blocks: Vec<(u64, Vec<u8>, u64)>,
    /// Write the bundle here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Largest payload to read, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 32)]
    max_size: u64,
    /// Payload file; `-` or nothing reads stdin.
    payload: Option<PathBuf>,
}

pub fn run(command: BundleCommand) -> anyhow::Result<ExitCode> {
    match command {
        BundleCommand::Create(args) => create(*args),
        BundleCommand::Inspect { file, json, parse } => {
            let (mut reader, name) = input::open(file.as_deref())?;
            match load(&mut reader, &parse.options())? {
                Ok(loaded) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&inspect_json(&loaded))?);
                    } else {
                        print!("{}", inspect_text(&loaded));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => invalid(&name, &error),
            }
        }
        BundleCommand::Validate { file, parse } => {
            let (mut reader, name) = input::open(file.as_deref())?;
            match load(&mut reader, &parse.options())? {
                Ok(loaded) => {
                    let notes = loaded.leniencies();
                    let lenient = if notes.is_empty() {
                        String::new()
                    } else {
                        format!(" (accepted leniently: {})", notes.join("; "))
                    };
                    println!(
                        "{name}: valid bundle {}, {} bytes{lenient}",
                        bundle_id(&loaded.header),
                        loaded.total_length
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => invalid(&name, &error),
            }
        }
    }
}

fn invalid(name: &str, error: &BundleError) -> anyhow::Result<ExitCode> {
    eprintln!("dtn: {name} is not a valid bundle: {error}");
    Ok(ExitCode::FAILURE)
}

fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to write a binary bundle to the terminal; use -o FILE or redirect stdout");
    }
    let (mut reader, name) = input::open(args.payload.as_deref())?;
    let payload = input::read_all(&mut reader, &name, args.max_size)?;
    let creation_time = args.creation_time.unwrap_or_else(|| SystemClock.now_dtn_ms());
    let mut flags = args.flags;
    if args.from.is_null() {
        flags |= BundleFlags::MUST_NOT_FRAGMENT;
    }
    let mut builder = BundleBuilder::new(
        args.from,
        args.to,
        CreationTimestamp { time: creation_time, sequence: args.sequence },
        args.lifetime,
    )
    .report_to(args.report_to)
    .flags(BundleFlags(flags))
    .primary_crc(args.primary_crc)
    .block_crc(args.crc);
    if let Some(limit) = args.hop_limit {
        builder = builder.hop_limit(limit);
    }
    if let Some(age) = args.age.or((creation_time == 0).then_some(0)) {
        builder = builder.bundle_age(age);
    }
    if let Some(node) = &args.previous_node {
        builder = builder.previous_node(node);
    }
    if let Some((offset, total)) = args.fragment {
        builder = builder.fragment(offset, total);
    }
    for (code, data, block_flags) in args.blocks {
        builder = builder.extension(code, BlockFlags(block_flags), Bytes::from(data));
    }
    let bundle = builder.payload(payload).build().context("cannot make that bundle")?;
    let (head, payload, tail) = bundle.encode_parts();
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    out.write_all(&head)?;
    out.write_all(&payload)?;
    out.write_all(&tail)?;
    out.flush().context("cannot write the bundle")?;
    Ok(ExitCode::SUCCESS)
}

/// A bundle read and checked in one pass, with the payload kept only when it is small.
struct Loaded {
    header: BundleHeader,
    total_length: u64,
    /// The payload, when it is at most [`KEEP_PAYLOAD`] bytes.
    payload: Option<Bytes>,
    primary_crc_missing: bool,
    bundle_age_missing: bool,
}

impl Loaded {
    /// What was accepted only because of --lenient, for people.
    fn leniencies(&self) -> Vec<&'static str> {
        let mut notes = Vec::new();
        if self.primary_crc_missing {
            notes.push("the primary block has no CRC");
        }
        if self.bundle_age_missing {
            notes.push("creation time 0 without a Bundle Age block");
        }
        notes
    }
}

const CHUNK: usize = 64 * 1024;
const KEEP_PAYLOAD: u64 = 1 << 20;

/// Reads a bundle from `reader`, checking everything while holding at most the header, one
/// chunk and a small payload in memory. Outer error: I/O; inner error: the bundle is invalid.
fn load(reader: &mut dyn Read, options: &ParseOptions) -> anyhow::Result<Result<Loaded, BundleError>> {
    let mut buf = Vec::with_capacity(CHUNK);
    let mut chunk = vec![0u8; CHUNK];
    let header = loop {
        let n = reader.read(&mut chunk).context("cannot read the bundle")?;
        buf.extend_from_slice(&chunk[..n]);
        let prefix = Bytes::copy_from_slice(&buf);
        match BundleHeader::parse(&prefix, options) {
            Ok(Some(header)) => break header,
            Ok(None) if n > 0 => continue,
            // End of input before the payload: the whole-bundle parser names what is missing.
            Ok(None) => {
                return Ok(Err(bpa::bundle::Bundle::parse(&prefix, options).err().unwrap_or(
                    BundleError::Cbor {
                        field: "the bundle",
                        offset: buf.len(),
                        problem: bpa::bundle::CborProblem::Truncated,
                    },
                )));
            }
            Err(error) => return Ok(Err(error)),
        }
    };
    let location = header.payload;
    let mut check = PayloadCheck::new(&header, &buf);
    let keep = location.data_length <= KEEP_PAYLOAD;
    let mut payload = Vec::new();
    let mut total = buf.len() as u64;
    let mut feed = |data: &[u8], consumed: u64, payload: &mut Vec<u8>| {
        check.update(data);
        if keep {
            let payload_end = location.data_offset as u64 + location.data_length;
            let data_start = consumed;
            let take = payload_end.saturating_sub(data_start).min(data.len() as u64) as usize;
            payload.extend_from_slice(&data[..take]);
        }
    };
    feed(&buf[location.data_offset..], location.data_offset as u64, &mut payload);
    loop {
        let n = reader.read(&mut chunk).context("cannot read the bundle")?;
        if n == 0 {
            break;
        }
        if total + n as u64 > options.max_bundle_size {
            return Ok(Err(BundleError::TooLarge { size: total + n as u64, limit: options.max_bundle_size }));
        }
        feed(&chunk[..n], total, &mut payload);
        total += n as u64;
    }
    if let Err(error) = check.finish() {
        return Ok(Err(error));
    }
    let primary_crc_missing = header.primary_crc_missing();
    let bundle_age_missing = header.bundle_age_missing();
    Ok(Ok(Loaded {
        header,
        total_length: total,
        payload: keep.then(|| payload.into()),
        primary_crc_missing,
        bundle_age_missing,
    }))
}

fn bundle_id(header: &BundleHeader) -> String {
    let p = &header.primary;
    let mut id = format!("{}/{}/{}", p.source, p.creation.time, p.creation.sequence);
    if let Some(f) = p.fragment {
        id.push_str(&format!("/{}+{}", f.offset, header.payload.data_length));
    }
    id
}

fn crc_name(crc: CrcType) -> &'static str {
    match crc {
        CrcType::None => "none",
        CrcType::Crc16 => "CRC-16 (X.25)",
        CrcType::Crc32c => "CRC-32C",
    }
}

fn extension_detail(block: &bpa::bundle::CanonicalBlock) -> Option<Value> {
    let max = ParseOptions::default().max_eid_length;
    match block.block_type {
        block_type::PREVIOUS_NODE => block.previous_node(max).ok().map(|e| json!(e.to_string())),
        block_type::BUNDLE_AGE => block.bundle_age().ok().map(|a| json!(a)),
        block_type::HOP_COUNT => block.hop_count().ok().map(|h| json!({"limit": h.limit, "count": h.count})),
        _ => None,
    }
}

fn admin_record(loaded: &Loaded) -> Option<Result<AdminRecord, String>> {
    if !loaded.header.primary.flags.is_admin_record() {
        return None;
    }
    let payload = loaded.payload.as_ref()?;
    Some(AdminRecord::decode(payload, &AdminRecordTypes::default()).map_err(|e| e.to_string()))
}

fn admin_summary(record: &AdminRecord) -> String {
    match record {
        AdminRecord::StatusReport(r) => {
            let asserted: Vec<&str> = [
                ("received", r.received),
                ("forwarded", r.forwarded),
                ("delivered", r.delivered),
                ("deleted", r.deleted),
            ]
            .iter()
            .filter(|(_, a)| a.asserted)
            .map(|(n, _)| *n)
            .collect();
            format!(
                "status report: {} for {}/{}/{} ({})",
                if asserted.is_empty() { "nothing asserted".to_string() } else { asserted.join(", ") },
                r.source,
                r.creation.time,
                r.creation.sequence,
                r.reason.name()
            )
        }
        AdminRecord::BibePdu(p) => format!(
            "BIBE PDU: transmission {} (retransmit at {}), {}-byte encapsulated bundle",
            p.transmission_id,
            p.retransmission_time,
            p.bundle.len()
        ),
        AdminRecord::CustodySignal(s) => {
            format!("custody signal: {} for {} range(s)", s.disposition.name(), s.ranges.len())
        }
        AdminRecord::Unknown { record_type, content } => {
            format!("administrative record of unknown type {record_type} ({} bytes)", content.len())
        }
    }
}

fn inspect_json(loaded: &Loaded) -> Value {
    let p = &loaded.header.primary;
    let location = &loaded.header.payload;
    let mut blocks: Vec<Value> = loaded
        .header
        .extension_blocks
        .iter()
        .map(|b| {
            let mut v = json!({
                "type": b.block_type,
                "type_name": block_type_name(b.block_type),
                "number": b.number,
                "flags": b.flags.0,
                "crc_type": b.crc_type.code(),
                "length": b.data.len(),
            });
            if let Some(detail) = extension_detail(b) {
                v["value"] = detail;
            }
            v
        })
        .collect();
    blocks.push(json!({
        "type": block_type::PAYLOAD,
        "type_name": "payload",
        "number": 1,
        "flags": location.block_flags.0,
        "crc_type": location.crc_type.code(),
        "length": location.data_length,
    }));
    let mut v = json!({
        "primary": {
            "version": bpa::bundle::BP_VERSION,
            "flags": p.flags.0,
            "flag_names": p.flags.names(),
            "crc_type": p.crc_type.code(),
            "destination": p.destination.to_string(),
            "source": p.source.to_string(),
            "report_to": p.report_to.to_string(),
            "creation_time": p.creation.time,
            "sequence": p.creation.sequence,
            "lifetime": p.lifetime,
            "fragment_offset": p.fragment.map(|f| f.offset),
            "total_adu_length": p.fragment.map(|f| f.total_adu_length),
        },
        "blocks": blocks,
        "payload_length": location.data_length,
        "bundle_length": loaded.total_length,
        "id": bundle_id(&loaded.header),
        "primary_crc_missing": loaded.primary_crc_missing,
        "accepted_leniently": loaded.leniencies(),
    });
    if let Some(record) = admin_record(loaded) {
        v["admin_record"] = match record {
            Ok(r) => json!(admin_summary(&r)),
            Err(e) => json!({"error": e}),
        };
    }
    v
}

fn inspect_text(loaded: &Loaded) -> String {
    let p = &loaded.header.primary;
    let location = &loaded.header.payload;
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line(format!("bundle {} ({} bytes)", bundle_id(&loaded.header), loaded.total_length));
    line(format!("  destination   {}", p.destination));
    line(format!("  source        {}", p.source));
    line(format!("  report-to     {}", p.report_to));
    let created = if p.creation.time == 0 {
        "unknown (no clock)".to_string()
    } else {
        format_dtn_time(p.creation.time)
    };
    line(format!("  created       {created} [{} ms], sequence {}", p.creation.time, p.creation.sequence));
    line(format!("  lifetime      {} ms", p.lifetime));
    let names = p.flags.names();
    line(format!(
        "  flags         {:#x}{}{}",
        p.flags.0,
        if names.is_empty() { "" } else { " " },
        names.join(" ")
    ));
    line(format!("  primary CRC   {}", crc_name(p.crc_type)));
    for note in loaded.leniencies() {
        line(format!("  accepted leniently: {note}"));
    }
    if let Some(f) = p.fragment {
        line(format!("  fragment      offset {} of an ADU of {} bytes", f.offset, f.total_adu_length));
    }
    line("  blocks".to_string());
    for b in &loaded.header.extension_blocks {
        let detail = extension_detail(b).map(|v| format!("  = {v}")).unwrap_or_default();
        line(format!(
            "    #{:<3} {:<28} type {:<3} flags {:#x}  {}  {} bytes{detail}",
            b.number,
            block_type_name(b.block_type),
            b.block_type,
            b.flags.0,
            crc_name(b.crc_type),
            b.data.len()
        ));
    }
    line(format!(
        "    #{:<3} {:<28} type {:<3} flags {:#x}  {}  {} bytes",
        1,
        "payload",
        1,
        location.block_flags.0,
        crc_name(location.crc_type),
        location.data_length
    ));
    if let Some(record) = admin_record(loaded) {
        match record {
            Ok(r) => line(format!("  {}", admin_summary(&r))),
            Err(e) => line(format!("  administrative record: malformed: {e}")),
        }
    }
    s
}

/// A duration as every command takes it ([`bpa::time::parse_duration`]: `90`, `500ms`, `1h30m`,
/// `7d`), in milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let duration = bpa::time::parse_duration(text).map_err(|e| e.to_string())?;
    u64::try_from(duration.as_millis()).map_err(|_| format!("duration {text:?} is too long"))
}

fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Parses bundle flags: a number, or names separated by commas.
pub fn parse_bundle_flags(text: &str) -> Result<u64, String> {
    text.parse::<BundleFlags>().map(|f| f.0)
}

fn parse_crc(text: &str) -> Result<CrcType, String> {
    match text {
        "none" | "0" => Ok(CrcType::None),
        "16" | "crc16" => Ok(CrcType::Crc16),
        "32" | "32c" | "crc32c" => Ok(CrcType::Crc32c),
        _ => Err(format!("invalid CRC type {text:?}: use none, 16 or 32")),
    }
}

fn parse_primary_crc(text: &str) -> Result<CrcType, String> {
    match parse_crc(text)? {
        CrcType::None => {
            Err("the primary block of a new bundle always has a CRC (RFC 9171 §4.3.1): use 16 or 32".into())
        }
        crc => Ok(crc),
    }
}

fn parse_fragment(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("invalid fragment {text:?}: use OFFSET:TOTAL_ADU_LENGTH, e.g. 1000:5000");
    let (offset, total) = text.split_once(':').ok_or_else(bad)?;
    Ok((offset.parse().map_err(|_| bad())?, total.parse().map_err(|_| bad())?))
}

fn parse_block(text: &str) -> Result<(u64, Vec<u8>, u64), String> {
    let bad =
        |why: &str| format!("invalid block {text:?}: {why}; use TYPE:HEXDATA[:FLAGS], e.g. 200:cafe:0x10");
    let mut parts = text.splitn(3, ':');
    let code = parts.next().and_then(parse_number).ok_or_else(|| bad("the type is not a number"))?;
    if matches!(code, 0 | 1) {
        return Err(bad("type 0 is reserved and type 1 is the payload"));
    }
    let data = hex::decode(parts.next().unwrap_or("")).map_err(|_| bad("the data is not hex"))?;
    let flags = match parts.next() {
        Some(f) => parse_number(f).ok_or_else(|| bad("the flags are not a number"))?,
        None => 0,
    };
    Ok((code, data, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30"), Ok(30_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        // The same parser as `dtn send` and the configuration: units one after another.
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert!(parse_duration_ms("1w").unwrap_err().contains("units like 500ms, 90s, 15m, 1h30m, 7d"));
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("99999999999999999d").unwrap_err().contains("invalid duration"));
        assert!(parse_duration_ms("18446744073709551615").unwrap_err().contains("too long"));
    }

    #[test]
    fn flags() {
        assert_eq!(parse_bundle_flags("0x4"), Ok(4));
        assert_eq!(parse_bundle_flags("must-not-fragment,report-delivery"), Ok(0x02_0004));
        assert!(parse_bundle_flags("loud").unwrap_err().contains("unknown flag \"loud\""));
    }

    #[test]
    fn blocks_and_fragments() {
        assert_eq!(parse_block("200:cafe:0x10"), Ok((200, vec![0xca, 0xfe], 0x10)));
        assert_eq!(parse_block("201:"), Ok((201, vec![], 0)));
        assert!(parse_block("1:00").unwrap_err().contains("type 1 is the payload"));
        assert!(parse_block("200:xyz").unwrap_err().contains("not hex"));
        assert_eq!(parse_fragment("10:20"), Ok((10, 20)));
        assert!(parse_fragment("10").is_err());
        assert!(parse_primary_crc("none").is_err());
    }
}
