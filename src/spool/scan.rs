//! Which spool entries are candidates, and a full scan of the directory.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Producers write under these names and rename the finished file in; the agent never reads them.
pub fn is_candidate(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !(b.is_empty() || b.starts_with(b".") || b.ends_with(b".tmp") || b.ends_with(b".part"))
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Candidates to read now, oldest first.
    pub ready: Vec<PathBuf>,
    /// Files left for a later scan because they changed too recently.
    pub unsettled: usize,
}

/// Candidates in `dir`, oldest first. Regular files changed less than `settle` before `now`
/// are left for later (they may still be being written); other kinds are returned at once, to
/// be refused. Paths in `skip` (the agent's own subdirectories) are never returned.
pub fn scan(dir: &Path, skip: &[PathBuf], settle: Duration, now: SystemTime) -> std::io::Result<Scan> {
    let mut found = Vec::new();
    let mut unsettled = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if !is_candidate(&entry.file_name()) || skip.contains(&path) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if meta.file_type().is_file() && now.duration_since(modified).unwrap_or_default() < settle {
            unsettled += 1;
            continue;
        }
        found.push((modified, path));
    }
    found.sort();
    Ok(Scan { ready: found.into_iter().map(|(_, p)| p).collect(), unsettled })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_and_hidden_names_are_not_candidates() {
        for name in [".hidden.json", "report.json.tmp", "report.part", ""] {
            assert!(!is_candidate(OsStr::new(name)), "{name}");
        }
        for name in ["report.json", "trivy.sarif", "x.tmp.json", "a"] {
            assert!(is_candidate(OsStr::new(name)), "{name}");
        }
        assert!(is_candidate(OsStr::from_bytes(b"bad\xffname\n")));
    }

    #[test]
    fn scan_skips_own_dirs_and_unsettled_files_and_orders_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let failed = dir.path().join("failed");
        std::fs::create_dir(&failed).unwrap();
        std::fs::create_dir(dir.path().join("stray")).unwrap();
        for name in ["b.json", "a.json", ".c.json", "d.tmp"] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        let old = SystemTime::now() - Duration::from_secs(100);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("b.json"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let later = SystemTime::now() + Duration::from_secs(10);
        let got =
            scan(dir.path(), std::slice::from_ref(&failed), Duration::from_secs(5), later).unwrap().ready;
        let mut names: Vec<_> = got.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names[0], "b.json", "oldest first");
        names.sort();
        assert_eq!(names, ["a.json", "b.json", "stray"]);
        let now = SystemTime::now();
        let got = scan(dir.path(), &[failed], Duration::from_secs(5), now).unwrap();
        assert_eq!(got.unsettled, 1);
        let got = got.ready;
        let names: Vec<_> = got.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert!(!names.contains(&"a.json"), "a.json was just written: {names:?}");
    }
}
