//! The `object-store` backend: a directory on the runner's disk, one subdirectory per function (its namespace).
//! The guest gets back the key it gave, never a host path.

use super::{CallResult, ObjectStore};
use crate::model::wit::CallError;
use std::path::PathBuf;

/// Objects as files below one directory: `<root>/<function>/<key>`.
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store rooted at `root` (created on first put).
    pub fn new(root: PathBuf) -> DirStore {
        DirStore { root }
    }
}

/// Whether `path` is a relative path of plain parts (no empty part, no `.` or `..`).
fn plain_relative(path: &str) -> bool {
    !path.is_empty() && !path.split('/').any(|part| part.is_empty() || part == "." || part == "..")
}

#[async_trait::async_trait]
impl ObjectStore for DirStore {
    async fn put(&self, function: &str, key: &str, data: Vec<u8>, _content_type: Option<String>) -> CallResult<String> {
        if !plain_relative(key) {
            return Err(super::rejected(
                "BadRequest",
                format!("object key {key:?} must be a relative path without '.' or '..'"),
                400,
            ));
        }
        if !plain_relative(function) || function.contains('/') {
            return Err(CallError::Failed(format!("object store: {function:?} is not a function name")));
        }
        let path = self.root.join(function).join(key);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| CallError::Failed(format!("object store: {e}")))?;
        }
        tokio::fs::write(&path, data).await.map_err(|e| CallError::Failed(format!("object store: {e}")))?;
        Ok(key.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_function_has_its_own_namespace_and_gets_back_only_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path().to_owned());
        assert_eq!(store.put("a", "x/report.txt", b"from a".to_vec(), None).await.unwrap(), "x/report.txt");
        assert_eq!(store.put("b", "x/report.txt", b"from b".to_vec(), None).await.unwrap(), "x/report.txt");
        assert_eq!(std::fs::read(dir.path().join("a/x/report.txt")).unwrap(), b"from a");
        assert_eq!(std::fs::read(dir.path().join("b/x/report.txt")).unwrap(), b"from b");
        for bad in ["", "/etc/passwd", "../b/x", "x/../../b", "x//y"] {
            assert!(store.put("a", bad, Vec::new(), None).await.is_err(), "{bad:?}");
        }
    }
}
