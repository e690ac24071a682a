//! Resolving findings a new scan no longer reports (`[lifecycle] resolve = "archive"`).
//!
//! When a complete scanner report has been delivered — its file finished, every finding accepted
//! or dead-lettered — the findings the previous accepted report of the same scope had and this
//! one has not are written, archived, as an ordinary spool file; then the scope's state becomes
//! this report's accepted findings; then the report's file is deleted. The archive file is
//! delivered like any other (retries, dead letters, nothing lost across a crash). A crash before
//! the state is written re-reads the report and writes the same archive file again — same name,
//! same content, same `UpdatedAt` — which Security Hub ignores the second time.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::decode::build::Scope;

/// The fields kept per finding: enough to send it again, archived, without losing what a reader
/// of the archived finding needs (an import replaces the stored finding).
const KEPT: &[&str] = &[
    "Vulnerabilities",
    "Remediation",
    "SchemaVersion",
    "Id",
    "ProductArn",
    "GeneratorId",
    "AwsAccountId",
    "Types",
    "CreatedAt",
    "Severity",
    "Title",
    "Description",
    "Resources",
    "Compliance",
    "Region",
];

/// The last accepted report of one scope.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// The scope's key.
    pub scope: String,
    /// That report's scan time.
    pub scanned: String,
    /// Its findings by Id, reduced to [`KEPT`].
    pub findings: BTreeMap<String, Value>,
}

/// A finding reduced to what archiving it later needs.
pub fn keep(json: &[u8]) -> Option<(String, Value)> {
    let all: Map<String, Value> = serde_json::from_slice(json).ok()?;
    let id = all.get("Id")?.as_str()?.to_owned();
    let kept: Map<String, Value> = all.into_iter().filter(|(k, _)| KEPT.contains(&k.as_str())).collect();
    Some((id, Value::Object(kept)))
}

/// The archived versions of the findings `previous` had and `accepted` has not, stamped
/// `scanned` (the new report's scan time).
pub fn archived(previous: &State, accepted: &HashSet<&str>, scanned: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (id, kept) in &previous.findings {
        if accepted.contains(id.as_str()) {
            continue;
        }
        let mut f = kept.clone();
        f["RecordState"] = "ARCHIVED".into();
        f["UpdatedAt"] = scanned.into();
        if let Some(compliance) = f.get_mut("Compliance").and_then(Value::as_object_mut) {
            compliance.insert("Status".into(), "PASSED".into());
        }
        out.push(f);
    }
    out
}

fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The scope's state file.
pub fn state_path(dir: &Path, scope: &str) -> PathBuf {
    dir.join(format!("{}.json", digest(scope)))
}

