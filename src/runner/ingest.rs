//! The HTTP alert input (`riposte run --http-addr`): Falco's own `http_output` and falcosidekick's `webhook` and
//! `talon` outputs POST alerts here, and each one goes into the same durable alert stream falcosidekick's NATS
//! output feeds, on the subject falcosidekick would give it (`falco.<priority>.<rule slug>`).
//!
//! At least once, never silently lost: a request is answered 200 only after JetStream stored the alert (its
//! `Nats-Msg-Id` is the alert's uuid, or, for Falco's bodies that have none, a digest of its time, hostname, rule
//! and output, so a resend is deduplicated by the stream); 503 with `Retry-After` when NATS cannot take it now, so
//! the sender retries; 400 for a body that is not an alert (one line saying why), 413 over [`MAX_BODY_BYTES`],
//! 405/415/404 as HTTP says.
//!
//! Authenticated by default: bearer tokens from a file (several, for rotation; compared in constant time)
//! and/or TLS client certificates checked against a CA; serving anyone needs `--http-allow-anonymous`.
//! Bounded like the probes endpoint: accepting never waits ([`MAX_CONNECTIONS`]), a header must arrive within
//! [`HEADER_TIMEOUT`], a body within [`BODY_TIMEOUT`], at most [`MAX_PUBLISHING`] alerts wait on JetStream at once
//! (another is answered 503 at once), so a flood of slow or busy clients holds sockets, not the runner: alerts
//! that arrive through NATS keep flowing.

use crate::model::alert::Alert;
use crate::runner::metrics::HttpInputMetrics;
use crate::runner::shutdown::Shutdown;
use async_nats::jetstream;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;

/// The largest alert body taken (Falco alerts are a few KiB; NATS' default message bound is 1 MiB).
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// Connections open at once; one more is closed at once (accepting never waits).
pub const MAX_CONNECTIONS: usize = 1024;
/// Time a client has to send a request's whole header (also how long an idle keep-alive connection may wait).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's body once its header arrived.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Alerts waiting on JetStream's acknowledgement at once; another request is answered 503 at once.
pub const MAX_PUBLISHING: usize = 256;
/// Time JetStream has to acknowledge an alert before the request is answered 503 (retry).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Tokens in a token file.
pub const MAX_TOKENS: usize = 64;
/// `Retry-After` of a 503, in seconds.
const RETRY_AFTER_SECONDS: &str = "5";

/// How the input authenticates its clients, from `--http-*` flags.
#[derive(Debug, Clone, Default)]
pub struct IngestConfig {
    /// `host:port` to listen on (port 0 picks one).
    pub addr: String,
    /// A file of bearer tokens, one per line (blank lines and `#` comments ignored).
    pub token_file: Option<PathBuf>,
    /// Serve without any authentication (falcosidekick's `talon` output cannot send credentials).
    pub allow_anonymous: bool,
    /// The server certificate (PEM chain) and key: TLS on.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) client certificates must chain to; needs TLS.
    pub client_ca: Option<PathBuf>,
}

impl IngestConfig {
    /// Checks what [`Ingest::start`] would: authentication given, token file private and not empty, certificates
    /// and keys readable and matching. Commands call it before they connect anywhere.
    pub fn check(&self) -> Result<(), IngestError> {
        Auth::load(self)?;
        tls_config(self)?;
        Ok(())
    }
}

