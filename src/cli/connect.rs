//! `--nats*` options shared by every command that talks to NATS, and opening the registry with them.

use anyhow::Result;
use riposte::nats::NatsConfig;
use riposte::registry::Registry;
use riposte::state::StateDir;
use std::path::PathBuf;

/// How to reach NATS.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated; user:password@ or token@ may be in it. Default: the local
    /// nats-server `riposte run` started (recorded in the state directory).
    #[arg(long = "nats", env = "RIPOSTE_NATS_URL", value_name = "URL")]
    pub url: Option<String>,
    /// NATS credentials file (.creds: JWT and NKey seed).
    #[arg(long = "nats-creds", env = "RIPOSTE_NATS_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// File holding an NKey seed.
    #[arg(long = "nats-nkey", env = "RIPOSTE_NATS_NKEY", value_name = "FILE")]
    pub nkey: Option<PathBuf>,
    /// CA certificates (PEM) that sign the server's certificate; turns TLS on.
    #[arg(long = "nats-ca", env = "RIPOSTE_NATS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long = "nats-cert", env = "RIPOSTE_NATS_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long = "nats-key", env = "RIPOSTE_NATS_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
}

impl NatsArgs {
    /// The library's connection settings.
    pub fn config(&self, name: &str) -> NatsConfig {
        NatsConfig {
            url: self.url.clone(),
            creds: self.creds.clone(),
            nkey: self.nkey.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            name: name.to_owned(),
        }
    }

    /// Connects and opens the registry (creating the streams and buckets when this is a fresh server).
    pub async fn registry(&self, state: &StateDir) -> Result<Registry> {
        let config = self.config("riposte-cli");
        let (url, local) = config.resolve_url(state)?;
        let client = config.connect(&url, local).await?;
        let js = async_nats::jetstream::new(client);
        riposte::streams::ensure(&js, None).await?;
        Ok(Registry::open(&js).await?)
    }
}
