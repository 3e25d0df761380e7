//! A real Prometheus (Debian's `prometheus`, installed by scripts/setup) on a free local port, scraping the
//! targets it is given every second with the rule files it is given, queried through its HTTP API.

use super::wait_until;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TestPrometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for TestPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestPrometheus {
    /// Scrapes `targets` (host:port) as job `job` every second; evaluates `rules` every second.
    pub async fn start(job: &str, targets: &[&str], rules: &[PathBuf]) -> TestPrometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": rules,
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
        });
        // JSON is YAML: Prometheus reads it as its configuration file.
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("prometheus (Debian package prometheus: bash scripts/setup installs it)");
        let prometheus = TestPrometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        wait_until("prometheus ready", Duration::from_secs(60), || async {
            reqwest::get(format!("{}/-/ready", prometheus.url)).await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        prometheus
    }

    /// `GET /api/v1/<path>`'s `data`, with the query parameters given.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let r = reqwest::Client::new().get(format!("{}/api/v1/{path}", self.url)).query(query).send().await.unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// The instant vector `expr` evaluates to now.
    pub async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let data = self.api("query", &[("query", expr)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value `expr` evaluates to now (None when empty).
    pub async fn value(&self, expr: &str) -> Option<f64> {
        self.query(expr).await.first().and_then(|s| s["value"].get(1)?.as_str()?.parse().ok())
    }
}
