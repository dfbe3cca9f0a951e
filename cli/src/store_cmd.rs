//! `dtn store check`: the store's recovery and consistency checks, offline.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use bpa::store::{SqliteStore, StoreConfig};
use bpa::time::SystemClock;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Open a node's store while its daemon is stopped, run the recovery it runs at start
    /// (leftover files removed, rows whose file is gone removed), SQLite's integrity check, and
    /// read every stored bundle through the RFC 9171 checks. Exit status 1 if anything is wrong.
    ///
    /// Example: dtn store check --data-dir /var/lib/dtn
    Check {
        /// The node's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

pub fn run(command: StoreCommand) -> anyhow::Result<ExitCode> {
    let StoreCommand::Check { data_dir } = command;
    if !data_dir.join("store.sqlite").exists() {
        anyhow::bail!(
            "{} holds no store (no store.sqlite); give the node's data directory",
            data_dir.display()
        );
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    runtime.block_on(check(data_dir))
}

async fn check(data_dir: PathBuf) -> anyhow::Result<ExitCode> {
    let (store, report) = SqliteStore::open(&data_dir, StoreConfig::default(), Arc::new(SystemClock))
        .await
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    println!("recovery: {report}");
    let mut healthy = report.rows_without_file.is_empty();
    let problems = store.integrity_check().await?;
    if problems.is_empty() {
        println!("database: integrity check ok");
    } else {
        healthy = false;
        for line in &problems {
            println!("database: {line}");
        }
    }
    let (mut checked, mut invalid, mut after) = (0u64, 0u64, 0i64);
    loop {
        let page = store.list(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for meta in page {
            checked += 1;
            if let Some(error) = store.verify(meta.id).await? {
                invalid += 1;
                println!("bundle {} (store id {}): {error}", meta.bundle_id, meta.id);
            }
        }
    }
    let stats = store.stats();
    println!("bundles: {checked} checked ({} bytes), {invalid} invalid", stats.bytes);
    store.close().await;
    Ok(if healthy && invalid == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
