//! The spool driver: a directory — often the mount point of a removable medium — watched with
//! `notify` (inotify) and a periodic scan. While it is there, the nodes configured as reachable through it are
//! neighbours: bundles for them are written into it (exported) and count as forwarded once the
//! file is whole and on the medium. Files addressed to this node (or to nodes it imports for)
//! are taken into the store and removed from the medium only once durable here. A medium
//! carried twice does nothing twice: the agent remembers the bundles it handled until they
//! expire, so an imported copy is recognised, counted and removed.
//!
//! Writes are atomic: a temporary name, the data, fsync, rename, fsync of the directory. A file
//! with a temporary name (its writer died) or that is not a bundle is left alone and reported
//! once — and looked at again if its size or modification time changes (a copy that was still
//! being written when seen); a medium that is read-only or full fails the export with a clear
//! reason (logged once a minute) and the bundle stays in the store for the next try.
//!
//! The medium is hostile (design §3.10, [`super::medium`]): no symbolic link is followed, only
//! regular files are opened, a file is removed only if it is the one imported, and the spool
//! directory is refused if it leads into the node's own data directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpa::bundle::{BundleHeader, Eid, ParseOptions};
use bpa::cla::{BundleSink, ClaError, ClaFuture, ConvergenceLayer, IncomingBundle, OutgoingBundle, Refusal};
use bpa::log::Escaped;
use bpa::{Reception, SinkError};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::layout::{BUNDLE_SUFFIX, TEMPORARY_PREFIX, bundle_file, node_dir};
use super::medium::{EntryError, MediumDir, Stamp, Unsafe};
use crate::lock;

/// How the spool behaves.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The spool directory (a USB stick's mount point, say).
    pub dir: PathBuf,
    /// Nodes reached through the spool: their bundles are exported while the directory is there.
    pub peers: Vec<Eid>,
    /// Nodes besides this one whose bundles are imported (this node forwards for them).
    pub import_for: Vec<Eid>,
    /// How often the directory is looked at.
    pub scan_interval: Duration,
    /// Directories the spool must never reach (the node's data directory): a spool directory
    /// that leads into one is not used.
    pub keep_out: Vec<PathBuf>,
}

impl SpoolConfig {
    pub fn new(dir: impl Into<PathBuf>) -> SpoolConfig {
        SpoolConfig {
            dir: dir.into(),
            peers: Vec::new(),
            import_for: Vec::new(),
            scan_interval: Duration::from_secs(2),
            keep_out: Vec::new(),
        }
    }
}

/// Why the spool could not write a bundle.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the spool directory {0} is not there (the medium is not mounted?)")]
    Missing(PathBuf),
    #[error("the spool at {dir} is read-only: the bundle stays here until it can be written")]
    ReadOnly { dir: PathBuf },
    #[error("the spool at {dir} is full: the bundle stays here until there is room")]
    Full { dir: PathBuf },
    #[error("writing {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("the bundle's header could not be read to name its file: {0}")]
    Header(String),
    #[error("the medium's directory {} is {kind}: nothing is written there", Escaped(path.display()))]
    Unsafe { path: PathBuf, kind: Unsafe },
    #[error("the spool directory {} leads into {}: it is not used", Escaped(dir.display()), Escaped(keep_out.display()))]
    KeptOut { dir: PathBuf, keep_out: PathBuf },
}

/// A snapshot of the spool's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Whether the directory is there now.
    pub present: bool,
    pub exported: u64,
    pub bytes_exported: u64,
    pub imported: u64,
    pub bytes_imported: u64,
    /// Files of bundles this node already had or handled: removed, not delivered again.
    pub duplicates: u64,
    /// Files with a temporary name (their writer did not finish): left alone.
    pub half_written: u64,
    /// Files that are not bundles (or not ones this node takes): left alone.
    pub not_bundles: u64,
    /// Symbolic links, FIFOs, devices and other entries that are not what the spool expects
    /// (a node's directory that is not a directory, a bundle file that is not a regular file):
    /// never followed or opened.
    pub unsafe_entries: u64,
    pub export_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    bytes_exported: AtomicU64,
    imported: AtomicU64,
    bytes_imported: AtomicU64,
    duplicates: AtomicU64,
    half_written: AtomicU64,
    not_bundles: AtomicU64,
    unsafe_entries: AtomicU64,
    export_errors: AtomicU64,
}

