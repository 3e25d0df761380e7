//! A real nats-server (JetStream on, temp store dir, random port on 127.0.0.1) for integration tests, killed
//! on drop; restartable on the same port and store to test that nothing is lost.

use riposte::nats::embedded::NatsServer;

/// A nats-server owned by one test.
pub struct TestNats {
    server: Option<NatsServer>,
    pub dir: tempfile::TempDir,
    port: u16,
    config: Option<std::path::PathBuf>,
}

impl TestNats {
    /// Starts a fresh server.
    pub fn start() -> TestNats {
        super::init();
        let dir = tempfile::tempdir().unwrap();
        let server = NatsServer::start(dir.path(), 0).expect("nats-server starts (apt-get install nats-server)");
        let port = server.port();
        TestNats { server: Some(server), dir, port, config: None }
    }

    /// Starts a fresh server with a configuration (nats-server syntax: authorization, TLS, accounts), written to
    /// `server.conf` in its store directory; JetStream, 127.0.0.1 and the port still come from the command line.
    pub fn start_with_config(config: &str) -> TestNats {
        super::init();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.conf");
        std::fs::write(&path, config).unwrap();
        let server = NatsServer::start_with_config(dir.path(), 0, Some(&path)).unwrap_or_else(|e| {
            let log = std::fs::read_to_string(dir.path().join("nats-server.log")).unwrap_or_default();
            panic!("nats-server starts with {config}: {e}\n{log}")
        });
        let port = server.port();
        TestNats { server: Some(server), dir, port, config: Some(path) }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the server logged (permission violations, refused connections).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default()
    }

    /// Starts a fresh server with other options than `-js`: `&[]` for one without JetStream,
    /// `&["-js", "--user", "u", "--pass", "p"]` for one that wants credentials.
    pub fn start_with(args: &[&str]) -> TestNats {
        super::init();
        let dir = tempfile::tempdir().unwrap();
        let server =
            NatsServer::start_with_args(dir.path(), 0, args).expect("nats-server starts (apt-get install nats-server)");
        let port = server.port();
        TestNats { server: Some(server), dir, port, config: None }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Kills the server (SIGKILL); [`TestNats::start_again`] brings it back.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
    }

    /// Starts the stopped server again on the same port and store.
    pub fn start_again(&mut self) {
        self.server = Some(
            NatsServer::start_with_config(self.dir.path(), self.port, self.config.as_deref())
                .expect("nats-server restarts"),
        );
    }

    /// A client connected to it.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new().max_reconnects(None).connect(self.url()).await.unwrap()
    }
}
