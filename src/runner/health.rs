//! The runner's HTTP endpoint for Prometheus and probes (`riposte run --metrics-addr`): `/metrics` (the
//! exposition, with what is read at scrape time sampled just before), `/healthz` (the process serves) and
//! `/readyz` (200 when the runner is connected to NATS, watches the registry and has loaded the handlers of
//! its triggers; 503 with the reasons otherwise, e.g. while NATS is down).
//!
//! The endpoint is bound before the runner connects, so `/healthz` answers and `/readyz` says "starting" while
//! it does. Every request is a GET without a body.
//!
//! Anything that reaches the port must not be able to starve the probes, or kubelet restarts the runner over
//! and over: accepting never waits (a connection over [`MAX_CONNECTIONS`], or over
//! [`MAX_CONNECTIONS_PER_CLIENT`] from one IP, is closed at once), a connection that has not sent a whole
//! header within [`HEADER_TIMEOUT`] is closed, each connection serves one request within [`CONNECTION_TIMEOUT`],
//! and only scrapes (which sample NATS) share the small [`MAX_SCRAPES`] budget: `/healthz` and `/readyz` are
//! answered at once from the runner's cached state, whatever the scrapes are doing.

use crate::runner::metrics::{Metrics, CONTENT_TYPE};
use crate::runner::shutdown::Shutdown;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections open at once, all clients together; one more is closed at once (accepting never waits, so a
/// probe is never queued behind silent connections).
pub const MAX_CONNECTIONS: usize = 512;
/// Connections open at once from one IP address (a Prometheus and kubelet need one or two each); one more is
/// closed at once, so one client cannot hold many.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 8;
/// Time a client has to send its whole request header, counted from the connection's start: kubelet and
/// Prometheus send it at once, a silent or half-sent connection is closed after this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// Time one connection may live, its one request and answer included (a client that does not read its
/// answer is closed after this).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes served at once; another is answered 503 at once. Probes do not count.
pub const MAX_SCRAPES: usize = 4;
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
        let state = Arc::new(State { metrics, probe, scrapes: Semaphore::new(MAX_SCRAPES) });
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
    scrapes: Semaphore,
}

/// Open connections, all and per client IP; a [`Slot`] is one of them.
#[derive(Default)]
struct Clients {
    open: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Clients {
    /// A slot for a new connection from `ip`, unless it or everyone is at the limit.
    fn admit(clients: &Arc<Mutex<Clients>>, ip: IpAddr) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut c = clients.lock().unwrap_or_else(|e| e.into_inner());
        let mine = c.per_ip.get(&ip).copied().unwrap_or(0);
        if c.open >= MAX_CONNECTIONS || mine >= MAX_CONNECTIONS_PER_CLIENT {
            return None;
        }
        c.open += 1;
        c.per_ip.insert(ip, mine + 1);
        Some(Slot { clients: clients.clone(), ip })
    }
}

