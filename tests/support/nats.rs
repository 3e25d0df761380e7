//! A real nats-server (JetStream on, temp store dir, random port on 127.0.0.1) for integration tests, killed
//! on drop; restartable on the same port and store to test that nothing is lost.

use riposte::embedded::NatsServer;

/// A nats-server owned by one test.
pub struct TestNats {
    server: Option<NatsServer>,
    pub dir: tempfile::TempDir,
    port: u16,
}

impl TestNats {
    /// Starts a fresh server.
    pub fn start() -> TestNats {
        let dir = tempfile::tempdir().unwrap();
        let server = NatsServer::start(dir.path(), 0).expect("nats-server starts (apt-get install nats-server)");
        let port = server.port();
        TestNats { server: Some(server), dir, port }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.server.take().unwrap().kill();
        self.server = Some(NatsServer::start(self.dir.path(), self.port).expect("nats-server restarts"));
    }

    /// A client connected to it.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new().max_reconnects(None).connect(self.url()).await.unwrap()
    }
}
