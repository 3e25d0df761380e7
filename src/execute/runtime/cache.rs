//! The compile cache: a component is compiled once per content digest and engine configuration and kept on
//! disk as a `.cwasm`; later loads map that file (`deserialize_file`) instead of compiling.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::Component;
use wasmtime::Engine;

/// A [`Hasher`] feeding SHA-256, so a [`Hash`] value gives a stable cryptographic digest.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Not used: the digest is read from the `Sha256` itself.
    fn finish(&self) -> u64 {
        0
    }
}

/// Compiled components on disk.
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    compiles: AtomicU64,
    hits: AtomicU64,
}

impl CompileCache {
    /// A cache in `dir` for artifacts of this engine.
    pub fn new(dir: PathBuf, engine: &Engine) -> CompileCache {
        // SHA-256 of what makes compiled code usable by this engine (wasmtime's version, the target, the engine
        // configuration: `precompile_compatibility_hash`) and riposte's version: a key that means the same in
        // every build, unlike `DefaultHasher`, whose output may change between Rust releases. The component
        // itself is keyed by its own SHA-256 digest in the file name.
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        CompileCache {
            dir,
            engine_key: hex::encode(&hasher.0.finalize()[..8]),
            compiles: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// How many components this cache compiled (rather than loaded) since it was made.
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// How many components this cache loaded from disk (rather than compiled) since it was made.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Where the compiled form of a component with this digest lives.
    pub fn path_for(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// Loads the component, compiling it only when no usable compiled form is on disk.
    /// Returns the component and whether it had to be compiled.
    pub fn load(&self, engine: &Engine, bytes: &[u8], digest: &str) -> wasmtime::Result<(Component, bool)> {
        let path = self.path_for(digest);
        if path.exists() {
            // SAFETY: files in the cache directory are written only by `store` below, from
            // `Engine::precompile_component`, and keyed by this engine's compatibility hash.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, false));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "compiled component unusable; recompiling")
                }
            }
        }
        self.compiles.fetch_add(1, Ordering::Relaxed);
        let compiled = engine.precompile_component(bytes)?;
        if let Err(e) = store(&self.dir, &path, &compiled) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the compile cache; the next start compiles again");
            // SAFETY: `compiled` was produced by this engine just above.
            return Ok((unsafe { Component::deserialize(engine, &compiled)? }, true));
        }
        // SAFETY: as above; mapping the file lets instances share its pages copy-on-write.
        Ok((unsafe { Component::deserialize_file(engine, &path)? }, true))
    }
}

fn store(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