/// One open connection, counted until dropped.
struct Slot {
    clients: Arc<Mutex<Clients>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        c.open -= 1;
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: Shutdown) {
    let clients = Arc::new(Mutex::new(Clients::default()));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    // Out of file descriptors, say: let connections end before trying again.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = Clients::admit(&clients, peer.ip()) else {
            tracing::debug!(client = %peer.ip(), "metrics endpoint: too many connections, one closed");
            drop(stream);
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(state.respond(req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(slot);
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
                let Ok(_scrape) = self.scrapes.try_acquire() else {
                    return text(StatusCode::SERVICE_UNAVAILABLE, format!("busy: {MAX_SCRAPES} scrapes at once\n"));
                };
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    async fn start() -> (Endpoint, crate::runner::shutdown::Stopper) {
        start_with(Default::default()).await
    }

    async fn start_with(probe: ProbeSlot) -> (Endpoint, crate::runner::shutdown::Stopper) {
        let (stopper, shutdown) = crate::runner::shutdown::Stopper::new();
        let endpoint = Endpoint::start("127.0.0.1:0", Metrics::new(), probe, shutdown).await.unwrap();
        (endpoint, stopper)
    }

    /// A connection to `to` from the loopback address `from` (Linux routes all of 127/8 to lo), so a test can
    /// be several clients.
    async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        socket.connect(to).await.unwrap()
    }

    /// The status line of a GET of `path`, within kubelet's 1 s probe timeout.
    async fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
        let exchange = async {
            let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: riposte\r\nConnection: close\r\n\r\n").as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
            let answer = String::from_utf8_lossy(&answer).into_owned();
            Ok(answer.lines().next().unwrap_or_default().to_owned())
        };
        tokio::time::timeout(Duration::from_secs(1), exchange).await.map_err(|_| format!("{path}: no answer in 1 s"))?
    }

    /// Whether the endpoint closes `s` within `within` (a read sees the end, or a reset).
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(tokio::time::timeout(within, s.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probes_answer_within_a_second_while_many_clients_hold_silent_and_half_sent_connections() {
        let (endpoint, _stopper) = start().await;
        let addr = endpoint.addr();
        let mut held = Vec::new();
        for client in 2..8u8 {
            for _ in 0..8 {
                held.push(connect_from([127, 0, 0, client], addr).await);
            }
        }
        for _ in 0..4 {
            let mut s = connect_from([127, 0, 0, 8], addr).await;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: rip").await.unwrap();
            held.push(s);
        }
        assert!(held.len() >= 40);
        for _ in 0..5 {
            assert_eq!(get(addr, "/healthz").await.unwrap(), "HTTP/1.1 200 OK");
            assert_eq!(get(addr, "/readyz").await.unwrap(), "HTTP/1.1 503 Service Unavailable");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_client_holds_at_most_its_share_of_connections() {
        let (endpoint, _stopper) = start().await;
        let addr = endpoint.addr();
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_CLIENT {
            held.push(connect_from([127, 0, 0, 9], addr).await);
        }
        let mut one_more = connect_from([127, 0, 0, 9], addr).await;
        assert!(
            closed_within(&mut one_more, Duration::from_millis(500)).await,
            "the client's next connection is closed at once"
        );
        assert!(!closed_within(&mut held[0], Duration::from_millis(100)).await, "its first ones are kept");
        assert_eq!(get(addr, "/healthz").await.unwrap(), "HTTP/1.1 200 OK");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_without_a_whole_header_is_closed_at_the_header_timeout() {
        let (endpoint, _stopper) = start().await;
        let addr = endpoint.addr();
        let mut silent = connect_from([127, 0, 0, 10], addr).await;
        let mut half = connect_from([127, 0, 0, 10], addr).await;
        half.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        let bound = HEADER_TIMEOUT + Duration::from_secs(1);
        assert!(closed_within(&mut silent, bound).await, "a silent connection outlived {HEADER_TIMEOUT:?}");
        assert!(
            closed_within(&mut half, Duration::from_secs(1)).await,
            "a half-sent header outlived {HEADER_TIMEOUT:?}"
        );
    }

    /// A runner whose scrape-time sampling hangs (a NATS that does not answer).
    struct Hanging;

    #[async_trait::async_trait]
    impl Probe for Hanging {
        async fn sample(&self, _: &Metrics) {
            std::future::pending::<()>().await
        }
        fn not_ready(&self) -> Vec<String> {
            Vec::new()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probes_answer_at_once_while_every_scrape_slot_is_busy_and_one_scrape_more_is_refused() {
        let slot: ProbeSlot = Default::default();
        let _ = slot.set(Arc::new(Hanging));
        let (endpoint, _stopper) = start_with(slot).await;
        let addr = endpoint.addr();
        let mut scrapes = Vec::new();
        for client in 0..MAX_SCRAPES as u8 {
            let mut s = connect_from([127, 0, 1, client], addr).await;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: riposte\r\n\r\n").await.unwrap();
            scrapes.push(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(get(addr, "/healthz").await.unwrap(), "HTTP/1.1 200 OK");
        assert_eq!(get(addr, "/readyz").await.unwrap(), "HTTP/1.1 200 OK");
        assert_eq!(get(addr, "/metrics").await.unwrap(), "HTTP/1.1 503 Service Unavailable");
    }
}
