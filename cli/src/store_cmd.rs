//! `dtn store check`: what is wrong with a node's store, offline; `--repair` puts it right.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use bpa::SystemClock;
use bpa::store::{SqliteStore, StoreConfig, StoreStats, Survey, WalReport};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Examine a node's store while its daemon is stopped, changing nothing: the write-ahead
    /// log (acknowledged changes SQLite could not replay), leftover and orphan files, rows whose
    /// file is gone, SQLite's integrity check, and every stored bundle read through against the
    /// checksum recorded when it arrived and the RFC 9171 rules. Exit status 1 if anything is
    /// wrong. With --repair, say what will be removed, then remove leftover files and rows
    /// without a file, and quarantine damaged bundles (kept, never served).
    ///
    /// Example: dtn store check --data-dir /var/lib/dtn
    Check {
        /// The node's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Put right what the check finds (after saying what).
        #[arg(long)]
        repair: bool,
    },
}

pub fn run(command: StoreCommand) -> anyhow::Result<ExitCode> {
    let StoreCommand::Check { data_dir, repair } = command;
    if !data_dir.join("store.sqlite").exists() {
        anyhow::bail!(
            "{} holds no store (no store.sqlite); give the node's data directory",
            data_dir.display()
        );
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    runtime.block_on(check(data_dir, repair))
}

/// What the read-only pass found.
struct Findings {
    survey: Survey,
    wal: WalReport,
    database: Vec<String>,
    /// `(store id, bundle ID, problem)` of bundles that fail their checks.
    invalid: Vec<(i64, String, String)>,
    stats: StoreStats,
    checked: u64,
}

impl Findings {
    fn healthy(&self) -> bool {
        self.survey.is_clean()
            && self.wal.loss().is_none()
            && self.database.is_empty()
            && self.invalid.is_empty()
    }
}

async fn examine(data_dir: &PathBuf) -> anyhow::Result<Findings> {
    let (store, survey) =
        SqliteStore::open_read_only(data_dir, StoreConfig::default(), Arc::new(SystemClock))
            .await
            .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let wal = store.wal_report().clone();
    let database = store.integrity_check().await?;
    let (mut checked, mut invalid, mut after) = (0u64, Vec::new(), 0i64);
    loop {
        let page = store.list(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for meta in page {
            checked += 1;
            // Named above with its file's problem; recovery removes such rows.
            if survey.rows_without_file.iter().any(|(id, _, _)| *id == meta.id) {
                continue;
            }
            // A bundle already quarantined was found damaged before: named again, not re-read.
            if let bpa::store::BundleState::Quarantined { problem } = &meta.state {
                invalid.push((
                    meta.id,
                    meta.bundle_id.to_string(),
                    format!("quarantined earlier: {problem}"),
                ));
                continue;
            }
            match store.verify(meta.id).await {
                Ok(None) => {}
                Ok(Some(problem)) => invalid.push((meta.id, meta.bundle_id.to_string(), problem)),
                Err(error) => invalid.push((meta.id, meta.bundle_id.to_string(), error.to_string())),
            }
        }
    }
    let stats = store.stats();
    store.close().await;
    Ok(Findings { survey, wal, database, invalid, stats, checked })
}

fn print(findings: &Findings, verb: &str) {
    let s = &findings.survey;
    match findings.wal.loss() {
        Some(loss) => println!("write-ahead log: {loss}"),
        None => println!(
            "write-ahead log: ok ({} committed transactions to replay)",
            findings.wal.replayable_transactions
        ),
    }
    println!(
        "files: {} incomplete inserts, {} orphan bundle files, {} rows with a missing or damaged file{verb}",
        s.incomplete_inserts.len(),
        s.orphan_files.len(),
        s.rows_without_file.len()
    );
    for path in s.incomplete_inserts.iter().chain(&s.orphan_files) {
        println!("  {}", path.display());
    }
    for (id, file, problem) in &s.rows_without_file {
        println!("  row {id}: {file}: {problem}");
    }
    if findings.database.is_empty() {
        println!("database: integrity check ok");
    }
    for line in &findings.database {
        println!("database: {line}");
    }
    for (id, bundle, problem) in &findings.invalid {
        println!("bundle {bundle} (store id {id}): {problem}");
    }
    println!(
        "bundles: {} checked ({} bytes), {} invalid, {} quarantined",
        findings.checked,
        findings.stats.bytes,
        findings.invalid.len(),
        findings.stats.quarantined
    );
}

async fn check(data_dir: PathBuf, repair: bool) -> anyhow::Result<ExitCode> {
    let findings = examine(&data_dir).await?;
    if !repair {
        print(&findings, "");
        if !findings.healthy() {
            println!("nothing was changed; `dtn store check --repair` puts right what can be");
        }
        return Ok(if findings.healthy() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    print(&findings, " (to be removed)");
    if findings.healthy() {
        println!("repair: nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    let to_quarantine: Vec<_> = findings
        .invalid
        .iter()
        .filter(|(_, _, problem)| !problem.starts_with("quarantined earlier"))
        .collect();
    println!(
        "repair: removing {} files and {} rows; quarantining {} damaged bundles",
        findings.survey.incomplete_inserts.len() + findings.survey.orphan_files.len(),
        findings.survey.rows_without_file.len(),
        to_quarantine.len()
    );
    // Opening the store for writing runs its recovery, which removes what the survey named.
    let (store, report) = SqliteStore::open(&data_dir, StoreConfig::default(), Arc::new(SystemClock))
        .await
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    for (id, _, problem) in &to_quarantine {
        store.quarantine(*id, problem.clone());
    }
    store.close().await;
    println!("repair: done ({report})");
    if findings.wal.loss().is_some() {
        println!(
            "repair: the write-ahead log's loss cannot be undone; a copy of the log was kept beside the database"
        );
    }
    // Wrong was found: the exit status says so even though it was put right.
    Ok(ExitCode::FAILURE)
}
