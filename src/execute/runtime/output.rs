//! Where a guest's stdout and stderr go: a buffer per instance that keeps the last `GUEST_OUTPUT_BYTES` of what
//! the guest wrote since the last [`GuestOutput::take`] and counts the rest. It never refuses a write.
//!
//! The buffer keeps a margin beyond that bound (the function's longest secret form, see
//! [`Secrets::longest`]) and [`GuestOutput::take`] redacts before it cuts to the bound: a secret that
//! straddles the cut is recognised in the margin and left out whole, never half.
//!
//! wasmtime-wasi's `MemoryOutputPipe` has a fixed capacity for the life of the instance and traps the guest
//! once it is full, so a warm instance that prints a little per alert died after ~64 KiB in all (a Python
//! `print` of 10 KB traps on the 7th alert). Here the runtime takes the output after every alert (it becomes
//! that alert's log lines) and old bytes are dropped, not refused.

use crate::model::limits::GUEST_OUTPUT_BYTES;
use crate::secrets::redact::Secrets;
use bytes::Bytes;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// What a guest wrote to stdout and stderr during one alert: the last bytes (redacted), and how many came
/// before them.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Captured {
    pub text: String,
    pub dropped: u64,
}

#[derive(Default)]
struct Buffer {
    kept: VecDeque<u8>,
    dropped: u64,
}

/// The stdout and stderr of one instance (clones share the buffer).
#[derive(Clone)]
pub(crate) struct GuestOutput {
    /// Bytes a take returns at most.
    keep: usize,
    /// Bytes the buffer holds: `keep` and a margin read only to recognise a secret the cut splits.
    capacity: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl GuestOutput {
    /// A buffer keeping the last `GUEST_OUTPUT_BYTES`, and `margin` more bytes before them until a take.
    pub fn new(margin: usize) -> GuestOutput {
        GuestOutput::with_capacity(GUEST_OUTPUT_BYTES, margin)
    }

    /// A buffer keeping the last `keep` bytes, and `margin` more bytes before them until a take.
    pub fn with_capacity(keep: usize, margin: usize) -> GuestOutput {
        GuestOutput { keep, capacity: keep + margin, buffer: Arc::default() }
    }

    /// What was written since the last take (its last `keep` bytes), `secrets` redacted, emptying the buffer.
    pub fn take(&self, secrets: &Secrets) -> Captured {
        let Buffer { kept, dropped } = std::mem::take(&mut *self.buffer.lock().unwrap());
        let bytes: Vec<u8> = kept.into();
        let (text, cut) = secrets.redact_tail(&bytes, self.keep);
        Captured { text, dropped: dropped + cut as u64 }
    }

    fn append(&self, bytes: &[u8]) {
        let mut buf = self.buffer.lock().unwrap();
        // Only the last `capacity` bytes of this write can stay.
        let skip = bytes.len().saturating_sub(self.capacity);
        let bytes = &bytes[skip..];
        let over = (buf.kept.len() + bytes.len()).saturating_sub(self.capacity);
        buf.kept.drain(..over);
        buf.kept.extend(bytes);
        buf.dropped += (skip + over) as u64;
    }
}

/// How much a guest may write in one call (wasi's usual permit; the buffer itself never fills).
const PERMIT: usize = 64 * 1024;

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_counts_the_rest_and_never_refuses() {
        let out = GuestOutput::with_capacity(10, 0);
        let none = Secrets::default();
        let mut stream = out.clone();
        for _ in 0..1000 {
            assert_eq!(stream.check_write().unwrap(), PERMIT);
            stream.write(Bytes::from_static(b"0123456789abc")).unwrap();
        }
        let got = out.take(&none);
        assert_eq!(got.text, "3456789abc");
        assert_eq!(got.dropped, 13_000 - 10);
        assert_eq!(out.take(&none), Captured::default(), "a take empties it");
        stream.write(Bytes::from_static(b"ab")).unwrap();
        stream.write(Bytes::from_static(b"cd")).unwrap();
        assert_eq!(out.take(&none), Captured { text: "abcd".into(), dropped: 0 });
    }

    #[test]
    fn a_secret_straddling_the_cut_leaves_no_part_of_itself() {
        let secret = "Canary-Tok3n-Straddling";
        let secrets = Secrets::new([secret]);
        for at in 1..secret.len() {
            // The last GUEST_OUTPUT_BYTES begin `at` bytes into the secret, written in two pieces.
            let out = GuestOutput::new(secrets.longest());
            let mut stream = out.clone();
            let tail = "x".repeat(GUEST_OUTPUT_BYTES - (secret.len() - at));
            stream.write(Bytes::from(format!("{}{secret}", "y".repeat(100)))).unwrap();
            stream.write(Bytes::from(tail.clone())).unwrap();
            let got = out.take(&secrets);
            assert_eq!(got.text, tail, "cut {at} bytes into the secret");
            assert_eq!(got.dropped as usize, 100 + at, "the bytes before the cut are counted");
            let whole = GuestOutput::new(secrets.longest());
            whole.clone().write(Bytes::from(format!("{secret}{tail}"))).unwrap();
            assert!(whole.take(&secrets).text.ends_with(&tail));
        }
    }
}