/// Why the input could not start. Each says what to give.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(
        "--http-addr needs authentication: give --http-token-file FILE (bearer tokens, e.g. falcosidekick's webhook \
         output with customHeaders Authorization: Bearer …) and/or --http-client-ca FILE (client certificates), or \
         --http-allow-anonymous for falcosidekick's talon output on a network only Falco reaches"
    )]
    NoAuthentication,
    #[error("--http-tls-cert and --http-tls-key go together: give both")]
    HalfTls,
    #[error("--http-client-ca needs TLS: give --http-tls-cert and --http-tls-key too")]
    ClientCaWithoutTls,
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--http-token-file {path} holds no token: write one token per line")]
    NoTokens { path: PathBuf },
    #[error("--http-token-file {path} holds more than {MAX_TOKENS} tokens")]
    TooManyTokens { path: PathBuf },
    #[error(
        "--http-token-file {path} can be read by other users: chmod 600 it (a token in it lets anyone post alerts)"
    )]
    TokenFileOpen { path: PathBuf },
    #[error("{what} {path} is not usable: {why}")]
    Pem { what: &'static str, path: PathBuf, why: String },
    #[error("cannot listen on --http-addr {addr}: {source} (choose another address, e.g. 0.0.0.0:2801)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The input, serving until the shutdown it was given says stop.
pub struct Ingest {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    anonymous: bool,
    tls: bool,
}

impl Ingest {
    /// Checks the configuration (tokens readable and private, certificates usable), binds and serves.
    pub async fn start(
        config: &IngestConfig,
        js: jetstream::Context,
        client: async_nats::Client,
        metrics: HttpInputMetrics,
        shutdown: Shutdown,
    ) -> Result<Ingest, IngestError> {
        let auth = Auth::load(config)?;
        let tls = tls_config(config)?;
        let bind = |source| IngestError::Bind { addr: config.addr.clone(), source };
        let listener = TcpListener::bind(&config.addr).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let anonymous = auth.tokens.is_empty() && config.client_ca.is_none();
        let has_tls = tls.is_some();
        let state = Arc::new(State { js, client, auth, metrics, publishing: Semaphore::new(MAX_PUBLISHING) });
        let task = tokio::spawn(serve(listener, tls.map(tokio_rustls::TlsAcceptor::from), state, shutdown));
        Ok(Ingest { addr, task, anonymous, tls: has_tls })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether anyone who reaches the port may post alerts.
    pub fn anonymous(&self) -> bool {
        self.anonymous
    }

    /// Whether it serves HTTPS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Waits until it stopped.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// The bearer tokens a request may carry (none: tokens are not asked for).
struct Auth {
    tokens: Vec<Vec<u8>>,
}

impl Auth {
    fn load(config: &IngestConfig) -> Result<Auth, IngestError> {
        if config.tls_cert.is_some() != config.tls_key.is_some() {
            return Err(IngestError::HalfTls);
        }
        if config.client_ca.is_some() && config.tls_cert.is_none() {
            return Err(IngestError::ClientCaWithoutTls);
        }
        let Some(path) = &config.token_file else {
            if config.client_ca.is_none() && !config.allow_anonymous {
                return Err(IngestError::NoAuthentication);
            }
            return Ok(Auth { tokens: Vec::new() });
        };
        let read = |source| IngestError::Read { what: "token file", path: path.clone(), source };
        let meta = std::fs::metadata(path).map_err(read)?;
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o044 != 0 {
            return Err(IngestError::TokenFileOpen { path: path.clone() });
        }
        if meta.len() > 64 * 1024 {
            return Err(IngestError::TooManyTokens { path: path.clone() });
        }
        let text = std::fs::read(path).map_err(read)?;
        let text = String::from_utf8_lossy(&text);
        let tokens: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.as_bytes().to_vec())
            .collect();
        if tokens.is_empty() {
            return Err(IngestError::NoTokens { path: path.clone() });
        }
        if tokens.len() > MAX_TOKENS {
            return Err(IngestError::TooManyTokens { path: path.clone() });
        }
        Ok(Auth { tokens })
    }

    /// Why the request may not post, if it may not (401: no or a wrong token).
    fn refuse(&self, req: &Request<hyper::body::Incoming>) -> Option<&'static str> {
        if self.tokens.is_empty() {
            return None;
        }
        let given = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes).unwrap_or_default();
        let Some(token) = given.strip_prefix(b"Bearer ").or_else(|| given.strip_prefix(b"bearer ")) else {
            return Some(
                "no bearer token: send the header Authorization: Bearer <a token of --http-token-file> \
                 (falcosidekick: webhook.customheaders; Falco: http_output has no headers, use a client certificate)\n",
            );
        };
        // Every token is compared, each in time independent of where it differs.
        let matched = self.tokens.iter().fold(false, |found, t| found | constant_time_eq(t, token));
        if matched {
            None
        } else {
            Some("the bearer token is not one of --http-token-file's\n")
        }
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The TLS server configuration, when a certificate is given; client certificates verified with `client_ca`.
fn tls_config(config: &IngestConfig) -> Result<Option<Arc<rustls::ServerConfig>>, IngestError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else { return Ok(None) };
    let pem = |what: &'static str, path: &Path, why: String| IngestError::Pem { what, path: path.to_owned(), why };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| pem("--http-tls-cert", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("--http-tls-cert", cert, "it holds no PEM certificate".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem("--http-tls-key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| pem("--http-tls-cert", cert, e.to_string()))?;
    let builder = match &config.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| pem("--http-client-ca", ca, e.to_string()))? {
                let c = c.map_err(|e| pem("--http-client-ca", ca, e.to_string()))?;
                roots.add(c).map_err(|e| pem("--http-client-ca", ca, e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(pem("--http-client-ca", ca, "it holds no PEM certificate".into()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| pem("--http-client-ca", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key_der)
        .map_err(|e| pem("--http-tls-key", key, format!("it does not fit --http-tls-cert: {e}")))?;
    Ok(Some(Arc::new(config)))
}

struct State {
    js: jetstream::Context,
    client: async_nats::Client,
    auth: Auth,
    metrics: HttpInputMetrics,
    publishing: Semaphore,
}

async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    mut shutdown: Shutdown,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP input: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(client = %peer.ip(), "HTTP input: too many connections, one closed");
            continue;
        }
        let (state, tls, open, mut stop) = (state.clone(), tls.clone(), open.clone(), shutdown.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(state.respond(req).await) }
            });
            let builder = {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(64 * 1024);
                b
            };
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
                        tracing::debug!(client = %peer.ip(), "HTTP input: TLS handshake failed or timed out");
                        open.fetch_sub(1, Ordering::AcqRel);
                        return;
                    };
                    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.wait() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
                    }
                }
                None => {
                    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.wait() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
                    }
                }
            }
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

