//! The real `http` backend: requests go through the configured proxy (on-premises networks), replies of any
//! status come back as replies, and an unreachable server is a retryable failure.

use riposte::execute::capability::http::{HttpClient, HttpConfig};
use riposte::execute::capability::{Http, HttpRequest};
use riposte::model::wit::CallError;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn get(url: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        url: url.into(),
        headers: vec![("x-test".into(), "1".into())],
        body: None,
        verify_tls: true,
    }
}

#[tokio::test]
async fn requests_go_through_the_proxy() {
    let proxy = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/hello"))
        .and(header("host", "playbook-target.invalid"))
        .respond_with(ResponseTemplate::new(418).set_body_string("via proxy"))
        .expect(1)
        .mount(&proxy)
        .await;
    let client = HttpClient::new(&HttpConfig { proxy: Some(proxy.uri()), ..Default::default() }).unwrap();
    let reply = client.send(get("http://playbook-target.invalid/hello")).await.unwrap();
    assert_eq!(reply.status, 418, "a 4xx is a reply, not an error");
    assert_eq!(reply.body, b"via proxy");
}

#[tokio::test]
async fn an_unreachable_server_is_a_failure_that_hides_the_path() {
    let client = HttpClient::new(&HttpConfig::default()).unwrap();
    let err = client.send(get("http://127.0.0.1:9/services/SECRET")).await.unwrap_err();
    match err {
        CallError::Failed(msg) => {
            assert!(msg.contains("http://127.0.0.1:9"), "{msg}");
            assert!(!msg.contains("SECRET"), "{msg}");
        }
        other => panic!("expected failed, got {other:?}"),
    }
}