/// Files reported as left alone, so each is reported (and counted) once.
const MAX_REPORTED: usize = 4096;
/// After a change is seen, how long to wait for the rest of its burst before scanning.
const WAKE_SETTLE: Duration = Duration::from_millis(50);
/// Files taken in at once.
const IMPORTS_AT_ONCE: usize = 64;
/// Bytes read or written at a time.
const CHUNK: usize = 1 << 20;
/// The most of a bundle's start read to find its ID.
const MAX_HEADER: usize = 1 << 20;

struct Shared<A: BundleSink> {
    agent: A,
    config: SpoolConfig,
    counters: Counters,
    present: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    /// Entries reported as left alone, with how they looked then (`None`: whatever they look
    /// like later); at most [`MAX_REPORTED`].
    reported: Mutex<HashMap<PathBuf, Option<Stamp>>>,
    warnings: Mutex<bpa::log::RateLimit>,
    /// Distinguishes temporary names of concurrent writes.
    next_temporary: AtomicU64,
}

impl<A: BundleSink> std::fmt::Debug for Shared<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A spool directory. Cheap to clone.
#[derive(Debug)]
pub struct Spool<A: BundleSink> {
    shared: Arc<Shared<A>>,
}

impl<A: BundleSink> Clone for Spool<A> {
    fn clone(&self) -> Self {
        Spool { shared: Arc::clone(&self.shared) }
    }
}

impl<A: BundleSink> Spool<A> {
    pub fn new(agent: A, mut config: SpoolConfig) -> Spool<A> {
        config.scan_interval = config.scan_interval.max(Duration::from_millis(10));
        let (present, _) = watch::channel(false);
        let (shutdown, _) = watch::channel(false);
        Spool {
            shared: Arc::new(Shared {
                agent,
                config,
                counters: Counters::default(),
                present,
                shutdown,
                reported: Mutex::new(HashMap::new()),
                warnings: Mutex::new(bpa::log::RateLimit::new(Duration::from_secs(60))),
                next_temporary: AtomicU64::new(0),
            }),
        }
    }

    pub fn config(&self) -> &SpoolConfig {
        &self.shared.config
    }

    /// Watches the directory until [`Spool::shutdown`].
    pub fn start(&self) {
        let spool = self.clone();
        tokio::spawn(async move { spool.watch().await });
    }

    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// The [`ConvergenceLayer`] the agent exports through.
    pub fn link(&self) -> Arc<dyn ConvergenceLayer> {
        Arc::new(SpoolLink { spool: self.clone() })
    }

    pub fn stats(&self) -> SpoolStats {
        let c = &self.shared.counters;
        SpoolStats {
            present: *self.shared.present.borrow(),
            exported: c.exported.load(Ordering::Relaxed),
            bytes_exported: c.bytes_exported.load(Ordering::Relaxed),
            imported: c.imported.load(Ordering::Relaxed),
            bytes_imported: c.bytes_imported.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            half_written: c.half_written.load(Ordering::Relaxed),
            not_bundles: c.not_bundles.load(Ordering::Relaxed),
            unsafe_entries: c.unsafe_entries.load(Ordering::Relaxed),
            export_errors: c.export_errors.load(Ordering::Relaxed),
        }
    }

