//! `dtn`: run a bundle protocol node, and send, receive and inspect bundles.

mod app_cmd;
mod bundle_cmd;
mod client;
mod config;
mod daemon;
mod data_dir;
mod input;
mod layers;
mod plan_cmd;
mod spool_cmd;
mod status_cmd;
mod store_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Bundle Protocol version 7 node (RFC 9171) and the tools around it.
#[derive(Debug, Parser)]
#[command(name = "dtn", version, about, propagate_version = true)]
struct Cli {
    /// Log format on stderr: text or json. RUST_LOG sets the level.
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node in the foreground.
    ///
    /// Example: dtn daemon --config /etc/dtn/node.toml
    Daemon {
        /// Configuration file; without one the embedded defaults are used.
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        /// The API socket to listen on (overrides `api.socket` in the configuration).
        #[arg(long, value_name = "PATH")]
        socket: Option<std::path::PathBuf>,
        /// Take over a store made under another node ID (its bundles stay, and are this node's
        /// from now on); without it such a store is refused, naming the node it belongs to.
        #[arg(long)]
        adopt_store: bool,
    },
    /// Write a commented starter configuration.
    ///
    /// Example: dtn init --node-id ipn:7.0 --config ~/.config/dtn.toml
    Init {
        /// The node ID to put in it (default: dtn://HOSTNAME/).
        #[arg(long, value_name = "EID")]
        node_id: Option<String>,
        /// Where to write it (default: standard output).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        /// The data directory to put in it.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<std::path::PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Send a file (or standard input) as a bundle through the daemon.
    ///
    /// Example: dtn send --to ipn:2.5 --lifetime 1d report.pdf
    Send(app_cmd::SendArgs),
    /// Receive bundles for a local endpoint.
    ///
    /// Example: dtn recv --endpoint ipn:1.5 --count 3 --out inbox/
    Recv(app_cmd::RecvArgs),
    /// Round trip to a node's echo service.
    ///
    /// Example: dtn ping ipn:2.0 --count 3
    Ping(app_cmd::PingArgs),
    /// The node: neighbours, routes, endpoints, store, counters.
    ///
    /// Example: dtn status --json
    Status {
        /// Print the API's JSON status instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        daemon: app_cmd::DaemonSocket,
    },
    /// What the store holds: list, show, delete.
    Bundles {
        #[command(flatten)]
        daemon: app_cmd::DaemonSocket,
        #[command(subcommand)]
        command: app_cmd::BundlesCommand,
    },
    /// Offline tools over bundle files: create, inspect, validate.
    #[command(subcommand)]
    Bundle(Box<bundle_cmd::BundleCommand>),
    /// Offline tools over a node's store (run them while its daemon is stopped).
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Carry bundles on a medium by hand: export for a node, import what is for this one.
    Spool {
        #[command(subcommand)]
        command: spool_cmd::SpoolCommand,
    },
    /// Contact plans: check a file, or load one into the daemon.
    Plan {
        #[command(subcommand)]
        command: plan_cmd::PlanCommand,
    },
    /// Where a bundle would go: the next hop, the contacts, the predicted arrival.
    ///
    /// Example: dtn route --to ipn:4.1 --size 1000000 --plan contacts.rc --from ipn:1.0
    Route(plan_cmd::RouteArgs),
    /// The contact plan as a table, or as an SVG timeline.
    ///
    /// Example: dtn contacts --plan contacts.rc --svg plan.svg
    Contacts(plan_cmd::ContactsArgs),
    /// Shell completions for dtn, on standard output.
    ///
    /// Example: dtn completions bash > ~/.local/share/bash-completion/completions/dtn
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) of dtn and its commands, on standard output.
    ///
    /// Example: dtn man > ~/.local/share/man/man1/dtn.1
    Man,
}

/// Every field of every log line, as text, with outsiders' characters escaped (design §3.10):
/// a file name on a medium, a peer's text or an error quoting either can never end a line,
/// forge the next or drive the terminal — one place, whatever logged it.
fn escaping_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        if field.name() == "message" {
            bpa::log::write_escaped(writer, &text)
        } else {
            write!(writer, "{field}=")?;
            bpa::log::write_escaped(writer, &text)
        }
    })
    .delimited(" ")
}

/// jemalloc rather than the C library's allocator: it hands freed memory back to the system
/// (glibc's keeps a fragmented heap — a million-contact plan replaced by a small one left the
/// daemon at 59 MiB, against 17 MiB with jemalloc after 10 s: `scripts/bench-plan-memory`).
/// mimalloc, tried first, gave it back too, but doubled the daemon's peak while it streamed
/// large payloads (56–68 MiB against glibc's 26, jemalloc's 30).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Lets jemalloc hand memory freed a while ago back to the system by itself (a background
/// thread purges what stayed unused past its decay time, 10 s), so a daemon that needed much
/// memory once — a large contact plan, since replaced — does not keep it.
fn return_freed_memory_in_the_background() {
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::debug!(%error, "the allocator's background purging could not be turned on");
    }
}

