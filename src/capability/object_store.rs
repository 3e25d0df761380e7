//! The `object-store` backend: a directory on the runner's disk.

use super::{CallResult, ObjectStore};
use crate::wit::CallError;
use std::path::PathBuf;

/// Objects as files below one directory.
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store rooted at `root` (created on first put).
    pub fn new(root: PathBuf) -> DirStore {
        DirStore { root }
    }
}

#[async_trait::async_trait]
impl ObjectStore for DirStore {
    async fn put(&self, key: &str, data: Vec<u8>, _content_type: Option<String>) -> CallResult<String> {
        if key.is_empty() || key.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
            return Err(super::rejected(
                "BadRequest",
                format!("object key {key:?} must be a relative path without '.' or '..'"),
                400,
            ));
        }
        let path = self.root.join(key);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| CallError::Failed(format!("object store: {e}")))?;
        }
        tokio::fs::write(&path, data).await.map_err(|e| CallError::Failed(format!("object store: {e}")))?;
        Ok(format!("file://{}", path.display()))
    }
}
