//! The runner's HTTP endpoint for Prometheus and probes (`riposte run --metrics-addr`): `/metrics` (the
//! exposition, with what is read at scrape time sampled just before), `/healthz` (the process serves) and
//! `/readyz` (200 when the runner is connected to NATS, watches the registry and has loaded the handlers of
//! its triggers; 503 with the reasons otherwise, e.g. while NATS is down).
//!
//! The endpoint is bound before the runner connects, so `/healthz` answers and `/readyz` says "starting" while
//! it does. Connections are few and bounded (at most [`MAX_CONNECTIONS`] at once, headers within
//! [`HEADER_TIMEOUT`]); every request is a GET without a body.

use crate::metrics::{Metrics, CONTENT_TYPE};
use crate::shutdown::Shutdown;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the scrape-time sampling may take (consumer info requests); what did not answer is left out.
pub const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoint asks the runner.
#[async_trait::async_trait]
pub trait Probe: Send + Sync {
    /// Reads what is sampled at scrape time (consumer backlogs, instances, NATS) into `metrics`.
    async fn sample(&self, metrics: &Metrics);
    /// Why the runner is not ready, one line each; empty when it is.
    fn not_ready(&self) -> Vec<String>;
}

/// Where the runner's probe is put once the runner has started (empty until then: "starting").
pub type ProbeSlot = Arc<OnceLock<Arc<dyn Probe>>>;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot listen on --metrics-addr {addr}: {source} (choose another address, e.g. 127.0.0.1:9464)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The endpoint, serving until the shutdown it was given says stop.
pub struct Endpoint {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    /// Binds `addr` (e.g. `127.0.0.1:9464`; port 0 picks one) and serves `metrics` and the probe in `probe`.
    pub async fn start(
        addr: &str,
        metrics: Metrics,
        probe: ProbeSlot,
        shutdown: Shutdown,
    ) -> Result<Endpoint, HealthError> {
        let bind = |source| HealthError::Bind { addr: addr.to_owned(), source };
        let listener = TcpListener::bind(addr).await.map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        let state = Arc::new(State { metrics, probe });
        let task = tokio::spawn(serve(listener, state, shutdown));
        Ok(Endpoint { addr: local, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until it stopped.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

struct State {
    metrics: Metrics,
    probe: ProbeSlot,
}

async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => return,
            p = slots.clone().acquire_owned() => p.expect("never closed"),
        };
        let (stream, _) = tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(state.respond(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

impl State {
    async fn respond(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        }
        let probe = self.probe.get();
        match req.uri().path() {
            "/metrics" => {
                if let Some(p) = probe {
                    let _ = tokio::time::timeout(SAMPLE_TIMEOUT, p.sample(&self.metrics)).await;
                }
                let mut r = Response::new(Full::new(Bytes::from(self.metrics.encode())));
                r.headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(CONTENT_TYPE));
                r
            }
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => {
                let reasons = match probe {
                    Some(p) => p.not_ready(),
                    None => vec!["starting: connecting to NATS and opening the registry".to_owned()],
                };
                if reasons.is_empty() {
                    text(StatusCode::OK, "ready\n".into())
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", reasons.join("\n")))
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found: /metrics, /healthz, /readyz\n".into()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
