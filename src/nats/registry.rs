//! The registry: deployed functions and triggers in a JetStream KV bucket (`functions.<name>`,
//! `triggers.<name>`), component binaries in an object store keyed by their sha256. Every runner watches the
//! bucket, so a deploy on any machine reaches the whole fleet without a restart.
//!
//! Secret setting values are stored sealed ([`crate::secrets::seal`]): [`Registry::put_function`] seals them with the
//! settings key, and the watch a runner reads opens them; [`Registry::functions`] and [`Registry::function`]
//! return functions as stored (values sealed), which is all listings, triggers and export need. A reader of the
//! bucket without the key sees setting names and ciphertext.
//!
//! nats-server 2.9 answers the account-info request that async-nats' `create_key_value` /
//! `create_object_store` make in a shape the client rejects, so the backing streams (`KV_<bucket>`,
//! `OBJ_<bucket>`) are created here with the same settings and opened with `get_key_value` / `get_object_store`.

use crate::model::function::Function;
use crate::model::trigger::Trigger;
use crate::nats::streams::{Doing, StreamError, StreamSettings};
use crate::secrets::seal::{SealError, SettingsKeys};
use async_nats::jetstream::{self, kv, object_store::ObjectStore, stream};
use futures::{Stream, StreamExt};
use std::collections::BTreeMap;
use tokio::io::AsyncReadExt;

/// The KV bucket of definitions.
pub const REGISTRY_BUCKET: &str = "riposte-registry";
/// The object store of component binaries.
pub const ARTIFACT_BUCKET: &str = "riposte-artifacts";

/// The registry of one NATS account.
#[derive(Clone)]
pub struct Registry {
    js: jetstream::Context,
    kv: kv::Store,
    objects: ObjectStore,
    keys: Option<SettingsKeys>,
}

/// One change seen by a watcher: a definition put (`Some`) or deleted (`None`).
#[derive(Debug, Clone)]
pub enum Change {
    /// A function put (its settings opened) or deleted.
    Function(String, Option<Box<Function>>),
    Trigger(String, Option<Trigger>),
    /// A function put whose settings this registry's keys cannot open (no key, another one, or sealed by an
    /// earlier riposte): it cannot run here; its alerts wait for a runner that can, or a redeploy.
    Refused(String, std::sync::Arc<SealError>),
    /// A function put (as stored) whose settings the key does not open for its code: its artifact or manifest is
    /// not what they were sealed for (the entry was rewritten without the key), or they were altered. No runner
    /// can open them, so each alert of it is recorded as failed with the error until it is deployed again.
    Unopened(Box<Function>, std::sync::Arc<SealError>),
}

impl Registry {
    /// Opens the registry, creating its bucket and object store (one replica) when missing.
    pub async fn open(js: &jetstream::Context) -> Result<Registry, StreamError> {
        Registry::open_with(js, &StreamSettings::default()).await
    }

