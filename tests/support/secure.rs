//! Credentials for secured nats-servers, made in the test: a private CA with server and client certificates
//! (openssl; client keys in PKCS#8, PKCS#1 and SEC1), and the operator / account / user JWTs of NATS'
//! decentralized auth (keys from the `nkeys` crate, JWTs encoded here as nats-server's jwt v2 library expects),
//! with `.creds` files as `nsc` writes them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use nkeys::KeyPair;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A private CA and the certificates it signed, as PEM files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
}

/// The client key formats mutual TLS must accept.
pub const KEY_KINDS: [&str; 3] = ["pkcs8", "pkcs1", "sec1"];

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    /// Makes the CA (`ca.pem`), a server certificate for 127.0.0.1 and localhost (`server.pem`/`server.key`), one
    /// for another name only (`wrongname.pem`/`.key`), and one client certificate per [`KEY_KINDS`]
    /// (`client-<kind>.pem`/`.key`), all under `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let mut ca =
            vec!["req", "-x509", "-days", "2", "-subj", "/CN=riposte test CA", "-keyout", "ca.key", "-out", "ca.pem"];
        ca.extend(ec);
        openssl(dir, &ca);
        let sign = |name: &str, ext: &str| {
            std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
            openssl(
                dir,
                &[
                    "req",
                    "-new",
                    "-key",
                    &format!("{name}.key"),
                    "-subj",
                    &format!("/CN={name}"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-days",
                    "2",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-extfile",
                    &format!("{name}.ext"),
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        };
        let server_ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
        openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key"]);
        sign("server", server_ext);
        openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "wrongname.key"]);
        sign("wrongname", "subjectAltName=DNS:nats.other.example\nextendedKeyUsage=serverAuth\n");
        let client_ext = "extendedKeyUsage=clientAuth\n";
        openssl(dir, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "client-pkcs8.key"]);
        openssl(dir, &["genrsa", "-traditional", "-out", "client-pkcs1.key", "2048"]);
        openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "client-sec1.key"]);
        for kind in KEY_KINDS {
            sign(&format!("client-{kind}"), client_ext);
        }
        let pki = Pki { dir: dir.to_owned() };
        assert!(std::fs::read_to_string(pki.key("pkcs8")).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(std::fs::read_to_string(pki.key("pkcs1")).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(std::fs::read_to_string(pki.key("sec1")).unwrap().starts_with("-----BEGIN EC PRIVATE KEY-----"));
        pki
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub fn ca(&self) -> String {
        self.path("ca.pem")
    }

    pub fn cert(&self, kind: &str) -> String {
        self.path(&format!("client-{kind}.pem"))
    }

    pub fn key(&self, kind: &str) -> String {
        self.path(&format!("client-{kind}.key"))
    }

    /// The `tls { }` block of a server config presenting `server` (or `wrongname`); `verify`: client certificates
    /// required and checked against the CA.
    pub fn server_tls(&self, name: &str, verify: bool) -> String {
        format!(
            "tls {{ cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\", verify: {verify}, timeout: 5 }}\n",
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
            self.ca()
        )
    }
}

/// A JWT signed with an NKey (`alg: ed25519-nkey`), as nats-server's jwt v2 library decodes it.
pub fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let mut claims = serde_json::json!({
        "iat": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let hash = sha2::Sha256::digest(claims.to_string().as_bytes());
    claims["jti"] = data_encoding::BASE32_NOPAD.encode(&hash).into();
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = issuer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// An operator with one account (JetStream enabled, no limits) and the system account nats-server needs for
/// JetStream in operator mode, as a server configuration with the memory resolver; users are issued with
/// [`Operator::creds`].
pub struct Operator {
    pub operator: KeyPair,
    pub account: KeyPair,
    system: KeyPair,
    operator_jwt: String,
    account_jwt: String,
    system_jwt: String,
}

impl Operator {
    pub fn new() -> Operator {
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let operator_jwt = jwt(
            &operator,
            &operator.public_key(),
            "riposte-test",
            serde_json::json!({"type": "operator", "version": 2}),
        );
        let account_jwt = jwt(
            &operator,
            &account.public_key(),
            "riposte",
            serde_json::json!({
                "type": "account", "version": 2,
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
                    "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
                },
                "default_permissions": {"pub": {}, "sub": {}}
            }),
        );
        let system = KeyPair::new_account();
        let system_jwt = jwt(
            &operator,
            &system.public_key(),
            "SYS",
            serde_json::json!({"type": "account", "version": 2, "limits": {"subs": -1, "data": -1, "payload": -1, "conn": -1}}),
        );
        Operator { operator, account, system, operator_jwt, account_jwt, system_jwt }
    }

    /// The server configuration: operator JWT, memory resolver preloaded with the account.
    pub fn server_config(&self) -> String {
        format!(
            "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{ {}: \"{}\", {}: \"{}\" }}\n",
            self.operator_jwt,
            self.system.public_key(),
            self.account.public_key(),
            self.account_jwt,
            self.system.public_key(),
            self.system_jwt
        )
    }

    /// A `.creds` file for a new user of `issuer` (this operator's account, or another one the server does not
    /// know), written at `path`.
    pub fn creds(issuer: &KeyPair, path: &Path) {
        let user = KeyPair::new_user();
        let user_jwt = jwt(
            issuer,
            &user.public_key(),
            "runner",
            serde_json::json!({"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}),
        );
        let text = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n",
            user.seed().unwrap()
        );
        std::fs::write(path, text).unwrap();
    }
}
