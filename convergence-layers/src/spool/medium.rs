//! The spool's view of a medium it does not trust (design §3.10): a stick found in the street,
//! or a directory others can write to, may hold symbolic links into the node's own data, FIFOs
//! that block whoever opens them, devices, and files still being copied.
//!
//! Everything below the spool directory is reached relative to an open directory descriptor
//! (`openat`, `fstatat`, `unlinkat`, `renameat`), never by a path that could be swapped on the
//! way, and nothing is followed:
//! - a node's sub-directory is opened with `O_DIRECTORY | O_NOFOLLOW`: a symbolic link is
//!   refused (it would make import read and remove, or export write, wherever it points);
//! - a bundle file is looked at without following (`fstatat(AT_SYMLINK_NOFOLLOW)`), opened only
//!   if it is a regular file, with `O_NOFOLLOW | O_NONBLOCK` (a FIFO or a device swapped in
//!   meanwhile neither blocks nor is read), and checked again once open (same file, regular);
//! - a file is removed only if the name still names the very file that was read (device and
//!   inode), so the spool never removes what it did not import from the medium itself;
//! - what the spool writes is created `O_EXCL | O_NOFOLLOW`, mode 0600 (directories 0700).
//!
//! The spool directory itself is the operator's choice and is followed like any configured
//! path. Every call blocks: the driver runs them on tokio's blocking pool.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Why an entry of the medium was not used. Each says what was found, for a report an operator
/// can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsafe {
    #[error("a symbolic link: never followed (it could lead off the medium)")]
    SymbolicLink,
    #[error("a FIFO: never opened (reading one blocks until something writes to it)")]
    Fifo,
    #[error("a device: never opened")]
    Device,
    #[error("a socket: never opened")]
    Socket,
    #[error("not a directory")]
    NotADirectory,
    #[error("a directory where a file was expected")]
    Directory,
    #[error("it changed while it was being opened (another file took its name): left for the next look")]
    Replaced,
}

/// What went wrong with an entry: it is not what it should be, or the filesystem failed.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("{0}")]
    Unsafe(Unsafe),
    #[error("it is not there")]
    Missing,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<Errno> for EntryError {
    fn from(errno: Errno) -> EntryError {
        match errno {
            Errno::ENOENT => EntryError::Missing,
            // O_NOFOLLOW on a symbolic link.
            Errno::ELOOP => EntryError::Unsafe(Unsafe::SymbolicLink),
            Errno::ENOTDIR => EntryError::Unsafe(Unsafe::NotADirectory),
            errno => EntryError::Io(std::io::Error::from(errno)),
        }
    }
}

/// The identity and state of a file when it was looked at: a file left alone is looked at
/// again once any of these changes (a copy that was still being written has finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub modified_ns: i128,
}

impl Stamp {
    fn of(stat: &FileStat) -> Stamp {
        Stamp {
            device: stat.st_dev,
            inode: stat.st_ino,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            modified_ns: i128::from(stat.st_mtime) * 1_000_000_000 + i128::from(stat.st_mtime_nsec),
        }
    }

    fn same_file(&self, other: &Stamp) -> bool {
        self.device == other.device && self.inode == other.inode
    }
}

/// What kind of entry `stat` describes, if it is not a regular file.
fn unsafe_kind(stat: &FileStat) -> Option<Unsafe> {
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    match kind {
        SFlag::S_IFREG => None,
        SFlag::S_IFLNK => Some(Unsafe::SymbolicLink),
        SFlag::S_IFIFO => Some(Unsafe::Fifo),
        SFlag::S_IFCHR | SFlag::S_IFBLK => Some(Unsafe::Device),
        SFlag::S_IFSOCK => Some(Unsafe::Socket),
        SFlag::S_IFDIR => Some(Unsafe::Directory),
        _ => Some(Unsafe::Device),
    }
}

/// Opens `name` in `dir` as a directory without following a symbolic link.
fn open_dir_at(dir: impl AsFd, name: &str) -> Result<OwnedFd, EntryError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir.as_fd(), name, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        // Linux answers ENOTDIR for a symbolic link opened O_DIRECTORY | O_NOFOLLOW: which it
        // was is looked up, for a report that says so.
        Err(Errno::ENOTDIR | Errno::ELOOP) => {
            let stat = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            Err(EntryError::Unsafe(match unsafe_kind(&stat) {
                Some(Unsafe::SymbolicLink) => Unsafe::SymbolicLink,
                _ => Unsafe::NotADirectory,
            }))
        }
        Err(errno) => Err(errno.into()),
    }
}

