//! Deduplication memory shared by every runner on a NATS: for each function with a dedup window, a stream
//! `RIPOSTE_DEDUP_<function>` on `riposte.dedup.<function>.<key hash>` whose `max_age` is the window.
//!
//! Claiming a key is one publish with `Nats-Expected-Last-Subject-Sequence: 0` (create-only, as a KV create
//! does): the server stores it only when no message on that key's subject is left, so exactly one runner
//! wins, and the message expiring with the stream's `max_age` opens the key again after the window
//! (nats-server 2.9 has no per-message TTL, so the window is the stream's). A claim can be released (its
//! subject purged) when the reaction that holds it ends without success, so a later duplicate runs.
//!
//! Why not a stream with a duplicate window and `Nats-Msg-Id` = the key: the same one publish per alert, but
//! a message id cannot be withdrawn, so a failed first reaction would swallow every duplicate of the window.

use crate::nats::streams::{Doing, StreamError};
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream};
use std::time::Duration;

/// Subjects of the dedup streams.
pub const DEDUP_PREFIX: &str = "riposte.dedup";

/// The dedup stream of a function.
pub fn stream_name(function: &str) -> String {
    format!("RIPOSTE_DEDUP_{function}")
}

/// Whose claims a key belongs to: a dry run's deployment and an armed one keep separate memories, so arming a
/// function never inherits the keys its dry run claimed (the first real reaction after arming runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// The function acts (`--dry-run` off).
    Armed,
    /// The function records instead of acting.
    DryRun,
}

/// The subject that holds one key of a function: the key's sha256 (for a dry run, of the key behind the word
/// `dry-run`), so any key text makes a valid token and the two memories never share a subject.
pub fn key_subject(function: &str, key: &str, memory: Memory) -> String {
    let hashed = match memory {
        Memory::Armed => crate::model::digest::digest(key.as_bytes()),
        Memory::DryRun => crate::model::digest::digest(format!("dry-run\n{key}").as_bytes()),
    };
    format!("{DEDUP_PREFIX}.{function}.{}", &hashed[..32])
}

/// Creates the function's dedup stream, or sets its window when it changed.
pub async fn ensure(js: &jetstream::Context, function: &str, window: Duration) -> Result<(), StreamError> {
    let name = stream_name(function);
    let config = stream::Config {
        name: name.clone(),
        description: Some(format!("riposte dedup keys of function {function}")),
        subjects: vec![format!("{DEDUP_PREFIX}.{function}.*")],
        max_age: window,
        // The server's own duplicate window may not exceed max_age; ours is the subject check.
        duplicate_window: window.min(Duration::from_secs(120)),
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    let mut existing = match js.get_stream(&name).await {
        Ok(s) => s,
        Err(_) => {
            return js.get_or_create_stream(config).await.map(|_| ()).doing(format!("creating stream {name}"));
        }
    };
    let info = existing.info().await.doing(format!("reading stream {name}"))?;
    if info.config.max_age != window {
        let mut updated = info.config.clone();
        updated.max_age = config.max_age;
        updated.duplicate_window = config.duplicate_window;
        js.update_stream(updated).await.doing(format!("setting the dedup window of {function}"))?;
    }
    Ok(())
}

/// Deletes a function's dedup stream (absent is fine, and then nothing but its info is asked: a deployer
/// without the right to delete dedup streams can deploy functions without dedup).
pub async fn delete(js: &jetstream::Context, function: &str) -> Result<(), StreamError> {
    match js.get_stream(stream_name(function)).await {
        Ok(_) => {}
        Err(e) if e.to_string().contains("not found") => return Ok(()),
        Err(e) => return Err(StreamError::new(format!("reading the dedup stream of {function}"), e)),
    }
    match js.delete_stream(stream_name(function)).await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("not found") => Ok(()),
        Err(e) => Err(StreamError::new(format!("deleting the dedup stream of {function}"), e)),
    }
}

/// The outcome of claiming a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This alert holds the key for the window: run it.
    First,
    /// Another alert holds it: this one is a duplicate.
    Duplicate,
}

/// Claims `subject` (from [`key_subject`]) for the alert `uuid`.
pub async fn claim(js: &jetstream::Context, subject: &str, uuid: &str) -> Result<Claim, StreamError> {
    let publish = PublishMessage::build().payload(uuid.to_owned().into()).expected_last_subject_sequence(0);
    let ack = js.send_publish(subject.to_owned(), publish).await.doing("claiming a dedup key")?;
    match ack.await {
        Ok(_) => Ok(Claim::First),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(Claim::Duplicate),
        Err(e) => Err(StreamError::new("claiming a dedup key", e)),
    }
}

/// Releases a claim, so the next alert with the key runs.
pub async fn release(js: &jetstream::Context, function: &str, subject: &str) -> Result<(), StreamError> {
    let stream = js.get_stream_no_info(stream_name(function)).await.doing("releasing a dedup key")?;
    stream.purge().filter(subject).await.map(|_| ()).doing("releasing a dedup key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_runs_keys_never_share_a_subject_with_the_armed_deployments() {
        let armed = key_subject("f", "rule\noutput", Memory::Armed);
        let dry = key_subject("f", "rule\noutput", Memory::DryRun);
        assert_ne!(armed, dry);
        assert_eq!(
            armed,
            format!("{DEDUP_PREFIX}.f.{}", &crate::model::digest::digest(b"rule\noutput")[..32]),
            "armed keys as before"
        );
        assert!(dry.starts_with("riposte.dedup.f.") && dry.len() == armed.len(), "the same stream holds both");
    }
}
