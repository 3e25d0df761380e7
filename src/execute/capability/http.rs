//! The real `http` backend: one shared, pooled reqwest client (rustls), honouring `HTTPS_PROXY`,
//! `HTTP_PROXY` and `NO_PROXY` from the environment and an optional CA bundle for on-premises networks.
//! The function's allow-list is checked by the runtime before this backend is called.

use super::{CallResult, Http, HttpRequest, HttpResponse};
use crate::model::limits::MAX_HTTP_BODY;
use crate::model::wit::CallError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the runner reaches the outside world.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Extra trusted roots (PEM bundle), on top of the system's.
    pub ca_bundle: Option<PathBuf>,
    /// Timeout of one request; the function's own deadline applies as well.
    pub timeout: Option<Duration>,
    /// Proxy for every request (overrides `HTTPS_PROXY`/`HTTP_PROXY`, which apply otherwise; `NO_PROXY`
    /// is honoured either way).
    pub proxy: Option<String>,
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpConfigError {
    #[error("cannot read CA bundle {path}: {source}")]
    ReadCa { path: PathBuf, source: std::io::Error },
    #[error("CA bundle {path} has no usable PEM certificate: {why}")]
    BadCa { path: PathBuf, why: String },
    #[error("proxy {0:?} is not a valid proxy URL (e.g. http://proxy.internal:3128)")]
    BadProxy(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The pooled client pair: one that verifies TLS and one for functions whose settings turn it off.
pub struct HttpClient {
    verified: reqwest::Client,
    unverified: reqwest::Client,
}

impl HttpClient {
    /// Builds both clients once; every function of the runner shares them.
    pub fn new(config: &HttpConfig) -> Result<HttpClient, HttpConfigError> {
        let roots = match &config.ca_bundle {
            Some(path) => load_bundle(path)?,
            None => Vec::new(),
        };
        let proxy = match &config.proxy {
            Some(url) => Some(
                reqwest::Proxy::all(url)
                    .map_err(|_| HttpConfigError::BadProxy(url.clone()))?
                    .no_proxy(reqwest::NoProxy::from_env()),
            ),
            None => None,
        };
        let build = |verify: bool| {
            let mut b = reqwest::Client::builder()
                .user_agent(concat!("riposte/", env!("CARGO_PKG_VERSION")))
                .timeout(config.timeout.unwrap_or(Duration::from_secs(30)))
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .danger_accept_invalid_certs(!verify);
            if let Some(p) = &proxy {
                b = b.proxy(p.clone());
            }
            for root in &roots {
                b = b.add_root_certificate(root.clone());
            }
            b.build().map_err(|e| HttpConfigError::Client(e.to_string()))
        };
        Ok(HttpClient { verified: build(true)?, unverified: build(false)? })
    }
}

fn load_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, HttpConfigError> {
    let pem = std::fs::read(path).map_err(|source| HttpConfigError::ReadCa { path: path.to_owned(), source })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| HttpConfigError::BadCa { path: path.to_owned(), why: e.to_string() })?;
    if certs.is_empty() {
        return Err(HttpConfigError::BadCa { path: path.to_owned(), why: "no certificate found".into() });
    }
    Ok(certs)
}

/// Where a request went, without path or query (they may carry secrets such as a webhook token).
pub fn origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or(""), u.port_or_known_default().unwrap_or(0)),
        Err(_) => "an invalid URL".into(),
    }
}

#[async_trait::async_trait]
impl Http for HttpClient {
    async fn send(&self, request: HttpRequest) -> CallResult<HttpResponse> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| super::rejected("BadRequest", format!("{:?} is not an HTTP method", request.method), 400))?;
        let client = if request.verify_tls { &self.verified } else { &self.unverified };
        let mut builder = client.request(method.clone(), &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let where_to = origin(&request.url);
        let mut response = builder.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "failed"
            };
            CallError::Failed(format!("{method} {where_to} {kind}: {}", root_cause(&e)))
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            CallError::Failed(format!("{method} {where_to}: reading the reply failed: {}", root_cause(&e)))
        })? {
            if body.len() + chunk.len() > MAX_HTTP_BODY {
                return Err(CallError::Failed(format!("{method} {where_to}: reply larger than {MAX_HTTP_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse { status, headers, body })
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_bundle_and_proxy_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("ca.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let err = HttpClient::new(&HttpConfig { ca_bundle: Some(bad), ..Default::default() }).err().unwrap();
        assert!(err.to_string().contains("has no usable PEM certificate"), "{err}");
        let err =
            HttpClient::new(&HttpConfig { ca_bundle: Some(dir.path().join("missing.pem")), ..Default::default() })
                .err()
                .unwrap();
        assert!(err.to_string().starts_with("cannot read CA bundle"), "{err}");
        let err = HttpClient::new(&HttpConfig { proxy: Some("::nope".into()), ..Default::default() }).err().unwrap();
        assert!(err.to_string().contains("not a valid proxy URL"), "{err}");
    }

    #[test]
    fn origin_hides_path_and_query() {
        assert_eq!(origin("https://hooks.slack.com/services/T0/B0/SECRET?x=1"), "https://hooks.slack.com:443");
    }
}