/// One directory on the medium (a node's sub-directory of the spool), open.
#[derive(Debug)]
pub struct MediumDir {
    fd: OwnedFd,
    /// For logs and errors only: never used to reach anything.
    path: PathBuf,
}

impl MediumDir {
    /// Opens the sub-directory `name` of the spool directory `root`; a symbolic link or
    /// anything but a directory is refused.
    pub fn open(root: &Path, name: &str) -> Result<MediumDir, EntryError> {
        let root_fd = open_root(root)?;
        let fd = open_dir_at(&root_fd, name)?;
        Ok(MediumDir { fd, path: root.join(name) })
    }

    /// As [`MediumDir::open`], making the sub-directory (mode 0700) if it is not there.
    pub fn create(root: &Path, name: &str) -> Result<MediumDir, EntryError> {
        let root_fd = open_root(root)?;
        match mkdirat(&root_fd, name, Mode::S_IRWXU) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(errno.into()),
        }
        let fd = open_dir_at(&root_fd, name)?;
        Ok(MediumDir { fd, path: root.join(name) })
    }

    /// Where the directory is, for logs.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names in the directory, read from its own descriptor; `each` is called for every
    /// name (not `.` and `..`, and only names that are UTF-8: the spool's own names are) until
    /// it answers `false`. Nothing is gathered, however many entries there are.
    pub fn names(&self, mut each: impl FnMut(&str) -> bool) -> Result<(), EntryError> {
        let mut dir = nix::dir::Dir::from_fd(open_dir_at(&self.fd, ".")?)?;
        for entry in dir.iter() {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else { continue };
            if name == "." || name == ".." {
                continue;
            }
            if !each(name) {
                break;
            }
        }
        Ok(())
    }

    /// How `name` looks now, without following it.
    pub fn stamp(&self, name: &str) -> Result<Stamp, EntryError> {
        let stat = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok(Stamp::of(&stat))
    }

    /// Opens the regular file `name` for reading; anything else is refused unopened (or, when
    /// it was swapped in after the look, opened without blocking and refused).
    pub fn open_file(&self, name: &str) -> Result<(File, Stamp), EntryError> {
        let before = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if let Some(kind) = unsafe_kind(&before) {
            return Err(EntryError::Unsafe(kind));
        }
        let fd = openat(
            &self.fd,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let opened = fstat(&fd)?;
        if let Some(kind) = unsafe_kind(&opened) {
            return Err(EntryError::Unsafe(kind));
        }
        let stamp = Stamp::of(&opened);
        if !stamp.same_file(&Stamp::of(&before)) {
            return Err(EntryError::Unsafe(Unsafe::Replaced));
        }
        Ok((File::from(fd), stamp))
    }

    /// Removes `name` if it is still the file `read` (a regular file, same device, inode, size
    /// and modification time — an inode number alone may be reused at once by a new file):
    /// `Ok(false)` when the name now names something else, which is left.
    pub fn remove_if_same(&self, name: &str, read: &Stamp) -> Result<bool, EntryError> {
        let now = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if unsafe_kind(&now).is_some() || Stamp::of(&now) != *read {
            return Ok(false);
        }
        unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir)?;
        Ok(true)
    }

    /// Creates the new file `name` (mode 0600) for writing; fails if anything has that name.
    pub fn create_file(&self, name: &str) -> Result<File, EntryError> {
        let fd = openat(
            &self.fd,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )?;
        Ok(File::from(fd))
    }

    /// Renames `from` to `to` within the directory (replacing a file named `to`).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), EntryError> {
        renameat(&self.fd, from, &self.fd, to)?;
        Ok(())
    }

    /// Removes `name`, whatever it is but a directory (a temporary file of the spool's own).
    pub fn remove(&self, name: &str) -> Result<(), EntryError> {
        unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir)?;
        Ok(())
    }

    /// Makes the directory's renames and removals durable.
    pub fn sync(&self) -> Result<(), EntryError> {
        nix::unistd::fsync(&self.fd)?;
        Ok(())
    }
}

