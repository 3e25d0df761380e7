//! How riposte connects to NATS: the server list (comma-separated URLs, user/password or token in any of them),
//! the credential (user and password file, token file, NKey seed, `.creds`, or the local server's own key), TLS
//! (private CA, client certificate), and errors that say which credential a server refused without showing it.
//!
//! async-nats 0.51 ignores credentials written in a URL and parses only one URL at a time, so the list is split
//! and the credentials are taken out of the URLs here, then given to the client as options.

use crate::model::state_dir::StateDir;
use async_nats::ServerAddr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connection settings, from `--nats*` flags.
#[derive(Debug, Clone, Default)]
pub struct NatsConfig {
    /// `nats://[user:password@|token@]host:port[,...]`; `None`: the local server recorded in the state dir.
    pub url: Option<String>,
    /// The credential given with flags (one at most, [`Auth::from_flags`]); one written in `url` is taken from it.
    pub auth: Auth,
    /// CA certificates (PEM) to verify the server with; setting it requires TLS.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: Option<PathBuf>,
    /// The connection's name, shown by the server's monitoring.
    pub name: String,
    /// Where the server's error messages (`-ERR`, such as a permissions violation naming its subject) go
    /// instead of the log; the doctor reads them to tell a denied publish from one nothing answers.
    pub server_errors: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// The one credential given with flags, resolved when the arguments are read (two of them, or half of one, are
/// refused then, not at connect time). The secrets stay in their files until a connection reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No flag: credentials in the URL, the local server's key, or none.
    #[default]
    None,
    /// `--nats-user` with `--nats-password-file`.
    User { user: String, password_file: PathBuf },
    /// `--nats-token-file`.
    TokenFile(PathBuf),
    /// `--nats-nkey`: a file holding an NKey seed.
    Nkey(PathBuf),
    /// `--nats-creds`: a `.creds` file (JWT and NKey seed).
    Creds(PathBuf),
}