    /// Opens the registry, creating its bucket and object store when missing, replicated as `settings` asks
    /// (existing ones are checked as [`crate::nats::streams::ensure_with`] checks the streams).
    pub async fn open_with(js: &jetstream::Context, settings: &StreamSettings) -> Result<Registry, StreamError> {
        let kv_stream = crate::nats::streams::kv_stream_config(REGISTRY_BUCKET, "riposte functions and triggers");
        crate::nats::streams::ensure_stream(js, crate::nats::streams::Subjects::Keep, kv_stream, settings).await?;
        let obj_stream = stream::Config {
            name: format!("OBJ_{ARTIFACT_BUCKET}"),
            description: Some("riposte component binaries by sha256".into()),
            subjects: vec![format!("$O.{ARTIFACT_BUCKET}.C.>"), format!("$O.{ARTIFACT_BUCKET}.M.>")],
            allow_rollup: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        crate::nats::streams::ensure_stream(js, crate::nats::streams::Subjects::Keep, obj_stream, settings).await?;
        crate::nats::fleet::open_with(js, settings).await?;
        let kv = js.get_key_value(REGISTRY_BUCKET).await.doing("opening the registry bucket")?;
        let objects = js.get_object_store(ARTIFACT_BUCKET).await.doing("opening the artifact store")?;
        Ok(Registry { js: js.clone(), kv, objects, keys: None })
    }

    /// Opens the registry only when it exists (nothing is created): for read-only checks.
    pub async fn existing(js: &jetstream::Context) -> Result<Option<Registry>, StreamError> {
        if js.get_stream(format!("KV_{REGISTRY_BUCKET}")).await.is_err() {
            return Ok(None);
        }
        let kv = js.get_key_value(REGISTRY_BUCKET).await.doing("opening the registry bucket")?;
        let objects = js.get_object_store(ARTIFACT_BUCKET).await.doing("opening the artifact store")?;
        Ok(Some(Registry { js: js.clone(), kv, objects, keys: None }))
    }

    /// The same registry, sealing and opening secret setting values with `keys` (without keys, a function with
    /// secret settings can be listed and given triggers, but neither deployed nor run).
    pub fn with_keys(mut self, keys: Option<SettingsKeys>) -> Registry {
        self.keys = keys;
        self
    }

    /// The settings keys it seals and opens with.
    pub fn keys(&self) -> Option<&SettingsKeys> {
        self.keys.as_ref()
    }

    /// `function` as stored, its secret setting values opened with this registry's keys.
    pub fn open_settings(&self, function: Function) -> Result<Function, SealError> {
        crate::secrets::seal::open_settings(self.keys.as_ref(), function)
    }

    /// The JetStream context it uses.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Every deployed function, by name, as stored (secret setting values sealed).
    pub async fn functions(&self) -> Result<BTreeMap<String, Function>, StreamError> {
        self.all("functions").await
    }

    /// Every trigger, by name.
    pub async fn triggers(&self) -> Result<BTreeMap<String, Trigger>, StreamError> {
        self.all("triggers").await
    }

    /// One function, as stored (secret setting values sealed; [`Registry::open_settings`] opens them).
    pub async fn function(&self, name: &str) -> Result<Option<Function>, StreamError> {
        self.one(&format!("functions.{name}")).await
    }

    /// When the current deployment of a function was written (the server's time of its registry entry), or
    /// `None` when it is not deployed. Each deploy, an update included, starts a new deployment: results
    /// stored since then are its own (`function logs` shows those by default).
    pub async fn deployed_at(&self, name: &str) -> Result<Option<time::OffsetDateTime>, StreamError> {
        let key = format!("functions.{name}");
        let entry = self.kv.entry(&key).await.doing(format!("reading {key}"))?;
        Ok(entry.filter(|e| matches!(e.operation, kv::Operation::Put)).map(|e| e.created))
    }

    /// One trigger.
    pub async fn trigger(&self, name: &str) -> Result<Option<Trigger>, StreamError> {
        self.one(&format!("triggers.{name}")).await
    }

    /// Deploys (or replaces) a function, its secret setting values sealed with this registry's keys (refused
    /// without keys when it has any). Its artifact must already be stored.
    pub async fn put_function(&self, function: &Function) -> Result<(), StreamError> {
        let stored = crate::secrets::seal::seal_settings(self.keys.as_ref(), function)
            .doing(format!("saving function {}", function.name))?;
        let value = serde_json::to_vec(&stored).expect("a function serializes");
        self.kv
            .put(format!("functions.{}", function.name), value.into())
            .await
            .map(|_| ())
            .doing(format!("saving function {}", function.name))
    }

    /// Creates (or replaces) a trigger.
    pub async fn put_trigger(&self, trigger: &Trigger) -> Result<(), StreamError> {
        let value = serde_json::to_vec(trigger).expect("a trigger serializes");
        self.kv
            .put(format!("triggers.{}", trigger.name), value.into())
            .await
            .map(|_| ())
            .doing(format!("saving trigger {}", trigger.name))
    }

    /// Removes a function's definition.
    pub async fn delete_function(&self, name: &str) -> Result<(), StreamError> {
        self.kv.delete(format!("functions.{name}")).await.doing(format!("deleting function {name}"))
    }

    /// Removes a trigger's definition.
    pub async fn delete_trigger(&self, name: &str) -> Result<(), StreamError> {
        self.kv.delete(format!("triggers.{name}")).await.doing(format!("deleting trigger {name}"))
    }

    /// Stores a component binary under its sha256 (once) and returns the digest.
    pub async fn put_artifact(&self, bytes: &[u8]) -> Result<String, StreamError> {
        let digest = crate::model::digest::digest(bytes);
        if self.objects.info(&digest).await.is_ok() {
            return Ok(digest);
        }
        let mut reader = bytes;
        self.objects.put(digest.as_str(), &mut reader).await.doing(format!("storing component {}", &digest[..12]))?;
        Ok(digest)
    }

    /// A component binary by digest; checked against it.
    pub async fn artifact(&self, digest: &str) -> Result<Vec<u8>, StreamError> {
        let what = format!("fetching component {} from the artifact store", &digest[..digest.len().min(12)]);
        let mut object = self.objects.get(digest).await.doing(what.clone())?;
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.doing(what.clone())?;
        if crate::model::digest::digest(&bytes) != digest {
            return Err(StreamError::new(what, "the stored bytes do not match their digest"));
        }
        Ok(bytes)
    }

    /// Every current definition, then every change as it happens; functions with their settings opened.
    pub async fn watch(&self) -> Result<impl Stream<Item = Result<Change, StreamError>>, StreamError> {
        let watch = self.kv.watch_with_history(">").await.doing("watching the registry")?;
        let keys = self.keys.clone();
        Ok(watch.filter_map(move |entry| {
            let keys = keys.clone();
            async move {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => return Some(Err(StreamError::new("watching the registry", e))),
                };
                let deleted = !matches!(entry.operation, kv::Operation::Put);
                let (kind, name) = entry.key.split_once('.')?;
                let change = match kind {
                    "functions" if deleted => Change::Function(name.to_owned(), None),
                    "functions" => match serde_json::from_slice(&entry.value) {
                        Ok(f) => match crate::secrets::seal::open_settings(keys.as_ref(), Function::clone(&f)) {
                            Ok(f) => Change::Function(name.to_owned(), Some(Box::new(f))),
                            Err(e @ SealError::Corrupt { .. }) => Change::Unopened(Box::new(f), std::sync::Arc::new(e)),
                            Err(e) => Change::Refused(name.to_owned(), std::sync::Arc::new(e)),
                        },
                        Err(e) => return Some(Err(StreamError::new(format!("registry entry {}", entry.key), e))),
                    },
                    "triggers" if deleted => Change::Trigger(name.to_owned(), None),
                    "triggers" => match serde_json::from_slice(&entry.value) {
                        Ok(t) => Change::Trigger(name.to_owned(), Some(t)),
                        Err(e) => return Some(Err(StreamError::new(format!("registry entry {}", entry.key), e))),
                    },
                    _ => return None,
                };
                Some(Ok(change))
            }
        }))
    }

    async fn one<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StreamError> {
        match self.kv.get(key).await.doing(format!("reading {key}"))? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).doing(format!("registry entry {key}")),
            None => Ok(None),
        }
    }

    async fn all<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Result<BTreeMap<String, T>, StreamError> {
        let mut out = BTreeMap::new();
        for key in crate::nats::streams::kv_keys(&self.kv, &format!("{kind}.")).await? {
            if let Some(name) = key.strip_prefix(kind).and_then(|k| k.strip_prefix('.')) {
                if let Some(value) = self.one(&key).await? {
                    out.insert(name.to_owned(), value);
                }
            }
        }
        Ok(out)
    }
}