    async fn watch(&self) {
        use notify::Watcher as _;
        let mut shutdown = self.shared.shutdown.subscribe();
        let dir = self.shared.config.dir.clone();
        // Changes in the directory (a file dropped in, the directory made) wake a scan at once;
        // the periodic scan stays for what inotify does not see (a filesystem mounted on it).
        let (wake_tx, mut wake) = tokio::sync::mpsc::channel::<()>(1);
        let mut watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
            let _ = wake_tx.try_send(());
        })
        .map_err(|error| tracing::info!(%error, dir = %dir.display(), "cannot watch the spool directory for changes; scanning it periodically"))
        .ok();
        if let (Some(watcher), Some(parent)) = (watcher.as_mut(), dir.parent()) {
            let _ = watcher.watch(parent, notify::RecursiveMode::NonRecursive);
        }
        let mut watching = false;
        self.scan().await;
        if !*self.shared.present.borrow() {
            tracing::warn!(
                dir = %Escaped(self.shared.config.dir.display()),
                peers = self.shared.config.peers.len(),
                "the spool directory is not there: bundles for its peers wait until it is (on a medium, make it once: mkdir -p DIR)"
            );
        }
        loop {
            self.scan().await;
            if let Some(watcher) = watcher.as_mut() {
                let present = *self.shared.present.borrow();
                if present && !watching {
                    watching = watcher.watch(&dir, notify::RecursiveMode::Recursive).is_ok();
                } else if !present && watching {
                    let _ = watcher.unwatch(&dir);
                    watching = false;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.shared.config.scan_interval) => {}
                Some(()) = wake.recv() => {
                    // A burst of changes (a file being written) makes one scan.
                    tokio::time::sleep(WAKE_SETTLE).await;
                    while wake.try_recv().is_ok() {}
                }
                _ = shutdown.changed() => break,
            }
        }
        if self.shared.present.send_replace(false) {
            for peer in &self.shared.config.peers {
                self.shared.agent.neighbour_down(peer);
            }
        }
    }

    /// One look at the directory: its peers up or down as it comes and goes, and what is there
    /// for this node imported.
    pub async fn scan(&self) {
        let dir = &self.shared.config.dir;
        let present = tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir());
        let was = self.shared.present.send_replace(present);
        if present && !was {
            tracing::info!(dir = %Escaped(dir.display()), peers = self.shared.config.peers.len(), "spool directory present");
            for peer in &self.shared.config.peers {
                if let Err(error) = self.shared.agent.neighbour_up(peer.clone(), self.link()).await {
                    tracing::error!(%error, neighbour = %peer, "the agent did not take the spool neighbour");
                }
            }
        } else if !present && was {
            tracing::info!(dir = %Escaped(dir.display()), "spool directory gone (medium removed?)");
            for peer in &self.shared.config.peers {
                self.shared.agent.neighbour_down(peer);
            }
        }
        if !present {
            return;
        }
        if let Err(error) = self.check_kept_out().await {
            self.report_once(dir, None, &self.shared.counters.unsafe_entries, &error.to_string());
            return;
        }
        let mut nodes = vec![self.shared.agent.node_id().clone()];
        nodes.extend(self.shared.config.import_for.iter().cloned());
        for node in nodes {
            self.import_dir(&node_dir(&node)).await;
        }
    }

    /// Refuses a spool directory that leads into a directory it must keep out of (the data
    /// directory): a medium's directory may be a link to anywhere.
    async fn check_kept_out(&self) -> Result<(), ExportError> {
        let config = &self.shared.config;
        if config.keep_out.is_empty() {
            return Ok(());
        }
        let (dir, keep_out) = (config.dir.clone(), config.keep_out.clone());
        let found = tokio::task::spawn_blocking(move || {
            let real = std::fs::canonicalize(&dir).ok()?;
            keep_out.into_iter().find(|out| {
                std::fs::canonicalize(out).is_ok_and(|out| real.starts_with(&out) || out.starts_with(&real))
            })
        })
        .await
        .ok()
        .flatten();
        match found {
            Some(keep_out) => Err(ExportError::KeptOut { dir: config.dir.clone(), keep_out }),
            None => Ok(()),
        }
    }

    /// Imports what the node sub-directory `name` holds.
    async fn import_dir(&self, name: &str) {
        let root = self.shared.config.dir.clone();
        let path = root.join(name);
        let opened = {
            let name = name.to_string();
            tokio::task::spawn_blocking(move || MediumDir::open(&root, &name)).await
        };
        let dir = match opened {
            Ok(Ok(dir)) => Arc::new(dir),
            Ok(Err(EntryError::Missing)) | Err(_) => return,
            Ok(Err(EntryError::Unsafe(kind))) => {
                self.report_once(
                    &path,
                    None,
                    &self.shared.counters.unsafe_entries,
                    &format!("the medium's directory for this node is {kind}: nothing in it is imported"),
                );
                return;
            }
            Ok(Err(EntryError::Io(error))) => {
                self.warn_limited(
                    &path,
                    &error,
                    "the medium's directory could not be opened; tried again at the next scan",
                );
                return;
            }
        };
        // The names stream from the directory as they are read (however many there are), at
        // most a few waiting; files are taken in several at a time (each waits for the store's
        // group commit), at most IMPORTS_AT_ONCE, their removals made durable with one sync.
        let (names_tx, mut names) = tokio::sync::mpsc::channel::<String>(IMPORTS_AT_ONCE);
        let lister = {
            let dir = Arc::clone(&dir);
            tokio::task::spawn_blocking(move || {
                dir.names(|name| names_tx.blocking_send(name.to_string()).is_ok())
            })
        };
        let mut importing = tokio::task::JoinSet::new();
        let mut removed = false;
        while let Some(name) = names.recv().await {
            let path = dir.path().join(&name);
            if name.starts_with(TEMPORARY_PREFIX) {
                self.left_alone(
                    &dir,
                    &name,
                    &self.shared.counters.half_written,
                    "a half-written file (its writer did not finish): left alone",
                )
                .await;
            } else if name.ends_with(BUNDLE_SUFFIX) {
                if !self.changed_since_reported(&dir, &name, &path).await {
                    continue;
                }
                while importing.len() >= IMPORTS_AT_ONCE {
                    removed |= importing.join_next().await.and_then(Result::ok).unwrap_or(false);
                }
                let spool = self.clone();
                let dir = Arc::clone(&dir);
                importing.spawn(async move { spool.import_file(&dir, &name).await });
            } else {
                self.left_alone(
                    &dir,
                    &name,
                    &self.shared.counters.not_bundles,
                    "not a bundle file: left alone",
                )
                .await;
            }
        }
        if let Ok(Err(error)) = lister.await {
            self.warn_limited(dir.path(), &error, "the medium's directory could not be read to its end");
        }
        while let Some(done) = importing.join_next().await {
            removed |= done.unwrap_or(false);
        }
        if removed {
            let dir = Arc::clone(&dir);
            let _ = tokio::task::spawn_blocking(move || dir.sync()).await;
        }
    }

    /// Whether `name` is to be looked at: never reported, or changed since (its size, its
    /// modification time or the file itself) — a copy that was still being written when it was
    /// left alone is taken once it is whole.
    async fn changed_since_reported(&self, dir: &Arc<MediumDir>, name: &str, path: &Path) -> bool {
        let reported = lock(&self.shared.reported).get(path).copied();
        let Some(then) = reported else { return true };
        let Some(then) = then else { return false };
        let now = {
            let (dir, name) = (Arc::clone(dir), name.to_string());
            tokio::task::spawn_blocking(move || dir.stamp(&name).ok()).await.ok().flatten()
        };
        if now.is_some_and(|now| now != then) {
            lock(&self.shared.reported).remove(path);
            return true;
        }
        false
    }

    /// Counts and reports a file left on the medium, once (again only if it changes).
    async fn left_alone(&self, dir: &Arc<MediumDir>, name: &str, counter: &AtomicU64, what: &str) {
        let path = dir.path().join(name);
        if lock(&self.shared.reported).contains_key(&path) {
            return;
        }
        let stamp = {
            let (dir, name) = (Arc::clone(dir), name.to_string());
            tokio::task::spawn_blocking(move || dir.stamp(&name).ok()).await.ok().flatten()
        };
        self.report_once(&path, stamp, counter, what);
    }

    /// Counts and reports `path` (as it looked: `stamp`) once.
    fn report_once(&self, path: &Path, stamp: Option<Stamp>, counter: &AtomicU64, what: &str) {
        {
            let mut reported = lock(&self.shared.reported);
            if reported.contains_key(path) {
                return;
            }
            if reported.len() >= MAX_REPORTED {
                reported.clear();
            }
            reported.insert(path.to_path_buf(), stamp);
        }
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = %Escaped(path.display()), "{}", Escaped(what));
    }

    /// Logs a failure to read the medium, at most once a minute.
    fn warn_limited(&self, path: &Path, error: &dyn std::fmt::Display, what: &str) {
        if let Some(suppressed) = lock(&self.shared.warnings).allow(crate::clock::now()) {
            tracing::warn!(path = %Escaped(path.display()), error = %Escaped(error), earlier_not_logged = suppressed, "{what}");
        }
    }

    /// Takes one file in; answers whether it was removed from the medium (its directory then
    /// wants a sync).
    async fn import_file(&self, dir: &Arc<MediumDir>, name: &str) -> bool {
        let opened = {
            let (dir, name) = (Arc::clone(dir), name.to_string());
            tokio::task::spawn_blocking(move || dir.open_file(&name)).await
        };
        let path = dir.path().join(name);
        let (file, stamp) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(EntryError::Missing)) | Err(_) => return false,
            Ok(Err(EntryError::Unsafe(Unsafe::Replaced))) => return false,
            Ok(Err(EntryError::Unsafe(kind))) => {
                // Reported with how it looks now: replaced by a regular file, it is taken.
                self.left_alone(
                    dir,
                    name,
                    &self.shared.counters.unsafe_entries,
                    &format!("{kind}: left alone"),
                )
                .await;
                return false;
            }
            Ok(Err(EntryError::Io(error))) => {
                self.warn_limited(
                    &path,
                    &error,
                    "a spool file could not be opened; tried again at the next scan",
                );
                return false;
            }
        };
        let result = self.take_in(&path, tokio::fs::File::from_std(file), stamp.size).await;
        // Durable here (or known already): the file may go — if it is still the one read.
        let remove = || {
            let (dir, name, path) = (Arc::clone(dir), name.to_string(), path.clone());
            async move {
                match tokio::task::spawn_blocking(move || dir.remove_if_same(&name, &stamp)).await {
                    Ok(Ok(removed)) => removed,
                    Ok(Err(error)) => {
                        self.warn_limited(&path, &error, "imported, but the file could not be removed from the medium (it will be recognised and skipped next time)");
                        false
                    }
                    Err(_) => false,
                }
            }
        };
        match result {
            // Counted once the file is gone (or could not go), so that a count read says the
            // medium is done with it.
            Ok((reception, bytes)) => {
                let removed = remove().await;
                let c = &self.shared.counters;
                match reception {
                    Reception::Accepted(_) | Reception::Consumed => {
                        c.imported.fetch_add(1, Ordering::Relaxed);
                        c.bytes_imported.fetch_add(bytes, Ordering::Relaxed);
                    }
                    Reception::Duplicate(_) | Reception::AlreadyHandled => {
                        c.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                removed
            }
            Err(Some(error)) if error.refusal() == Refusal::NotAcceptable => {
                // Looked at again if it changes: a copy still being written reads as a bundle
                // cut short.
                self.report_once(
                    &path,
                    Some(stamp),
                    &self.shared.counters.not_bundles,
                    &format!("not a bundle this node takes ({error}): left alone"),
                );
                false
            }
            Err(Some(error)) => {
                // No room or a store failure: tried again at the next scan.
                self.warn_limited(
                    &path,
                    &error,
                    "a spool file could not be imported now; it stays on the medium",
                );
                false
            }
            Err(None) => false,
        }
    }

    /// Streams an open file (of `length` bytes when opened) into the store; `Err(None)` when
    /// it could not be read (a medium pulled out).
    async fn take_in(
        &self,
        path: &Path,
        mut file: tokio::fs::File,
        length: u64,
    ) -> Result<(Reception, u64), Option<SinkError>> {
        let mut pending = self.shared.agent.begin_receive().await.map_err(Some)?;
        let mut total = 0u64;
        // Many files are taken in at once: each buffer only as large as its file needs.
        let mut chunk = Vec::with_capacity(usize::try_from(length).unwrap_or(CHUNK).clamp(1, CHUNK));
        loop {
            chunk.clear();
            let n = (&mut file).take(CHUNK as u64).read_to_end(&mut chunk).await.map_err(|error| {
                // Tried again at the next scan (a medium pulled out mid-read comes back).
                self.warn_limited(path, &error, "reading a spool file failed");
                None
            })?;
            if n == 0 {
                break;
            }
            total += n as u64;
            pending.write_owned(&mut chunk).await.map_err(Some)?;
        }
        let reception = pending.commit().await.map_err(Some)?;
        Ok((reception, total))
    }

    /// Writes one bundle into the directory of `peer`, atomically: a private temporary file
    /// (0600, never through a link), synced, renamed, the directory synced.
    async fn export(&self, peer: &Eid, bundle: OutgoingBundle) -> Result<u64, ExportError> {
        let root = self.shared.config.dir.clone();
        if !tokio::fs::metadata(&root).await.is_ok_and(|m| m.is_dir()) {
            return Err(ExportError::Missing(root));
        }
        self.check_kept_out().await?;
        let name = node_dir(peer);
        let path = root.join(&name);
        let created = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || MediumDir::create(&root, &name)).await
        };
        let dir = match created {
            Ok(Ok(dir)) => Arc::new(dir),
            Ok(Err(EntryError::Unsafe(kind))) => return Err(ExportError::Unsafe { path, kind }),
            Ok(Err(EntryError::Missing)) => return Err(ExportError::Missing(root)),
            Ok(Err(EntryError::Io(error))) => return Err(classify(&root, &path, error)),
            Err(error) => return Err(ExportError::Io { path, error: std::io::Error::other(error) }),
        };
        let n = self.shared.next_temporary.fetch_add(1, Ordering::Relaxed);
        let temporary = format!("{TEMPORARY_PREFIX}{}-{n}", std::process::id());
        let remove_temporary = || {
            let (dir, temporary) = (Arc::clone(&dir), temporary.clone());
            tokio::task::spawn_blocking(move || dir.remove(&temporary))
        };
        let written = self.write_temporary(&dir, &temporary, bundle).await;
        let (length, prefix) = match written {
            Ok(done) => done,
            Err(error) => {
                let _ = remove_temporary().await;
                return Err(match error {
                    EntryError::Unsafe(kind) => {
                        ExportError::Unsafe { path: dir.path().join(&temporary), kind }
                    }
                    EntryError::Missing => ExportError::Missing(root),
                    EntryError::Io(error) => classify(&root, &dir.path().join(&temporary), error),
                });
            }
        };
        let header = match BundleHeader::parse(&prefix, &ParseOptions::lenient()) {
            Ok(Some(header)) => header,
            Ok(None) => {
                let _ = remove_temporary().await;
                return Err(ExportError::Header(format!("longer than {MAX_HEADER} bytes")));
            }
            Err(error) => {
                let _ = remove_temporary().await;
                return Err(ExportError::Header(error.to_string()));
            }
        };
        let file_name = bundle_file(&header.id());
        let renamed = {
            let (dir, temporary, file_name) = (Arc::clone(&dir), temporary.clone(), file_name.clone());
            tokio::task::spawn_blocking(move || dir.rename(&temporary, &file_name).and_then(|()| dir.sync()))
                .await
        };
        match renamed {
            Ok(Ok(())) => Ok(length),
            Ok(Err(error)) => {
                let _ = remove_temporary().await;
                Err(match error {
                    EntryError::Io(error) => classify(&root, &dir.path().join(&file_name), error),
                    other => ExportError::Io {
                        path: dir.path().join(&file_name),
                        error: std::io::Error::other(other.to_string()),
                    },
                })
            }
            Err(error) => Err(ExportError::Io {
                path: dir.path().join(&file_name),
                error: std::io::Error::other(error),
            }),
        }
    }

    /// Writes the bundle to the new file `name` in `dir` and syncs it; answers its length and
    /// its first bytes.
    async fn write_temporary(
        &self,
        dir: &Arc<MediumDir>,
        name: &str,
        bundle: OutgoingBundle,
    ) -> Result<(u64, Bytes), EntryError> {
        let created = {
            let (dir, name) = (Arc::clone(dir), name.to_string());
            tokio::task::spawn_blocking(move || dir.create_file(&name))
                .await
                .map_err(|error| EntryError::Io(std::io::Error::other(error)))??
        };
        let mut file = tokio::fs::File::from_std(created);
        // Many exports run at once: each buffer only as large as its bundle needs.
        let mut buffer = vec![0u8; usize::try_from(bundle.len()).unwrap_or(CHUNK).clamp(1, CHUNK)];
        let mut reader = bundle.into_reader();
        let mut prefix = Vec::new();
        let mut length = 0u64;
        loop {
            let n = reader.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            if prefix.len() < MAX_HEADER {
                let keep = n.min(MAX_HEADER - prefix.len());
                prefix.extend_from_slice(&buffer[..keep]);
            }
            file.write_all(&buffer[..n]).await?;
            length += n as u64;
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok((length, prefix.into()))
    }
}