impl Auth {
    /// The credential of the `--nats-*` flags: at most one, and a user with its password file.
    pub fn from_flags(
        user: Option<String>,
        password_file: Option<PathBuf>,
        token_file: Option<PathBuf>,
        nkey: Option<PathBuf>,
        creds: Option<PathBuf>,
    ) -> Result<Auth, NatsError> {
        let user = match (user, password_file) {
            (Some(user), Some(password_file)) => Some(Auth::User { user, password_file }),
            (None, None) => None,
            _ => return Err(NatsError::HalfUser),
        };
        let given: Vec<(&str, Auth)> = [
            user.map(|a| ("--nats-user", a)),
            token_file.map(|f| ("--nats-token-file", Auth::TokenFile(f))),
            nkey.map(|f| ("--nats-nkey", Auth::Nkey(f))),
            creds.map(|f| ("--nats-creds", Auth::Creds(f))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.len() > 1 {
            let names: Vec<&str> = given.iter().map(|(flag, _)| *flag).collect();
            return Err(NatsError::TwoCredentials(names.join(" and ")));
        }
        Ok(given.into_iter().next().map(|(_, auth)| auth).unwrap_or_default())
    }

    /// The flag that gave it, for messages.
    fn flag(&self) -> Option<&'static str> {
        match self {
            Auth::None => None,
            Auth::User { .. } => Some("--nats-user"),
            Auth::TokenFile(_) => Some("--nats-token-file"),
            Auth::Nkey(_) => Some("--nats-nkey"),
            Auth::Creds(_) => Some("--nats-creds"),
        }
    }
}

/// Why riposte could not reach NATS. Messages name the credential used, never its secret.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error(
        "no NATS server given and no local one running: start `riposte run` (it starts a local nats-server), \
         or pass --nats URL (env RIPOSTE_NATS_URL)"
    )]
    NoServer,
    #[error(
        "--nats: {url:?} is not a NATS server URL ({why}): write nats://[user:password@]host:port or \
         tls://host:port, comma-separated for several servers"
    )]
    BadUrl { url: String, why: String },
    #[error("{0}: give one credential")]
    TwoCredentials(String),
    #[error("{url} refused {credential} (authorization violation): {hint}")]
    Refused { url: String, credential: Credential, hint: String },
    #[error("TLS with {url} failed: {why}{hint}")]
    Tls { url: String, why: String, hint: &'static str },
    #[error("cannot connect to NATS at {url}: {why}{hint}")]
    Connect { url: String, why: String, hint: &'static str },
    #[error("cannot read {what} {path}")]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} is empty")]
    EmptyFile { what: &'static str, path: PathBuf },
    #[error("{path} does not hold an NKey user seed (a line starting with SU): {why}")]
    BadSeed { path: PathBuf, why: String },
    #[error("--nats-cert and --nats-key go together: give both")]
    HalfCertificate,
    #[error(
        "--nats-cert {path} is an X.509 version 1 certificate, which TLS clients here (rustls) cannot use: issue it \
         as version 3, e.g. `openssl x509 -req … -extfile client.ext` with a file holding \
         `extendedKeyUsage=clientAuth` (openssl makes version 1 when -req has no -extfile)"
    )]
    CertificateV1 { path: PathBuf },
    #[error("--nats-user and --nats-password-file go together: give both")]
    HalfUser,
    #[error(transparent)]
    Local(#[from] crate::nats::embedded::EmbeddedError),
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
    Started(crate::nats::embedded::NatsServer),
}

/// The credential a connection presents, as messages name it: which one and where it came from, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No credential.
    None,
    /// `user:password@` in a URL.
    UrlUser { user: String },
    /// `token@` in a URL.
    UrlToken,
    /// `--nats-user` with `--nats-password-file`.
    User { user: String, password_file: PathBuf },
    /// `--nats-token-file`.
    TokenFile(PathBuf),
    /// `--nats-nkey`: the public key of the seed in the file.
    Nkey { public: String, path: PathBuf },
    /// `--nats-creds`.
    Creds(PathBuf),
    /// The key `riposte run` generated for its local server.
    Local(PathBuf),
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::None => write!(f, "a connection without credentials"),
            Credential::UrlUser { user } => write!(f, "user {user:?} with the password in the URL"),
            Credential::UrlToken => write!(f, "the token in the URL"),
            Credential::User { user, password_file } => {
                write!(f, "user {user:?} with the password in {}", password_file.display())
            }
            Credential::TokenFile(p) => write!(f, "the token in {}", p.display()),
            Credential::Nkey { public, path } => write!(f, "NKey {public} (seed in {})", path.display()),
            Credential::Creds(p) => write!(f, "the user JWT and seed in {}", p.display()),
            Credential::Local(p) => write!(f, "the local server's key {}", p.display()),
        }
    }
}

/// A server list parsed from `--nats`: the addresses without credentials, and the credential written in them.
#[derive(Debug, Clone)]
pub struct Servers {
    /// The servers, credentials removed.
    pub addrs: Vec<ServerAddr>,
    auth: Option<UrlAuth>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlAuth {
    User(String, String),
    Token(String),
}

impl Servers {
    /// Parses `nats://[user:password@|token@]host[:port]` URLs, comma-separated (`host:port` alone means
    /// `nats://host:port`). Credentials may be in any of them; two different ones are refused.
    pub fn parse(list: &str) -> Result<Servers, NatsError> {
        let mut addrs = Vec::new();
        let mut auth: Option<UrlAuth> = None;
        for one in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |why: String| NatsError::BadUrl { url: redact_url(one), why };
            let text = if one.contains("://") { one.to_owned() } else { format!("nats://{one}") };
            let mut url = url::Url::parse(&text).map_err(|e| bad(e.to_string()))?;
            if !matches!(url.scheme(), "nats" | "tls") {
                return Err(bad(format!("scheme {}:// is not nats:// or tls://", url.scheme())));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(bad("no host".into()));
            }
            let user = decode(url.username());
            let this = match url.password() {
                Some(p) => Some(UrlAuth::User(user, decode(p))),
                None if !user.is_empty() => Some(UrlAuth::Token(user)),
                None => None,
            };
            if let Some(this) = this {
                if auth.as_ref().is_some_and(|a| *a != this) {
                    return Err(NatsError::TwoCredentials("the --nats URLs carry different credentials".into()));
                }
                auth = Some(this);
                let _ = url.set_username("");
                let _ = url.set_password(None);
            }
            addrs.push(ServerAddr::from_url(url).map_err(|e| bad(e.to_string()))?);
        }
        if addrs.is_empty() {
            return Err(NatsError::BadUrl { url: String::new(), why: "no server".into() });
        }
        Ok(Servers { addrs, auth })
    }

