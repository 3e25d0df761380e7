//! Argument groups shared by several commands (`#[command(flatten)]`): how to reach NATS, the real capability
//! backends, the container engine, and what an image build may take from the host.

use anyhow::Result;
use riposte::execute::capability::Backends;
use riposte::model::state_dir::StateDir;
use riposte::nats::connect::{Auth, NatsConfig, NatsError};
use riposte::nats::registry::Registry;
use riposte::nats::streams::StreamSettings;
use riposte::secrets::seal::SettingsKeys;
use std::path::PathBuf;

/// How to reach NATS.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated (nats:// or tls://); user:password@ or token@ may be in any of them.
    /// Default: the local nats-server `riposte run` started (recorded in the state directory, with its key).
    #[arg(long = "nats", env = "RIPOSTE_NATS_URL", value_name = "URL")]
    pub url: Option<String>,
    /// NATS user name; the password is read from --nats-password-file.
    #[arg(long = "nats-user", env = "RIPOSTE_NATS_USER", value_name = "NAME")]
    pub user: Option<String>,
    /// File holding the password of --nats-user (so it is not in the process list).
    #[arg(long = "nats-password-file", env = "RIPOSTE_NATS_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// File holding a NATS token.
    #[arg(long = "nats-token-file", env = "RIPOSTE_NATS_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
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
    /// Client key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC) for mutual TLS.
    #[arg(long = "nats-key", env = "RIPOSTE_NATS_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Replicas of the streams and buckets riposte creates (alerts, results, dead letters, registry,
    /// artifacts); 3 on a 3-node cluster. Without it new streams get 1 and existing ones are left alone.
    #[arg(long, env = "RIPOSTE_REPLICAS", value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: Option<u8>,
    /// Change existing streams whose replicas differ from --replicas (otherwise riposte stops and says so).
    #[arg(long, env = "RIPOSTE_UPDATE_STREAMS")]
    pub update_streams: bool,
    /// Most bytes the alert stream (FALCO) keeps; when a flood fills it the oldest alerts are discarded, the
    /// newest kept. A number of bytes, or with K, M, G (KiB, MiB, GiB). Without it a new or unbounded stream
    /// gets 1G and a bound set earlier is left alone.
    #[arg(long, env = "RIPOSTE_ALERT_STREAM_MAX_BYTES", value_name = "BYTES", value_parser = parse_bytes)]
    pub alert_stream_max_bytes: Option<u64>,
    /// The largest alert the alert stream stores (larger ones are refused by the server). Bytes, or with K, M,
    /// G; default 1M (NATS's default max_payload), the same way as --alert-stream-max-bytes.
    #[arg(long, env = "RIPOSTE_ALERT_MAX_BYTES", value_name = "BYTES", value_parser = parse_bytes)]
    pub alert_max_bytes: Option<u64>,
}

/// A size: a whole number of bytes, or with a K, M or G suffix (powers of 1024), e.g. `512M`.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not a size: write bytes, or a number with K, M or G, e.g. 512M");
    let (digits, unit) = match t.char_indices().last().ok_or_else(bad)? {
        (i, c @ ('K' | 'k' | 'M' | 'm' | 'G' | 'g')) => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, 'B'),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit {
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => 0,
    };
    let bytes = n.checked_shl(shift).filter(|b| b >> shift == n).ok_or_else(bad)?;
    if bytes == 0 || bytes > i64::MAX as u64 {
        return Err(bad());
    }
    Ok(bytes)
}

impl NatsArgs {
    /// The library's connection settings; two credentials, or a user without its password file, are refused
    /// here, before anything connects.
    pub fn config(&self, name: &str) -> Result<NatsConfig, NatsError> {
        let auth = Auth::from_flags(
            self.user.clone(),
            self.password_file.clone(),
            self.token_file.clone(),
            self.nkey.clone(),
            self.creds.clone(),
        )?;
        Ok(NatsConfig {
            url: self.url.clone(),
            auth,
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            name: name.to_owned(),
            server_errors: None,
        })
    }