impl State {
    async fn respond(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let response = self.answer(req).await;
        self.metrics.answered(response.status().as_u16());
        response
    }

    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if path == "/readyz" && (req.method() == Method::GET || req.method() == Method::HEAD) {
            return match self.client.connection_state() {
                async_nats::connection::State::Connected => text(StatusCode::OK, "ready: alerts are accepted\n"),
                _ => unavailable("not ready: NATS is not connected, alerts would be answered 503\n"),
            };
        }
        if path != "/" && path != "/falco" {
            return text(StatusCode::NOT_FOUND, "alerts are posted to / (or /falco)\n");
        }
        if req.method() != Method::POST {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "alerts are posted: use POST\n");
            r.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        if let Some(why) = self.auth.refuse(&req) {
            let mut r = text(StatusCode::UNAUTHORIZED, why);
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let json = ct.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim();
            if !json.eq_ignore_ascii_case("application/json") {
                return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "an alert is JSON: Content-Type: application/json\n");
            }
        }
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return too_large();
        }
        let body =
            match tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), MAX_BODY_BYTES).collect()).await {
                Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time\n"),
                Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return too_large(),
                Ok(Err(_)) => return text(StatusCode::BAD_REQUEST, "the body could not be read\n"),
                Ok(Ok(collected)) => collected.to_bytes(),
            };
        let (subject, id, payload) = match prepare(&body) {
            Ok(p) => p,
            Err(why) => return text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
        };
        let Ok(_permit) = self.publishing.try_acquire() else {
            return unavailable("busy: too many alerts wait on NATS at once; retry\n");
        };
        let publish = async {
            let ack = self
                .js
                .send_publish(
                    subject.clone(),
                    jetstream::message::PublishMessage::build().payload(payload).message_id(&id),
                )
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(ACK_TIMEOUT, publish).await {
            Ok(Ok(ack)) => {
                self.metrics.accepted(ack.duplicate);
                tracing::debug!(subject, duplicate = ack.duplicate, "HTTP input: alert stored");
                text(StatusCode::OK, if ack.duplicate { "ok: already stored (a resend)\n" } else { "ok: stored\n" })
            }
            Ok(Err(e)) => {
                tracing::warn!(subject, error = %e, "HTTP input: the alert stream did not take an alert; answered 503");
                unavailable("NATS did not take the alert; retry\n")
            }
            Err(_) => {
                tracing::warn!(subject, "HTTP input: NATS did not acknowledge an alert in time; answered 503");
                unavailable("NATS did not acknowledge the alert in time; retry\n")
            }
        }
    }
}