    /// The servers as they may be shown: no credentials.
    pub fn display(&self) -> String {
        self.addrs.iter().map(|a| a.as_url_str().trim_end_matches('/')).collect::<Vec<_>>().join(",")
    }

    /// Whether a `tls://` URL asks for TLS.
    pub fn tls(&self) -> bool {
        self.addrs.iter().any(ServerAddr::tls_required)
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

impl NatsConfig {
    /// The URL to use: the one given, or the local server's recorded in the state directory (`true`).
    pub fn resolve_url(&self, state: &StateDir) -> Result<(String, bool), NatsError> {
        match &self.url {
            Some(url) => Ok((url.clone(), false)),
            None => crate::nats::embedded::recorded_url(state).map(|u| (u, true)).ok_or(NatsError::NoServer),
        }
    }

    /// How `riposte run` connects: the URL given; else the local server recorded in the state directory when
    /// it still answers (rather than start a second one on the same data); else a new local server, which
    /// accepts only the state directory's key.
    pub async fn connect_runner(&self, state: &StateDir) -> Result<RunnerConnection, NatsError> {
        if let Ok((url, false)) = self.resolve_url(state) {
            let client = self.connect(&url, None).await?;
            return Ok(RunnerConnection { client, url, local: LocalServer::None });
        }
        if let Ok((url, true)) = self.resolve_url(state) {
            if let Ok(client) = self.connect(&url, Some(state)).await {
                return Ok(RunnerConnection { client, url, local: LocalServer::Reused });
            }
        }
        let for_state = state.clone();
        let server =
            tokio::task::spawn_blocking(move || crate::nats::embedded::NatsServer::start_for_state(&for_state))
                .await
                .expect("starting the local nats-server panicked")?;
        let url = server.url();
        let client = self.connect(&url, Some(state)).await?;
        Ok(RunnerConnection { client, url, local: LocalServer::Started(server) })
    }

    /// Connects to `url` (as returned by [`NatsConfig::resolve_url`]); `local`: the state directory of the local
    /// server `riposte run` started, whose key is used when no other credential is given. Reconnects forever
    /// once connected; losing and regaining the connection is logged (warn / info).
    pub async fn connect(&self, url: &str, local: Option<&StateDir>) -> Result<async_nats::Client, NatsError> {
        let servers = Servers::parse(url)?;
        let shown = servers.display();
        let (mut opts, credential) = self.credential(&servers, local).await?;
        let lost = Arc::new(AtomicBool::new(false));
        let errors = self.server_errors.clone();
        opts = opts
            .name(&self.name)
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .client_capacity(65_536)
            .subscription_capacity(65_536)
            .event_callback(move |event| {
                let (lost, errors) = (lost.clone(), errors.clone());
                async move {
                    match (&errors, &event) {
                        (Some(to), async_nats::Event::ServerError(async_nats::ServerError::Other(text))) => {
                            let _ = to.send(text.clone());
                        }
                        _ => log_event(&event, &lost),
                    }
                }
            });
        if let Some(ca) = &self.ca {
            readable("CA certificates (--nats-ca)", ca)?;
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                readable("client certificate (--nats-cert)", cert)?;
                readable("client key (--nats-key)", key)?;
                if std::fs::read_to_string(cert).is_ok_and(|pem| is_x509_v1(&pem)) {
                    return Err(NatsError::CertificateV1 { path: cert.clone() });
                }
                opts = opts.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
            }
            (None, None) => {}
            _ => return Err(NatsError::HalfCertificate),
        }
        if servers.tls() {
            opts = opts.require_tls(true);
        }
        opts.connect(servers.addrs.clone()).await.map_err(|e| self.explain(e, &shown, credential, local.is_some()))
    }

    /// The client options carrying the one credential given, and how messages name it.
    async fn credential(
        &self,
        servers: &Servers,
        local: Option<&StateDir>,
    ) -> Result<(async_nats::ConnectOptions, Credential), NatsError> {
        if let (Some(_), Some(flag)) = (&servers.auth, self.auth.flag()) {
            return Err(NatsError::TwoCredentials(format!("credentials in the URL and {flag}")));
        }
        let opts = async_nats::ConnectOptions::new();
        if let Some(auth) = &servers.auth {
            return Ok(match auth.clone() {
                UrlAuth::User(user, pass) => (opts.user_and_password(user.clone(), pass), Credential::UrlUser { user }),
                UrlAuth::Token(token) => (opts.token(token), Credential::UrlToken),
            });
        }
        match &self.auth {
            Auth::User { user, password_file } => {
                let pass = secret_file("password (--nats-password-file)", password_file)?;
                let credential = Credential::User { user: user.clone(), password_file: password_file.clone() };
                return Ok((opts.user_and_password(user.clone(), pass), credential));
            }
            Auth::TokenFile(file) => {
                let token = secret_file("token (--nats-token-file)", file)?;
                return Ok((opts.token(token), Credential::TokenFile(file.clone())));
            }
            Auth::Nkey(path) => {
                let (seed, public) = read_seed("NKey seed (--nats-nkey)", path)?;
                return Ok((opts.nkey(seed), Credential::Nkey { public, path: path.clone() }));
            }
            Auth::Creds(path) => {
                readable("NATS credentials (--nats-creds)", path)?;
                let opts = opts.credentials_file(path).await.map_err(|e| NatsError::File {
                    what: "NATS credentials (--nats-creds)",
                    path: path.clone(),
                    source: e,
                })?;
                return Ok((opts, Credential::Creds(path.clone())));
            }
            Auth::None => {}
        }
        if let Some(state) = local {
            let path = crate::nats::embedded::local_seed(state);
            if path.exists() {
                let (seed, _) = read_seed("the local server's key", &path)?;
                return Ok((opts.nkey(seed), Credential::Local(path)));
            }
        }
        Ok((opts, Credential::None))
    }

    /// A connection error in words: which credential was refused, or what about TLS failed.
    fn explain(&self, e: async_nats::ConnectError, url: &str, credential: Credential, local: bool) -> NatsError {
        use async_nats::ConnectErrorKind as Kind;
        let url = url.to_owned();
        let why = chain(&e);
        let local_hint = " (the local nats-server recorded in the state dir is not running: start `riposte run`)";
        match e.kind() {
            Kind::AuthorizationViolation => {
                let hint = match &credential {
                    Credential::None if local => "the local server requires the key `riposte run` wrote in its \
                        state directory: run this command as the same user with the same --state-dir"
                        .to_owned(),
                    Credential::None => "the server requires a credential: give --nats-user with \
                        --nats-password-file, --nats-token-file, --nats-nkey, --nats-creds, or put it in the URL"
                        .to_owned(),
                    Credential::Local(_) => "the local server was started with another key: stop it and start \
                        `riposte run` again"
                        .to_owned(),
                    _ => "check that the server's configuration knows this credential".to_owned(),
                };
                NatsError::Refused { url, credential, hint }
            }
            // TLS failures arrive as TLS errors (the client's own configuration) or as I/O errors of the handshake.
            _ if e.kind() == Kind::Tls || is_tls(&why) => {
                NatsError::Tls { hint: tls_hint(&why, self.ca.is_some(), self.cert.is_some()), url, why }
            }
            _ => NatsError::Connect { url, why, hint: if local { local_hint } else { "" } },
        }
    }
}

/// The error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

fn is_tls(why: &str) -> bool {
    ["invalid peer certificate", "fatal alert", "TLS", "tls", "certificate"].iter().any(|w| why.contains(w))
}

fn tls_hint(why: &str, ca: bool, cert: bool) -> &'static str {
    if why.contains("NotValidForName") || why.contains("not valid for name") {
        ": the server's certificate is not valid for the host name in the URL: connect with a name it lists"
    } else if why.contains("UnknownIssuer") && !ca {
        ": the server's certificate is signed by a CA this machine does not trust: give it with --nats-ca"
    } else if why.contains("UnknownIssuer") || why.contains("BadSignature") {
        ": the server's certificate is not signed by the CA in --nats-ca"
    } else if why.contains("certificate or key") || why.contains("private key") {
        ": --nats-cert must hold the client certificate (PEM) and --nats-key its own key (PEM: PKCS#8, PKCS#1 or \
         SEC1)"
    } else if !cert && (why.contains("CertificateRequired") || why.contains("BadCertificate")) {
        ": the server requires a client certificate: give --nats-cert and --nats-key"
    } else if why.contains("BadCertificate") || why.contains("UnknownCA") {
        ": the server refused the client certificate: it must be signed by a CA the server trusts"
    } else if why.contains("tls") && why.contains("required") {
        ": the server requires TLS: give --nats-ca (the CA that signed its certificate) or use tls://"
    } else {
        ""
    }
}