    /// How the streams and buckets are replicated (`--replicas`, `--update-streams`).
    pub fn streams(&self) -> StreamSettings {
        StreamSettings {
            replicas: self.replicas.map(usize::from),
            update: self.update_streams,
            alert_max_bytes: self.alert_stream_max_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            alert_max_msg_size: self.alert_max_bytes.map(|b| i32::try_from(b).unwrap_or(i32::MAX)),
        }
    }

    /// Connects and opens the registry (creating the streams and buckets when this is a fresh server).
    pub async fn registry(&self, state: &StateDir) -> Result<Registry> {
        let config = self.config("riposte-cli")?;
        let (url, local) = config.resolve_url(state)?;
        let client = config.connect(&url, local.then_some(state)).await?;
        let js = async_nats::jetstream::new(client);
        riposte::nats::streams::ensure_with(&js, None, &self.streams()).await?;
        Ok(Registry::open_with(&js, &self.streams()).await?)
    }

    /// [`registry`](Self::registry), sealing and opening secret setting values with the settings key.
    pub async fn keyed_registry(&self, state: &StateDir, key: &SettingsKeyArgs) -> Result<Registry> {
        let keys = self.settings_keys(state, key)?;
        Ok(self.registry(state).await?.with_keys(keys))
    }

    /// The settings keys this NATS takes (see [`SettingsKeyArgs::keys`]), read without connecting: deploy
    /// commands read them before a (slow) build, so a wrong key file costs nothing.
    pub fn settings_keys(&self, state: &StateDir, key: &SettingsKeyArgs) -> Result<Option<SettingsKeys>> {
        let (_, local) = self.config("riposte-cli")?.resolve_url(state)?;
        key.keys(state, Server::local_if(local), MissingKey::None)
    }
}

/// The settings key, for the commands that write or read secret setting values (deploy, apply, run, call,
/// doctor): the registry stores those values sealed with it ([`riposte::secrets::seal`]).
#[derive(Debug, Clone, clap::Args)]
pub struct SettingsKeyArgs {
    /// The settings key file: secret setting values are stored in the registry encrypted with it, so every
    /// deployer and runner of a NATS needs the same file (32 random bytes, or base64 lines: make one with
    /// `riposte settings-key new FILE`). Default with the local nats-server: <state>/settings.key, which
    /// `riposte run` creates.
    #[arg(long = "settings-key-file", env = "RIPOSTE_SETTINGS_KEY_FILE", value_name = "FILE")]
    pub settings_key_file: Option<PathBuf>,
}

/// Which nats-server a command talks to: the local one (whose key file the state directory holds) or one given
/// with `--nats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Local,
    Given,
}

impl Server {
    /// `Local` when `local` (as [`NatsConfig::resolve_url`] says).
    pub fn local_if(local: bool) -> Server {
        if local {
            Server::Local
        } else {
            Server::Given
        }
    }
}

/// What to do when the local server's key file is missing: create it (`riposte run`) or go without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKey {
    Create,
    None,
}

impl SettingsKeyArgs {
    /// The keys: the file given; else, with the local nats-server, the state directory's key file (created
    /// first when missing with [`MissingKey::Create`], as `riposte run` does); else none.
    pub fn keys(&self, state: &StateDir, server: Server, missing: MissingKey) -> Result<Option<SettingsKeys>> {
        let default = state.settings_key();
        Ok(match (&self.settings_key_file, server) {
            (Some(file), _) => Some(SettingsKeys::load(file)?),
            (None, Server::Local) if missing == MissingKey::Create => Some(SettingsKeys::load_or_generate(&default)?),
            (None, Server::Local) if default.exists() => Some(SettingsKeys::load(&default)?),
            (None, _) => None,
        })
    }
}

