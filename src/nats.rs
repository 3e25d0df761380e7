//! How riposte connects to NATS: the URL (user/password or token in it), credentials, NKey and TLS, and
//! where to find the local nats-server `riposte run` started when no URL is given.

use crate::state_dir::StateDir;
use std::path::PathBuf;
use std::time::Duration;

/// Connection settings, from `--nats*` flags.
#[derive(Debug, Clone, Default)]
pub struct NatsConfig {
    /// `nats://[user:password@|token@]host:port[,...]`; `None`: the local server recorded in the state dir.
    pub url: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// A file holding an NKey seed.
    pub nkey: Option<PathBuf>,
    /// CA certificates (PEM) to verify the server with; setting it requires TLS.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The connection's name, shown by the server's monitoring.
    pub name: String,
}

/// Why riposte could not reach NATS.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error(
        "no NATS server given and no local one running: start `riposte run` (it starts a local nats-server), \
         or pass --nats URL (env RIPOSTE_NATS_URL)"
    )]
    NoServer,
    #[error("cannot connect to NATS at {url}: {why}{hint}")]
    Connect { url: String, why: String, hint: &'static str },
    #[error("cannot read {what} {path}: {why}")]
    File { what: &'static str, path: PathBuf, why: String },
    #[error("--nats-cert and --nats-key go together: give both")]
    HalfCertificate,
    #[error(transparent)]
    Local(#[from] crate::embedded::EmbeddedError),
}

/// How a runner reached NATS.
pub struct RunnerConnection {
    pub client: async_nats::Client,
    /// The URL it connected to (may hold credentials: show it with [`redact_url`]).
    pub url: String,
    pub local: LocalServer,
}

/// Whether the runner uses a local nats-server, and whose.
pub enum LocalServer {
    /// A server given with `--nats`.
    None,
    /// The local server an earlier `riposte run` started and that still answers.
    Reused,
    /// A local server this runner started (stopped when dropped).
    Started(crate::embedded::NatsServer),
}

impl NatsConfig {
    /// The URL to use: the one given, or the local server's recorded in the state directory.
    pub fn resolve_url(&self, state: &StateDir) -> Result<(String, bool), NatsError> {
        match &self.url {
            Some(url) => Ok((url.clone(), false)),
            None => crate::embedded::recorded_url(state).map(|u| (u, true)).ok_or(NatsError::NoServer),
        }
    }

    /// How `riposte run` connects: the URL given; else the local server recorded in the state directory when
    /// it still answers (rather than start a second one on the same data); else a new local server.
    pub async fn connect_runner(&self, state: &StateDir) -> Result<RunnerConnection, NatsError> {
        if let Ok((url, false)) = self.resolve_url(state) {
            let client = self.connect(&url, false).await?;
            return Ok(RunnerConnection { client, url, local: LocalServer::None });
        }
        if let Ok((url, true)) = self.resolve_url(state) {
            if let Ok(client) = self.connect(&url, true).await {
                return Ok(RunnerConnection { client, url, local: LocalServer::Reused });
            }
        }
        let server = tokio::task::block_in_place(|| crate::embedded::NatsServer::start_for_state(state))?;
        let url = server.url();
        let client = self.connect(&url, true).await?;
        Ok(RunnerConnection { client, url, local: LocalServer::Started(server) })
    }

    /// Connects; `url` as returned by [`NatsConfig::resolve_url`]. Reconnects forever once connected.
    pub async fn connect(&self, url: &str, local: bool) -> Result<async_nats::Client, NatsError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(&self.name)
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .client_capacity(65_536)
            .subscription_capacity(65_536);
        if let Some(path) = &self.creds {
            opts = opts.credentials_file(path).await.map_err(|e| NatsError::File {
                what: "NATS credentials",
                path: path.clone(),
                why: e.to_string(),
            })?;
        }
        if let Some(path) = &self.nkey {
            let seed = std::fs::read_to_string(path).map_err(|e| NatsError::File {
                what: "NKey seed",
                path: path.clone(),
                why: e.to_string(),
            })?;
            opts = opts.nkey(seed.trim().to_owned());
        }
        if let Some(ca) = &self.ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => opts = opts.add_client_certificate(cert.clone(), key.clone()).require_tls(true),
            (None, None) => {}
            _ => return Err(NatsError::HalfCertificate),
        }
        opts.connect(url).await.map_err(|e| NatsError::Connect {
            url: redact_url(url),
            why: e.to_string(),
            hint: if local {
                " (the local nats-server recorded in the state dir is not running: start `riposte run`)"
            } else {
                ""
            },
        })
    }
}

/// The URL without its password or token, for messages.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}***@{}", &one[..scheme + 3], &one[at + 1..]),
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_secrets_in_messages() {
        assert_eq!(super::redact_url("nats://u:p@h:4222,nats://tok@h2"), "nats://***@h:4222,nats://***@h2");
        assert_eq!(super::redact_url("nats://h:4222"), "nats://h:4222");
    }
}