fn log_event(event: &async_nats::Event, lost: &AtomicBool) {
    use async_nats::Event;
    match event {
        Event::Disconnected => {
            lost.store(true, Ordering::Relaxed);
            tracing::warn!("lost the connection to NATS; reconnecting");
        }
        Event::Connected if lost.swap(false, Ordering::Relaxed) => tracing::info!("reconnected to NATS"),
        Event::ServerError(e) => tracing::warn!("NATS server: {e}"),
        Event::ClientError(e) => tracing::warn!("NATS client: {e}"),
        Event::SlowConsumer(_) | Event::LameDuckMode => tracing::warn!("NATS: {event}"),
        _ => {}
    }
}

fn readable(what: &'static str, path: &Path) -> Result<(), NatsError> {
    std::fs::File::open(path).map(|_| ()).map_err(|e| NatsError::File { what, path: path.into(), source: e })
}

/// Whether the first certificate of a PEM text is X.509 version 1: its TBSCertificate does not start with the
/// explicit `[0]` version field (version 1 is the default, and leaves it out). rustls refuses such a client
/// certificate with a message that does not say why; riposte checks before connecting and names the fix.
pub(crate) fn is_x509_v1(pem: &str) -> bool {
    use base64::Engine;
    let Some(start) = pem.find("-----BEGIN CERTIFICATE-----") else { return false };
    let body = &pem[start + "-----BEGIN CERTIFICATE-----".len()..];
    let Some(end) = body.find("-----END CERTIFICATE-----") else { return false };
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) else { return false };
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] EXPLICIT version OPTIONAL, serial, … }, … }
    let tbs = der_contents(&der, 0x30).and_then(|certificate| der_contents(certificate, 0x30));
    tbs.is_some_and(|tbs| tbs.first() != Some(&0xA0))
}