/// The HTTP alert input (`riposte run --http-addr`), also checked by `riposte doctor`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HttpInputArgs {
    /// Take alerts over HTTP too, e.g. 0.0.0.0:2801: Falco's http_output and falcosidekick's webhook and talon
    /// outputs POST to / (or /falco); each alert is answered 200 once the alert stream stored it, 503 with
    /// Retry-After when NATS cannot take it. Needs --http-token-file, --http-client-ca or --http-allow-anonymous.
    #[arg(long, env = "RIPOSTE_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// Bearer tokens the HTTP input accepts, one per line (several: rotation), in a file only its owner reads.
    #[arg(long, env = "RIPOSTE_HTTP_TOKEN_FILE", value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,
    /// Serve the HTTP input with TLS: the server's certificate chain (PEM); with --http-tls-key.
    #[arg(long, env = "RIPOSTE_HTTP_TLS_CERT", value_name = "FILE")]
    pub http_tls_cert: Option<PathBuf>,
    /// The HTTP input's TLS key (PEM).
    #[arg(long, env = "RIPOSTE_HTTP_TLS_KEY", value_name = "FILE")]
    pub http_tls_key: Option<PathBuf>,
    /// Require HTTP clients to present a certificate signed by these CAs (PEM); needs --http-tls-cert.
    #[arg(long, env = "RIPOSTE_HTTP_CLIENT_CA", value_name = "FILE")]
    pub http_client_ca: Option<PathBuf>,
    /// Let anyone who reaches --http-addr post alerts (falcosidekick's talon output sends no credentials):
    /// only on a network nothing but Falco reaches.
    #[arg(long, env = "RIPOSTE_HTTP_ALLOW_ANONYMOUS")]
    pub http_allow_anonymous: bool,
}

impl HttpInputArgs {
    /// The input's configuration, when --http-addr is given.
    pub fn config(&self) -> Option<riposte::runner::ingest::IngestConfig> {
        self.http_addr.as_ref().map(|addr| riposte::runner::ingest::IngestConfig {
            addr: addr.clone(),
            token_file: self.http_token_file.clone(),
            allow_anonymous: self.http_allow_anonymous,
            tls_cert: self.http_tls_cert.clone(),
            tls_key: self.http_tls_key.clone(),
            client_ca: self.http_client_ca.clone(),
        })
    }
}

/// What an image build may take from the host, shared by every command that builds container images.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BuildArgs {
    /// A host file (or folder) that a container playbook's `[container] context` may put into its image
    /// although it lies outside the playbook's folder, e.g. /bin/busybox for webhook-action (repeatable; the
    /// variable takes a ':'-separated list). Without it, only files inside the playbook's folder are used.
    #[arg(long = "context-allow", env = "RIPOSTE_CONTEXT_ALLOW", value_name = "PATH", value_delimiter = ':')]
    pub context_allow: Vec<PathBuf>,
}

impl BuildArgs {
    /// The host paths allowed.
    pub fn allow(&self) -> riposte::execute::container::image::ContextAllow {
        riposte::execute::container::image::ContextAllow::new(self.context_allow.iter().cloned())
    }
}

/// Where container playbooks run, shared by every command that runs them.
#[derive(Debug, Clone, clap::Args)]
pub struct ContainerArgs {
    /// Docker Engine API of Docker or Podman for container playbooks, e.g. unix:///run/podman/podman.sock
    /// (default: DOCKER_HOST, else Podman's or Docker's default socket).
    #[arg(long, env = "RIPOSTE_CONTAINER_HOST", value_name = "URL")]
    pub container_host: Option<String>,
}

impl ContainerArgs {
    /// Connects to the engine; containers with network get the runner's proxy settings and `ca_bundle`.
    pub async fn engine(&self, ca_bundle: Option<PathBuf>) -> Result<riposte::execute::container::ContainerEngine> {
        let network = riposte::execute::container::engine::NetworkEnv::from_env(ca_bundle);
        Ok(riposte::execute::container::ContainerEngine::connect_with(self.container_host.as_deref(), network).await?)
    }