/// The previous state of `scope`; empty when there is none.
pub fn load(dir: &Path, scope: &str) -> std::io::Result<State> {
    match std::fs::read(state_path(dir, scope)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(State { scope: scope.into(), ..State::default() })
        }
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", path.file_name().unwrap_or_default().to_string_lossy()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// After a report of `scope` was delivered with `accepted` findings (Id, kept fields): writes the
/// archive file for what disappeared into `spool` (if anything did), then the new state. Returns
/// how many findings were archived.
pub fn resolve(
    state_dir: &Path,
    spool: &Path,
    scope: &Scope,
    accepted: Vec<(String, Value)>,
) -> std::io::Result<usize> {
    std::fs::create_dir_all(state_dir)?;
    let previous = load(state_dir, &scope.key)?;
    let ids: HashSet<&str> = accepted.iter().map(|(id, _)| id.as_str()).collect();
    let gone = archived(&previous, &ids, &scope.scanned);
    if !gone.is_empty() {
        let mut text = Vec::new();
        for f in &gone {
            serde_json::to_writer(&mut text, f).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        let name = format!("archive-{}-{}.ndjson", digest(&scope.key), digest(&scope.scanned));
        write_atomic(&spool.join(name), &text)?;
    }
    let state = State {
        scope: scope.key.clone(),
        scanned: scope.scanned.clone(),
        findings: accepted.into_iter().collect(),
    };
    write_atomic(
        &state_path(state_dir, &scope.key),
        &serde_json::to_vec(&state).map_err(std::io::Error::other)?,
    )?;
    Ok(gone.len())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A temporary directory with a state directory (made on first use) and a spool.
    pub(crate) fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (state_dir, spool) = (dir.path().join("state"), dir.path().join("spool"));
        std::fs::create_dir(&spool).unwrap();
        (dir, state_dir, spool)
    }

    fn state(ids: &[&str]) -> State {
        State {
            scope: "trivy|app|image".into(),
            scanned: "2026-11-01T00:00:00Z".into(),
            findings: ids.iter().map(|id| (id.to_string(), json!({"Id": id, "UpdatedAt": "old"}))).collect(),
        }
    }

    #[test]
    fn what_disappeared_is_archived_with_the_new_scan_time() {
        let previous = state(&["a", "b", "c"]);
        let accepted: HashSet<&str> = ["a", "c", "d"].into();
        let gone = archived(&previous, &accepted, "2026-11-02T00:00:00Z");
        assert_eq!(
            gone,
            vec![json!({"Id": "b", "UpdatedAt": "2026-11-02T00:00:00Z", "RecordState": "ARCHIVED"})]
        );
        assert!(archived(&state(&[]), &accepted, "t").is_empty(), "a first report archives nothing");
    }

    #[test]
    fn a_compliance_check_that_disappeared_passes() {
        let mut previous = state(&[]);
        previous.findings.insert("r".into(), json!({"Id": "r", "Compliance": {"Status": "FAILED"}}));
        let gone = archived(&previous, &HashSet::new(), "t");
        assert_eq!(gone[0]["Compliance"]["Status"], "PASSED");
    }

    #[test]
    fn kept_fields_are_few() {
        let (id, kept) =
            keep(br#"{"Id":"x","Title":"t","ProductFields":{"big":"..."},"Note":{"Text":"n"},"Severity":{"Label":"LOW"}}"#)
                .unwrap();
        assert_eq!(id, "x");
        assert_eq!(kept, json!({"Id": "x", "Title": "t", "Severity": {"Label": "LOW"}}));
    }

    #[test]
    fn a_crash_before_the_state_is_written_rewrites_the_same_archive_file() {
        let (_dir, state_dir, spool) = dirs();
        let scope = |t: &str| Scope { key: "grype|img".into(), scanned: t.into() };
        let f = |id: &str| (id.to_owned(), json!({"Id": id}));
        resolve(&state_dir, &spool, &scope("t1"), vec![f("a"), f("b")]).unwrap();
        let before_b = std::fs::read(state_path(&state_dir, "grype|img")).unwrap();
        resolve(&state_dir, &spool, &scope("t2"), vec![f("a")]).unwrap();
        let first: Vec<_> = std::fs::read_dir(&spool).unwrap().map(|e| e.unwrap().path()).collect();
        let bytes = std::fs::read(&first[0]).unwrap();
        // As if the process died after the archive file and before the new state: B again.
        std::fs::write(state_path(&state_dir, "grype|img"), before_b).unwrap();
        resolve(&state_dir, &spool, &scope("t2"), vec![f("a")]).unwrap();
        let again: Vec<_> = std::fs::read_dir(&spool).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(again, first, "the same file name");
        assert_eq!(
            std::fs::read(&again[0]).unwrap(),
            bytes,
            "the same content and UpdatedAt: ignored as stale"
        );
    }

    /// The store holds one file per scope, the last report's: its size depends on the scopes,
    /// not on how many reports came. 10,000 scopes: `cargo test --lib lifecycle -- --ignored`.
    fn size_after_two_rounds(scopes: usize) -> (usize, u64, u64) {
        let (_dir, state_dir, spool) = dirs();
        let size = || -> u64 {
            std::fs::read_dir(&state_dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
        };
        let findings = |round: usize| -> Vec<(String, Value)> {
            (0..10)
                .map(|i| {
                    (format!("f{:03}", i + round), json!({"Id": format!("f{:03}", i + round), "Title": "t"}))
                })
                .collect()
        };
        for s in 0..scopes {
            let scope = Scope { key: format!("trivy|app-{s}|image"), scanned: "t1".into() };
            resolve(&state_dir, &spool, &scope, findings(0)).unwrap();
        }
        let first = size();
        for s in 0..scopes {
            let scope = Scope { key: format!("trivy|app-{s}|image"), scanned: "t2".into() };
            resolve(&state_dir, &spool, &scope, findings(1)).unwrap();
        }
        (std::fs::read_dir(&state_dir).unwrap().count(), first, size())
    }

    #[test]
    fn the_store_is_one_file_per_scope_whatever_the_reports() {
        let (files, first, second) = size_after_two_rounds(200);
        assert_eq!(files, 200);
        assert_eq!(first, second, "a second round of reports replaces, never adds");
    }

    #[test]
    #[ignore = "long: 10,000 scopes, 20,000 synced writes"]
    fn ten_thousand_scopes() {
        let (files, first, second) = size_after_two_rounds(10_000);
        eprintln!("10,000 scopes of 10 findings: {files} files, {first} bytes, then {second} bytes");
        assert_eq!((files, first), (10_000, second));
    }

    #[test]
    fn resolve_writes_the_archive_then_the_state() {
        let (_dir, state_dir, spool) = dirs();
        let scope = |t: &str| Scope { key: "trivy|app|image".into(), scanned: t.into() };
        let f = |id: &str| (id.to_owned(), json!({"Id": id}));
        assert_eq!(resolve(&state_dir, &spool, &scope("t1"), vec![f("a"), f("b"), f("c")]).unwrap(), 0);
        assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
        assert_eq!(resolve(&state_dir, &spool, &scope("t2"), vec![f("a"), f("c"), f("d")]).unwrap(), 1);
        let files: Vec<_> = std::fs::read_dir(&spool).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1);
        let line: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
        assert_eq!((line["Id"].as_str(), line["RecordState"].as_str()), (Some("b"), Some("ARCHIVED")));
        assert_eq!(load(&state_dir, "trivy|app|image").unwrap().findings.len(), 3);
    }
}