/// The contents of the DER element at the start of `b` when its tag is `tag` (definite lengths up to 64 KiB).
fn der_contents(b: &[u8], tag: u8) -> Option<&[u8]> {
    if *b.first()? != tag {
        return None;
    }
    let (len, header) = match *b.get(1)? {
        short if short < 0x80 => (usize::from(short), 2),
        0x81 => (usize::from(*b.get(2)?), 3),
        0x82 => (usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
        _ => return None,
    };
    b.get(header..header + len)
}

/// A password or token file: its content without the trailing newline.
fn secret_file(what: &'static str, path: &Path) -> Result<String, NatsError> {
    let text = std::fs::read_to_string(path).map_err(|e| NatsError::File { what, path: path.into(), source: e })?;
    let secret = text.trim_end_matches(['\n', '\r']).to_owned();
    if secret.is_empty() {
        return Err(NatsError::EmptyFile { what, path: path.into() });
    }
    Ok(secret)
}

/// An NKey user seed file (the seed alone, or among other lines as `nsc` writes it): the seed and its public key.
fn read_seed(what: &'static str, path: &Path) -> Result<(String, String), NatsError> {
    let text = std::fs::read_to_string(path).map_err(|e| NatsError::File { what, path: path.into(), source: e })?;
    let seed = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("SU"))
        .ok_or_else(|| NatsError::BadSeed { path: path.into(), why: "no such line".into() })?;
    let pair =
        nkeys::KeyPair::from_seed(seed).map_err(|e| NatsError::BadSeed { path: path.into(), why: e.to_string() })?;
    Ok((seed.to_owned(), pair.public_key()))
}