/// The subject, message id and body to publish for a posted alert: checked with the rules NATS alerts follow;
/// an alert without uuid (Falco's `http_output`) gets one derived from what identifies it, so a resend is the
/// same message to JetStream's deduplication.
pub fn prepare(body: &[u8]) -> Result<(String, String, Bytes), String> {
    let mut value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Err(Alert::parse(body).err().map(|e| e.to_string()).unwrap_or_default()),
    };
    let Some(obj) = value.as_object_mut() else { return Err(Alert::parse(body).unwrap_err().to_string()) };
    let has_uuid = obj.get("uuid").and_then(|u| u.as_str()).is_some_and(|u| !u.is_empty());
    let payload = if has_uuid {
        Bytes::copy_from_slice(body)
    } else {
        let part = |k: &str| obj.get(k).map(|v| v.to_string()).unwrap_or_default();
        let mut h = Sha256::new();
        for k in ["time", "hostname", "rule", "output"] {
            h.update(part(k).as_bytes());
            h.update([0]);
        }
        let d = hex::encode(h.finalize());
        let uuid = format!("{}-{}-{}-{}-{}", &d[..8], &d[8..12], &d[12..16], &d[16..20], &d[20..32]);
        obj.insert("uuid".into(), serde_json::Value::String(uuid));
        Bytes::from(serde_json::to_vec(&value).map_err(|e| e.to_string())?)
    };
    let alert = Alert::parse(&payload).map_err(|e| e.to_string())?;
    Ok((alert.subject(), alert.uuid, payload))
}

fn text(code: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = code;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn unavailable(body: &str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, body);
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    r
}

fn too_large() -> Response<Full<Bytes>> {
    text(StatusCode::PAYLOAD_TOO_LARGE, &format!("an alert is at most {MAX_BODY_BYTES} bytes\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FALCO_BODY: &str = r#"{"hostname":"node-1","output":"12:00:00 Notice A shell was spawned","priority":"Notice","rule":"Terminal shell in container","source":"syscall","tags":["shell"],"time":"2026-12-04T12:00:00.000000000Z","output_fields":{"proc.name":"bash"}}"#;

    #[test]
    fn a_falco_body_without_uuid_gets_the_same_id_each_time_and_the_sidekick_subject() {
        let (subject, id, payload) = prepare(FALCO_BODY.as_bytes()).unwrap();
        assert_eq!(subject, "falco.notice.terminal_shell_in_container");
        assert_eq!(prepare(FALCO_BODY.as_bytes()).unwrap().1, id, "a resend is the same message");
        assert_eq!(Alert::parse(&payload).unwrap().uuid, id, "the runner sees the same uuid");
        let other = FALCO_BODY.replace("node-1", "node-2");
        assert_ne!(prepare(other.as_bytes()).unwrap().1, id, "another host's alert is another message");
        let with_uuid = FALCO_BODY.replacen('{', r#"{"uuid":"u-1","#, 1);
        let (_, id, payload) = prepare(with_uuid.as_bytes()).unwrap();
        assert_eq!((id.as_str(), &payload[..]), ("u-1", with_uuid.as_bytes()), "sidekick's uuid and body as sent");
    }

    #[test]
    fn a_body_that_is_not_an_alert_says_why() {
        assert!(prepare(b"not json").unwrap_err().contains("alert is not JSON"));
        assert!(prepare(b"[1]").unwrap_err().contains("not a JSON object"));
        let e = prepare(br#"{"rule":"r","time":"2026-12-04T12:00:00Z","output_fields":{}}"#).unwrap_err();
        assert!(e.contains("alert has no `priority`"), "{e}");
    }

    #[test]
    fn tokens_compare_by_value_only() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
