//! Opening a spool entry safely: only regular files, never through a symlink, never blocking
//! on a FIFO, and the file opened is the file that was checked.

use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why a spool entry is not read.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Not a regular file (symlink, directory, FIFO, socket, device).
    #[error("not a regular file but a {0}; only regular files are read from the spool")]
    NotRegular(&'static str),
    /// The entry was replaced between the check and the open.
    #[error("the file was replaced while being opened")]
    Replaced,
    /// It disappeared before it could be opened.
    #[error("the file disappeared")]
    Gone,
    /// Its owner is neither an allowed user nor an allowed group.
    #[error(
        "owned by uid {uid}, gid {gid}: neither is allowed to submit findings (spool.allowed_users, spool.allowed_groups)"
    )]
    Owner {
        /// Owning user.
        uid: u32,
        /// Owning group.
        gid: u32,
    },
    /// Any other I/O error.
    #[error("cannot open: {0}")]
    Io(#[from] std::io::Error),
}

/// What kind of entry this is, in words.
pub fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "regular file"
    }
}

/// Who may put files in the spool: a file is read if its owner is one of `users` or its group
/// one of `groups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    /// Allowed user ids.
    pub users: Vec<u32>,
    /// Allowed group ids.
    pub groups: Vec<u32>,
}

impl Owners {
    /// This process's user and group (the service user and group under systemd), and root.
    pub fn this_process() -> Self {
        // /proc/self belongs to the process's effective user and group.
        let (uid, gid) = std::fs::metadata("/proc/self").map_or((0, 0), |m| (m.uid(), m.gid()));
        let mut users = vec![uid];
        if uid != 0 {
            users.push(0);
        }
        Self { users, groups: vec![gid] }
    }

    fn allows(&self, meta: &Metadata) -> bool {
        self.users.contains(&meta.uid()) || self.groups.contains(&meta.gid())
    }
}

/// Opens `path` for reading if it is a regular file (owned as `owners` allows, when given).
pub fn open_regular(path: &Path, owners: Option<&Owners>) -> Result<(File, Metadata), Refusal> {
    let before = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Refusal::Gone),
        Err(e) => return Err(e.into()),
    };
    if !before.file_type().is_file() {
        return Err(Refusal::NotRegular(kind(&before)));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Refusal::NotRegular("symbolic link"),
            Some(libc::ENOENT) => Refusal::Gone,
            _ => Refusal::Io(e),
        })?;
    let after = file.metadata()?;
    if !after.file_type().is_file() {
        return Err(Refusal::NotRegular(kind(&after)));
    }
    if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(Refusal::Replaced);
    }
    if let Some(owners) = owners {
        if !owners.allows(&after) {
            return Err(Refusal::Owner { uid: after.uid(), gid: after.gid() });
        }
    }
    Ok((file, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinks_directories_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.json");
        std::fs::write(&target, "{}").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
        assert!(matches!(open_regular(&link, None), Err(Refusal::NotRegular("symbolic link"))));
        assert!(matches!(open_regular(dir.path(), None), Err(Refusal::NotRegular("directory"))));
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(matches!(open_regular(&fifo, None), Err(Refusal::NotRegular("FIFO"))));
        assert!(matches!(open_regular(&dir.path().join("nope"), None), Err(Refusal::Gone)));
        let (_, meta) = open_regular(&target, Some(&Owners::this_process())).unwrap();
        assert_eq!(meta.len(), 2);
        let strangers = Owners { users: vec![4242], groups: vec![4242] };
        assert!(matches!(open_regular(&target, Some(&strangers)), Err(Refusal::Owner { .. })));
    }
}