/// The URL without its password or token, for messages.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}***@{}", &one[..scheme + 3], &one[at + 1..]),
            (None, Some(at)) => format!("***@{}", &one[at + 1..]),
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openssl in `dir`, panicking with its error.
    fn openssl(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn the_credential_flags_resolve_to_one_credential_or_say_which_collide() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(Auth::from_flags(None, None, None, None, None).unwrap(), Auth::None);
        assert_eq!(Auth::from_flags(None, None, None, p("/seed"), None).unwrap(), Auth::Nkey("/seed".into()));
        let user = Auth::from_flags(Some("u".into()), p("/pw"), None, None, None).unwrap();
        assert_eq!(user, Auth::User { user: "u".into(), password_file: "/pw".into() });
        let two = Auth::from_flags(Some("u".into()), p("/pw"), p("/token"), None, p("/c")).unwrap_err();
        assert_eq!(two.to_string(), "--nats-user and --nats-token-file and --nats-creds: give one credential");
        for half in [(Some("u".to_owned()), None), (None, p("/pw"))] {
            let e = Auth::from_flags(half.0, half.1, None, None, None).unwrap_err();
            assert!(matches!(e, NatsError::HalfUser), "{e}");
        }
    }

    #[test]
    fn a_version_1_client_certificate_is_named_as_such_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-subj",
                "/CN=ca",
            ],
        );
        openssl(d, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "c.key", "-out", "c.csr", "-subj", "/CN=c"]);
        std::fs::write(d.join("c.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        let sign = ["x509", "-req", "-in", "c.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"];
        openssl(d, &[&sign[..], &["-out", "v1.pem"]].concat());
        openssl(d, &[&sign[..], &["-out", "v3.pem", "-extfile", "c.ext"]].concat());
        let read = |name: &str| std::fs::read_to_string(d.join(name)).unwrap();
        assert!(is_x509_v1(&read("v1.pem")), "openssl x509 -req without -extfile makes version 1");
        assert!(!is_x509_v1(&read("v3.pem")));
        assert!(!is_x509_v1(&read("ca.pem")), "openssl req -x509 makes version 3");
        assert!(!is_x509_v1("not a certificate"));

        let config = NatsConfig { cert: Some(d.join("v1.pem")), key: Some(d.join("c.key")), ..NatsConfig::default() };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let Err(e) = rt.block_on(config.connect("tls://127.0.0.1:9", None)) else {
            panic!("refused before connecting")
        };
        let text = e.to_string();
        assert!(text.contains("X.509 version 1") && text.contains("-extfile"), "{text}");
    }

    #[test]
    fn urls_lose_their_secrets_in_messages() {
        assert_eq!(redact_url("nats://u:p@h:4222,nats://tok@h2"), "nats://***@h:4222,nats://***@h2");
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
        assert_eq!(redact_url("u:p@h:4222"), "***@h:4222");
    }

    #[test]
    fn a_server_list_parses_with_credentials_in_any_url() {
        let s = Servers::parse("nats://a:4222, nats://run%40x:p%3Aw@b:4223,tls://c").unwrap();
        assert_eq!(s.display(), "nats://a:4222,nats://b:4223,tls://c");
        assert_eq!(s.auth, Some(UrlAuth::User("run@x".into(), "p:w".into())));
        assert!(s.tls());
        let s = Servers::parse("t0ken@a:4222,nats://t0ken@b").unwrap();
        assert_eq!(s.auth, Some(UrlAuth::Token("t0ken".into())));
        assert_eq!(s.display(), "nats://a:4222,nats://b");
        assert!(!s.tls());
    }

    #[test]
    fn bad_server_lists_are_refused_without_their_secrets() {
        for bad in ["nats://u:s3cret@a:99999", "http://u:s3cret@a", "", "nats://u:s3cret@"] {
            let e = Servers::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("--nats"), "{e}");
        }
        let e = Servers::parse("nats://u:s3cret@a,nats://v:other@b").unwrap_err().to_string();
        assert!(e.contains("different credentials") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn credentials_are_named_never_shown() {
        let c = Credential::User { user: "runner".into(), password_file: "/p".into() };
        assert_eq!(c.to_string(), "user \"runner\" with the password in /p");
        assert_eq!(Credential::UrlToken.to_string(), "the token in the URL");
    }
}
