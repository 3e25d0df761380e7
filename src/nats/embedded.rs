//! A local nats-server with JetStream, started as a child process: what `riposte run` uses when no `--nats`
//! is given (data in `<state>/nats`, listening on 127.0.0.1, its URL recorded in `<state>/nats/url` so the
//! other commands find it), and what the tests start. Killed when dropped.
//!
//! The local server is not open to other local users: on first start `riposte run` generates an NKey user
//! (seed in `<state>/nats/client.nk`, mode 0600; the state directory and `<state>/nats` are made 0700) and the
//! server accepts only that key (`<state>/nats/server.conf` names its public key). The other commands read the
//! seed from the same state directory.

use crate::model::state_dir::StateDir;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nats-server child.
pub struct NatsServer {
    child: Child,
    port: u16,
    url_file: Option<PathBuf>,
}

/// Why the local server could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("nats-server is not installed: install it with `apt-get install nats-server` (or put it on PATH, or set RIPOSTE_NATS_SERVER), or pass --nats URL to use a running server")]
    NotInstalled,
    #[error("cannot start nats-server: {0}")]
    Start(String),
    #[error("cannot prepare the local server's credentials in {path}: {why}")]
    Credentials { path: String, why: String },
    #[error("nats-server did not accept connections on 127.0.0.1:{port} within 10 s; see {log}")]
    NotReady { port: u16, log: String },
}

impl NatsServer {
    /// Starts nats-server with JetStream storing in `store_dir`, on `port` (0: a port the server picks itself and
    /// reports in a ports file, so two servers started at once can never race for the same free port), 127.0.0.1 only.
    pub fn start(store_dir: &Path, port: u16) -> Result<NatsServer, EmbeddedError> {
        NatsServer::launch(store_dir, port, None, &["-js"])
    }

    /// [`NatsServer::start`] with a nats-server configuration file (`-c`) for what the command line cannot say
    /// (authorization, TLS, accounts); the command line's JetStream, address, port and store still apply.
    pub fn start_with_config(store_dir: &Path, port: u16, config: Option<&Path>) -> Result<NatsServer, EmbeddedError> {
        NatsServer::launch(store_dir, port, config, &["-js"])
    }

    /// [`start`](Self::start) with other nats-server options than `-js` (none: JetStream off; `--user`...).
    pub fn start_with_args(store_dir: &Path, port: u16, args: &[&str]) -> Result<NatsServer, EmbeddedError> {
        NatsServer::launch(store_dir, port, None, args)
    }

    fn launch(store_dir: &Path, port: u16, config: Option<&Path>, args: &[&str]) -> Result<NatsServer, EmbeddedError> {
        std::fs::create_dir_all(store_dir)
            .map_err(|e| EmbeddedError::Start(format!("{}: {e}", store_dir.display())))?;
        let log = store_dir.join("nats-server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| EmbeddedError::Start(format!("{}: {e}", log.display())))?;
        // A fresh folder for this start's ports file: the one file in it is this server's.
        let ports_dir = store_dir.join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir)
            .map_err(|e| EmbeddedError::Start(format!("{}: {e}", ports_dir.display())))?;
        let binary = std::env::var_os("RIPOSTE_NATS_SERVER").map(PathBuf::from).unwrap_or_else(|| "nats-server".into());
        let port_arg = if port == 0 { "-1".to_owned() } else { port.to_string() };
        let mut command = Command::new(&binary);
        if let Some(config) = config {
            command.arg("-c").arg(config);
        }
        let child = command
            .args(args)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-sd"])
            .arg(store_dir)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => EmbeddedError::NotInstalled,
                _ => EmbeddedError::Start(e.to_string()),
            })?;
        let mut server = NatsServer { child, port, url_file: None };
        let deadline = Instant::now() + Duration::from_secs(10);
        // The server writes its ports file once it listens; a connection there confirms it is this server.
        loop {
            if let Some(p) = reported_port(&ports_dir) {
                if TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], p)), Duration::from_millis(200))
                    .is_ok()
                {
                    server.port = p;
                    break;
                }
            }
            if Instant::now() > deadline || matches!(server.child.try_wait(), Ok(Some(_))) {
                return Err(EmbeddedError::NotReady { port, log: log.display().to_string() });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    /// Starts the state directory's server, accepting only the state directory's key (generated on first start),
    /// and records its URL for the other commands.
    pub fn start_for_state(state: &StateDir) -> Result<NatsServer, EmbeddedError> {
        let dir = state.root().join("nats");
        let config = prepare_credentials(state)?;
        let mut server = NatsServer::start_with_config(&dir, 0, Some(&config))?;
        let url_file = dir.join("url");
        std::fs::write(&url_file, server.url())
            .map_err(|e| EmbeddedError::Start(format!("{}: {e}", url_file.display())))?;
        server.url_file = Some(url_file);
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(f) = &self.url_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// The NKey seed of the local server's only user (`<state>/nats/client.nk`).
pub fn local_seed(state: &StateDir) -> PathBuf {
    state.root().join("nats").join("client.nk")
}

/// Makes the state directory and `<state>/nats` private (0700), generates the local user's seed on first start
/// (0600), and writes the server configuration accepting only that user; returns the configuration's path.
fn prepare_credentials(state: &StateDir) -> Result<PathBuf, EmbeddedError> {
    let fail = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| EmbeddedError::Credentials { path, why: e.to_string() }
    };
    let root = state.root();
    let dir = root.join("nats");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(fail(&dir))?;
    for d in [root, dir.as_path()] {
        private(d, 0o700).map_err(fail(d))?;
    }
    let seed_file = local_seed(state);
    let seed = match std::fs::read_to_string(&seed_file) {
        Ok(text) => text.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = nkeys::KeyPair::new_user().seed().map_err(|e| EmbeddedError::Credentials {
                path: seed_file.display().to_string(),
                why: e.to_string(),
            })?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&seed_file)
                .map_err(fail(&seed_file))?;
            writeln!(f, "{seed}").map_err(fail(&seed_file))?;
            seed
        }
        Err(e) => return Err(fail(&seed_file)(e)),
    };
    private(&seed_file, 0o600).map_err(fail(&seed_file))?;
    let public = nkeys::KeyPair::from_seed(&seed)
        .map_err(|e| EmbeddedError::Credentials {
            path: seed_file.display().to_string(),
            why: format!("not an NKey seed ({e}): delete it, and `riposte run` makes a new one"),
        })?
        .public_key();
    let config = dir.join("server.conf");
    let text = format!(
        "# Written by riposte run: only the key in client.nk may connect.\nauthorization {{ users = [ {{ nkey: \"{public}\" }} ] }}\n"
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&config)
        .map_err(fail(&config))?;
    f.write_all(text.as_bytes()).map_err(fail(&config))?;
    Ok(config)
}

/// Sets `mode` on `path` unless it already has no more than that.
fn private(path: &Path, mode: u32) -> std::io::Result<()> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The URL of the local server `riposte run` recorded, when there is one.
pub fn recorded_url(state: &StateDir) -> Option<String> {
    let text = std::fs::read_to_string(state.root().join("nats").join("url")).ok()?;
    Some(text.trim().to_owned()).filter(|u| !u.is_empty())
}

/// The client port in the one ports file nats-server wrote in `dir` (`{"nats":["nats://127.0.0.1:PORT"]}`).
fn reported_port(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "ports"))?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = ports.get("nats")?.as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}