/// The exit status of a process ended by SIGPIPE (128 + 13), as a shell reports it.
const BROKEN_PIPE_EXIT: u8 = 141;

/// A command whose output is cut off (`dtn bundles list | head -2`) ends quietly, as a tool
/// killed by SIGPIPE does: Rust ignores SIGPIPE and `println!` panics on the closed pipe, so the
/// panic is caught here (by its message), and an error carrying a broken pipe is too (`main`).
fn end_quietly_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(i32::from(BROKEN_PIPE_EXIT));
        }
        default(info);
    }));
}

/// Whether `error` comes of writing to a pipe whose reader has gone.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    end_quietly_on_a_closed_pipe();
    let cli = Cli::parse();
    // Logs go to stderr. The daemon logs what it does; the tools only warnings.
    let default_level = if matches!(cli.command, Command::Daemon { .. }) { "info" } else { "warn" };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into());
    // Colours only for a person at a terminal: not in a log file, not under NO_COLOR.
    let colour =
        std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let logs =
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_ansi(colour);
    match cli.log_format {
        LogFormat::Text => logs.fmt_fields(escaping_fields()).init(),
        // JSON escapes control characters itself.
        LogFormat::Json => logs.json().init(),
    }
    let client = |daemon: &app_cmd::DaemonSocket| client::Client::new(daemon.socket.clone());
    let result = match cli.command {
        Command::Daemon { config, socket, adopt_store } => {
            return_freed_memory_in_the_background();
            daemon::run(config, socket, adopt_store)
        }
        Command::Init { node_id, config, data_dir, force } => init(node_id, config, data_dir, force),
        Command::Send(args) => client(&args.daemon).and_then(|c| app_cmd::send(c, args)),
        Command::Recv(args) => client(&args.daemon).and_then(|c| app_cmd::recv(c, args)),
        Command::Ping(args) => client(&args.daemon).and_then(|c| app_cmd::ping(c, args)),
        Command::Status { json, daemon } => client(&daemon).and_then(|c| status_cmd::status(c, json)),
        Command::Bundles { daemon, command } => client(&daemon).and_then(|c| app_cmd::bundles(c, command)),
        Command::Bundle(command) => bundle_cmd::run(*command),
        Command::Store(command) => store_cmd::run(command),
        Command::Plan { command } => plan_cmd::plan(command),
        Command::Spool { command } => spool_cmd::run(command),
        Command::Route(args) => plan_cmd::route(args),
        Command::Contacts(args) => plan_cmd::contacts(args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "dtn", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => manual(),
    };
    match result {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::from(BROKEN_PIPE_EXIT),
        Err(error) => {
            eprintln!("dtn: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: many errors here name their cause in
/// their own message already (a store error says what the OS said), and printing the chain as
/// well would say it twice.
fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// `dtn man`: the page of `dtn`, then one section per command, in roff.
fn manual() -> anyhow::Result<ExitCode> {
    let command = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut out)?;
    for sub in command.get_subcommands().filter(|sub| sub.get_name() != "help") {
        let name = format!("dtn-{}", sub.get_name());
        let page = sub.clone().display_name(name).version(env!("CARGO_PKG_VERSION"));
        clap_mangen::Man::new(page).render(&mut out)?;
    }
    std::io::Write::write_all(&mut std::io::stdout().lock(), &out)?;
    Ok(ExitCode::SUCCESS)
}

/// `dtn init`: the starter configuration, to a file or standard output.
fn init(
    node_id: Option<String>,
    path: Option<std::path::PathBuf>,
    data_dir: Option<std::path::PathBuf>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let node_id: bpa::Eid = match node_id {
        Some(text) => {
            text.parse().map_err(|e| anyhow::anyhow!("--node-id {text:?} is not an endpoint ID: {e}"))?
        }
        None => config::Config::default().node_id(),
    };
    if node_id.node_id() != node_id || node_id.is_null() {
        anyhow::bail!("--node-id {node_id} is not a node ID: use ipn:N.0 or dtn://name/");
    }
    let data_dir = match data_dir {
        // Written absolute: the file may be read from another directory (a relative path in a
        // configuration file is taken from the file's own directory).
        Some(dir) => {
            std::path::absolute(&dir).map_err(|e| anyhow::anyhow!("--data-dir {}: {e}", dir.display()))?
        }
        None => config::default_data_dir()?,
    };
    let text = config::starter(&node_id, &data_dir);
    match path {
        None => print!("{text}"),
        Some(path) => {
            if path.exists() && !force {
                anyhow::bail!("{} exists: pass --force to replace it", path.display());
            }
            std::fs::write(&path, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            eprintln!("wrote {}; run it with `dtn daemon --config {}`", path.display(), path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