    /// Where a runner (or `function call`) runs container functions.
    pub fn setup(&self, backends: &BackendArgs) -> riposte::execute::handlers::ContainerSetup {
        riposte::execute::handlers::ContainerSetup {
            host: self.container_host.clone(),
            ca_bundle: backends.ca_bundle.clone(),
            runner: None,
        }
    }
}

/// Options of the real capability backends, shared by every command that runs playbooks.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Extra trusted CA certificates (PEM bundle) for playbook HTTPS calls; HTTPS_PROXY/NO_PROXY are honoured.
    #[arg(long, env = "RIPOSTE_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// Proxy for playbook HTTP(S) calls, e.g. http://proxy.internal:3128 (default: HTTPS_PROXY/HTTP_PROXY).
    #[arg(long, env = "RIPOSTE_PROXY")]
    pub proxy: Option<String>,
    /// Kubeconfig of the cluster playbooks act on; without it KUBECONFIG, ~/.kube/config or the in-cluster
    /// service account are used when present, and Kubernetes verbs are refused when none is.
    #[arg(long, env = "RIPOSTE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

impl BackendArgs {
    /// The real backends: one pooled HTTP client, the Kubernetes cluster, the object store in the state dir.
    pub fn backends(&self, state: &StateDir) -> Result<Backends> {
        let http =
            riposte::execute::capability::http::HttpClient::new(&riposte::execute::capability::http::HttpConfig {
                ca_bundle: self.ca_bundle.clone(),
                timeout: None,
                proxy: self.proxy.clone(),
            })?;
        Ok(Backends {
            http: std::sync::Arc::new(http),
            kubernetes: riposte::execute::capability::kubernetes::Cluster::detect(self.kubeconfig.as_deref())?,
            object_store: std::sync::Arc::new(riposte::execute::capability::object_store::DirStore::new(
                state.objects(),
            )),
        })
    }
}

/// How a deployed function responds (`deploy_playbook`, `function deploy`): dry-run and deduplication.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Run on real alerts with recording backends: nothing reaches Slack, Kubernetes or an API; results are
    /// `dry-run` with the calls it would have made. Deploying again without it arms the function.
    #[arg(long)]
    pub dry_run: bool,
    /// Run once per dedup key within this window, across all runners (e.g. 60s, 5m); other alerts with the
    /// key are acked as `deduplicated`.
    #[arg(long, value_name = "DURATION", value_parser = parse_window)]
    pub dedup_window: Option<std::time::Duration>,
    /// The dedup key, a CEL expression over `alert` (default: the rule and the output without its time).
    #[arg(long, value_name = "EXPR", requires = "dedup_window")]
    pub dedup_key: Option<String>,
}

impl PolicyArgs {
    /// The function's policy.
    pub fn policy(&self) -> riposte::model::function::ResponsePolicy {
        riposte::model::function::ResponsePolicy {
            dry_run: self.dry_run,
            dedup: self.dedup_window.map(|w| riposte::model::function::Dedup {
                window_ms: w.as_millis() as u64,
                key: self.dedup_key.clone(),
            }),
        }
    }
}

/// A time window: a whole number and a unit, `s`, `m`, `h` or `d` (`90s`, `30m`, `1h`, `7d`).
pub(crate) fn parse_window(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{text:?} is not a window: write a whole number and a unit, e.g. 90s, 30m, 1h, 7d");
    let t = text.trim();
    let unit = t.chars().last().ok_or_else(bad)?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = t[..t.len() - 1].parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(n.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::parse_window;
    use std::time::Duration;

    #[test]
    fn windows_are_a_number_and_a_unit() {
        assert_eq!(parse_window("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_window("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_window("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_window("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "1", "1w", "-1h", "0m", "1.5h", "one hour"] {
            let e = parse_window(bad).unwrap_err();
            assert!(e.contains("e.g. 90s, 30m, 1h, 7d"), "{bad}: {e}");
        }
    }
}