/// The spool directory, followed as any configured path is.
fn open_root(root: &Path) -> Result<OwnedFd, EntryError> {
    let fd = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn medium() -> (tempfile::TempDir, MediumDir) {
        let root = tempfile::tempdir().expect("root");
        std::fs::create_dir(root.path().join("node")).expect("node dir");
        let dir = MediumDir::open(root.path(), "node").expect("open");
        (root, dir)
    }

    #[test]
    fn a_sub_directory_that_is_a_symbolic_link_is_refused_both_ways() {
        let root = tempfile::tempdir().expect("root");
        let elsewhere = tempfile::tempdir().expect("elsewhere");
        symlink(elsewhere.path(), root.path().join("node")).expect("symlink");
        assert!(matches!(
            MediumDir::open(root.path(), "node"),
            Err(EntryError::Unsafe(Unsafe::SymbolicLink))
        ));
        assert!(matches!(
            MediumDir::create(root.path(), "node"),
            Err(EntryError::Unsafe(Unsafe::SymbolicLink))
        ));
        std::fs::write(root.path().join("plain"), b"x").expect("file");
        assert!(matches!(
            MediumDir::open(root.path(), "plain"),
            Err(EntryError::Unsafe(Unsafe::NotADirectory))
        ));
        assert!(matches!(MediumDir::open(root.path(), "absent"), Err(EntryError::Missing)));
    }

    #[test]
    fn only_regular_files_are_opened() {
        let (root, dir) = medium();
        let node = root.path().join("node");
        std::fs::write(node.join("real.bundle"), b"bytes").expect("file");
        symlink(node.join("real.bundle"), node.join("link.bundle")).expect("symlink");
        nix::unistd::mkfifo(&node.join("fifo.bundle"), Mode::S_IRWXU).expect("fifo");
        std::fs::create_dir(node.join("dir.bundle")).expect("dir");
        let (mut file, stamp) = dir.open_file("real.bundle").expect("regular");
        let mut read = String::new();
        file.read_to_string(&mut read).expect("read");
        assert_eq!((read.as_str(), stamp.size), ("bytes", 5));
        let refused = |name| match dir.open_file(name) {
            Err(EntryError::Unsafe(kind)) => kind,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(refused("link.bundle"), Unsafe::SymbolicLink);
        assert_eq!(refused("fifo.bundle"), Unsafe::Fifo, "refused without blocking");
        assert_eq!(refused("dir.bundle"), Unsafe::Directory);
        assert!(matches!(dir.open_file("absent.bundle"), Err(EntryError::Missing)));
        let mut names = Vec::new();
        dir.names(|n| {
            names.push(n.to_string());
            true
        })
        .expect("names");
        names.sort();
        assert_eq!(names, ["dir.bundle", "fifo.bundle", "link.bundle", "real.bundle"]);
    }

    #[test]
    fn a_file_is_removed_only_while_its_name_still_names_what_was_read() {
        let (root, dir) = medium();
        let node = root.path().join("node");
        std::fs::write(node.join("a.bundle"), b"first").expect("file");
        let (_, read) = dir.open_file("a.bundle").expect("open");
        // Another file takes the name meanwhile: it is not removed.
        std::fs::remove_file(node.join("a.bundle")).expect("rm");
        std::fs::write(node.join("other"), b"second, and longer").expect("other");
        std::fs::rename(node.join("other"), node.join("a.bundle")).expect("swap");
        assert!(!dir.remove_if_same("a.bundle", &read).expect("look"));
        assert!(node.join("a.bundle").exists());
        // A symbolic link to the very file read is not removed either (nor what it points to).
        let (_, read) = dir.open_file("a.bundle").expect("open");
        std::fs::rename(node.join("a.bundle"), node.join("target")).expect("move");
        symlink(node.join("target"), node.join("a.bundle")).expect("symlink");
        assert!(!dir.remove_if_same("a.bundle", &read).expect("look"));
        assert!(node.join("target").exists());
        std::fs::remove_file(node.join("a.bundle")).expect("rm link");
        std::fs::rename(node.join("target"), node.join("a.bundle")).expect("back");
        assert!(dir.remove_if_same("a.bundle", &read).expect("remove"));
        assert!(!node.join("a.bundle").exists());
    }

    #[test]
    fn files_written_are_private_and_never_written_through_a_link() {
        let (root, dir) = medium();
        let node = root.path().join("node");
        let mut file = dir.create_file(".tmp-1").expect("create");
        file.write_all(b"bundle").expect("write");
        dir.rename(".tmp-1", "x.bundle").expect("rename");
        dir.sync().expect("sync");
        let mode = std::fs::metadata(node.join("x.bundle")).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let victim = root.path().join("victim");
        std::fs::write(&victim, b"keep").expect("victim");
        symlink(&victim, node.join(".tmp-2")).expect("symlink");
        assert!(dir.create_file(".tmp-2").is_err(), "a name taken by a link is not written through");
        assert_eq!(std::fs::read(&victim).expect("read"), b"keep");
        let made = MediumDir::create(root.path(), "new").expect("create dir");
        let mode = std::fs::metadata(made.path()).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