/// A write error in words a person acts on.
fn classify(dir: &Path, path: &Path, error: std::io::Error) -> ExportError {
    match error.kind() {
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => {
            ExportError::ReadOnly { dir: dir.to_path_buf() }
        }
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            ExportError::Full { dir: dir.to_path_buf() }
        }
        _ => ExportError::Io { path: path.to_path_buf(), error },
    }
}

/// The agent's way into the spool.
#[derive(Debug)]
struct SpoolLink<A: BundleSink> {
    spool: Spool<A>,
}

impl<A: BundleSink> ConvergenceLayer for SpoolLink<A> {
    fn name(&self) -> &str {
        "spool"
    }

    fn send(&self, peer: &Eid, bundle: OutgoingBundle) -> ClaFuture<'_, ()> {
        let node = peer.node_id();
        Box::pin(async move {
            let shared = &self.spool.shared;
            match self.spool.export(&node, bundle).await {
                Ok(length) => {
                    shared.counters.exported.fetch_add(1, Ordering::Relaxed);
                    shared.counters.bytes_exported.fetch_add(length, Ordering::Relaxed);
                    Ok(())
                }
                Err(error) => {
                    shared.counters.export_errors.fetch_add(1, Ordering::Relaxed);
                    match &error {
                        // What is wrong with the medium is reported once, not once a minute.
                        ExportError::Unsafe { path, .. } | ExportError::KeptOut { dir: path, .. } => {
                            self.spool.report_once(
                                path,
                                None,
                                &shared.counters.unsafe_entries,
                                &format!("a bundle for {node} could not be written: {error}"),
                            );
                        }
                        _ => {
                            if let Some(suppressed) = lock(&shared.warnings).allow(crate::clock::now()) {
                                tracing::warn!(error = %Escaped(&error), neighbour = %node, earlier_not_logged = suppressed, "a bundle could not be written to the spool");
                            }
                        }
                    }
                    match error {
                        ExportError::Missing(_) => Err(ClaError::LinkDown { peer: node.to_string() }),
                        ExportError::Full { .. } => {
                            Err(ClaError::Refused { peer: node.to_string(), reason: Refusal::NoResources })
                        }
                        other => Err(ClaError::Failed { peer: node.to_string(), reason: other.to_string() }),
                    }
                }
            }
        })
    }
}
