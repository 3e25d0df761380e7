//! Setting values sealed at rest. A function's secret settings are stored in the registry (a NATS KV bucket,
//! so also in JetStream's files on disk) encrypted with a key that deployers and runners hold and NATS never
//! sees: whoever reads the bucket without the key reads setting names and ciphertext only.
//!
//! Why XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`: audited, pure Rust, no C toolchain) and not `age`:
//! every party that seals (deployers) is also trusted to open (runners run the values), so a shared symmetric
//! key is all a fleet needs; age's X25519 recipients would add a second key kind to distribute for no
//! separation anyone uses. The 192-bit nonce makes random nonces safe for any number of deploys. Each value is
//! bound to its function and setting name (associated data): a ciphertext moved to another function or setting
//! does not open. A sealed value reads `sealed:v2:<key id>:<base64url(nonce ‖ ciphertext)>`; the key id (8 hex
//! digits of a digest of the key, which says nothing about the key) names which key a runner lacks.
//!
//! The length of a ciphertext is the length of its plaintext, so v2 pads the value before sealing: a 0x80 byte
//! then zeros up to the next multiple of [`PAD_BLOCK`] bytes (ISO/IEC 7816-4, unambiguous for any value), so a
//! sealed value tells only its length to within 32 bytes. Values sealed by v1 (unpadded, their own associated
//! data) still open; deploying again seals them as v2.
//!
//! A key file is either exactly 32 random bytes (`head -c 32 /dev/urandom > FILE`), or text with one key a
//! line, base64 of 32 bytes (`#` comments allowed; what `riposte settings-key new FILE` writes). Values are
//! sealed with the first key and opened with whichever key sealed them, so a key is rotated by putting a new
//! one first everywhere, deploying again, then removing the old line. Settings a manifest declares
//! `secret = false` are stored in clear (they are shown by `export`); a function without secret settings needs
//! no key.

use crate::model::function::{Function, Settings};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What every sealed value starts with (v2: padded).
const PREFIX: &str = "sealed:v2:";
/// What values sealed before padding start with: still opened.
const PREFIX_V1: &str = "sealed:v1:";
/// Padded values are a multiple of this many bytes.
pub const PAD_BLOCK: usize = 32;
/// Bytes of a key.
pub const KEY_BYTES: usize = 32;
/// Bytes of an XChaCha20 nonce.
const NONCE_BYTES: usize = 24;
/// A key file larger than this is not a key file.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
/// How to make a key file, for error messages.
const MAKE_ONE: &str = "make one with `riposte settings-key new FILE` (or `head -c 32 /dev/urandom > FILE`)";

/// The keys setting values are sealed with (the first) and opened with (any).
#[derive(Clone)]
pub struct SettingsKeys {
    keys: Vec<Key>,
}

#[derive(Clone)]
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SettingsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|k| &k.id)).finish()
    }
}

/// Why a key file cannot be used, or a value cannot be sealed or opened. Never holds a value or a key.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot read the settings key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the settings key file {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("settings key file {path}, line {line}: not a key (base64 of 32 bytes, or the file is 32 raw bytes); {MAKE_ONE}")]
    Malformed { path: PathBuf, line: usize },
    #[error("settings key file {0} holds no key; {MAKE_ONE}")]
    Empty(PathBuf),
    #[error("function {function} has secret settings and no settings key was given: pass --settings-key-file FILE (env RIPOSTE_SETTINGS_KEY_FILE), the key file every runner of this NATS has; {MAKE_ONE}")]
    NoKey { function: String },
    #[error("function {function}: setting {name} is sealed with settings key {key_id}, which this runner does not have: give it that key file (--settings-key-file, RIPOSTE_SETTINGS_KEY_FILE), or deploy the function again with this runner's key")]
    UnknownKey { function: String, name: String, key_id: String },
    #[error("function {function}: setting {name} does not open with settings key {key_id} (altered, or moved from another function or setting): deploy the function again")]
    Corrupt { function: String, name: String, key_id: String },
    #[error("function {function}: setting {name} is stored in clear (deployed by an older riposte): deploy the function again")]
    NotSealed { function: String, name: String },
}

impl SettingsKeys {
    /// Reads a key file: 32 raw bytes, or one key a line (base64 of 32 bytes), blank lines and `#` comments
    /// ignored.
    pub fn load(path: &Path) -> Result<SettingsKeys, SealError> {
        let read = |source| SealError::Read { path: path.to_owned(), source };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_KEY_FILE_BYTES {
            return Err(SealError::Malformed { path: path.to_owned(), line: 1 });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        SettingsKeys::parse(&bytes).map_err(|line| match line {
            0 => SealError::Empty(path.to_owned()),
            line => SealError::Malformed { path: path.to_owned(), line },
        })
    }

    /// The key file at `path`, created with a new random key (mode 0600) when there is none.
    pub fn load_or_generate(path: &Path) -> Result<SettingsKeys, SealError> {
        match SettingsKeys::generate(path) {
            Err(SealError::Create { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                SettingsKeys::load(path)
            }
            other => other,
        }
    }

    /// Writes a new key file (mode 0600) with one random key, base64; refuses to overwrite a file. The file
    /// appears whole or not at all (written aside, then linked into place), so a reader racing the writer
    /// never reads half a key.
    pub fn generate(path: &Path) -> Result<SettingsKeys, SealError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let create = |source| SealError::Create { path: path.to_owned(), source };
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let text =
            format!("# riposte settings key: keep it secret (README \"Settings at rest\")\n{}\n", STANDARD.encode(key));
        let keys = SettingsKeys::parse(text.as_bytes()).expect("a new key reads");
        if path.exists() {
            return Err(create(std::io::ErrorKind::AlreadyExists.into()));
        }
        let aside = path.with_extension(format!("new{}-{}", std::process::id(), keys.sealing_key_id()));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&aside)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::hard_link(&aside, path)
        })();
        let _ = std::fs::remove_file(&aside);
        written.map_err(create)?;
        Ok(keys)
    }

    /// Keys from a key file's bytes; `Err(line)` names a malformed line (0: no key at all).
    pub fn parse(bytes: &[u8]) -> Result<SettingsKeys, usize> {
        if bytes.len() == KEY_BYTES {
            // 32 raw bytes (a base64 key line is 44 characters: never this long).
            return Ok(SettingsKeys { keys: vec![Key::new(bytes)] });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| 1usize)?;
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match STANDARD.decode(line) {
                Ok(key) if key.len() == KEY_BYTES => keys.push(Key::new(&key)),
                _ => return Err(i + 1),
            }
        }
        if keys.is_empty() {
            return Err(0);
        }
        Ok(SettingsKeys { keys })
    }

    /// The id of the key values are sealed with.
    pub fn sealing_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals the value of setting `name` of `function` with the first key.
    pub fn seal(&self, function: &str, name: &str, value: &str) -> String {
        let key = &self.keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(function, name);
        let ciphertext = key
            .cipher
            .encrypt(&nonce, Payload { msg: &pad(value.as_bytes()), aad: &aad })
            .expect("XChaCha20-Poly1305 seals any value under 256 GiB");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}:{}", key.id, URL_SAFE_NO_PAD.encode(blob))
    }

    /// Opens a sealed value of setting `name` of `function` with whichever key sealed it.
    pub fn open(&self, function: &str, name: &str, sealed: &str) -> Result<String, SealError> {
        let (version, key_id, blob) = split(sealed)
            .ok_or_else(|| SealError::NotSealed { function: function.to_owned(), name: name.to_owned() })?;
        let corrupt =
            || SealError::Corrupt { function: function.to_owned(), name: name.to_owned(), key_id: key_id.to_owned() };
        let key = self.keys.iter().find(|k| k.id == key_id).ok_or_else(|| SealError::UnknownKey {
            function: function.to_owned(),
            name: name.to_owned(),
            key_id: key_id.to_owned(),
        })?;
        let blob = URL_SAFE_NO_PAD.decode(blob).map_err(|_| corrupt())?;
        if blob.len() < NONCE_BYTES {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_BYTES);
        let aad = match version {
            Version::V1 => associated_data_v1(function, name),
            Version::V2 => associated_data(function, name),
        };
        let plain = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| corrupt())?;
        let plain = match version {
            Version::V1 => plain,
            Version::V2 => unpad(plain).ok_or_else(corrupt)?,
        };
        String::from_utf8(plain).map_err(|_| corrupt())
    }
}

impl Key {
    fn new(bytes: &[u8]) -> Key {
        let digest = Sha256::new().chain_update(b"riposte settings key\0").chain_update(bytes).finalize();
        let cipher = XChaCha20Poly1305::new_from_slice(bytes).expect("a 32-byte key");
        Key { id: hex::encode(&digest[..4]), cipher }
    }
}

/// The key id a stored value is sealed with, when it is sealed.
pub fn sealed_with(value: &str) -> Option<&str> {
    split(value).map(|(_, id, _)| id)
}

/// The formats a sealed value may be in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Version {
    /// Unpadded (before padding came in): opened, never written.
    V1,
    /// Padded to a multiple of [`PAD_BLOCK`].
    V2,
}

fn split(sealed: &str) -> Option<(Version, &str, &str)> {
    let (version, rest) = match sealed.strip_prefix(PREFIX) {
        Some(rest) => (Version::V2, rest),
        None => (Version::V1, sealed.strip_prefix(PREFIX_V1)?),
    };
    let (id, blob) = rest.split_once(':')?;
    Some((version, id, blob))
}

/// The value, then 0x80, then zeros up to the next multiple of [`PAD_BLOCK`] (at least one byte is added).
fn pad(value: &[u8]) -> Vec<u8> {
    let len = (value.len() / PAD_BLOCK + 1) * PAD_BLOCK;
    let mut padded = Vec::with_capacity(len);
    padded.extend_from_slice(value);
    padded.push(0x80);
    padded.resize(len, 0);
    padded
}

/// The value [`pad`] padded; None when the padding is not there.
fn unpad(mut padded: Vec<u8>) -> Option<Vec<u8>> {
    let end = padded.iter().rposition(|&b| b != 0)?;
    if padded[end] != 0x80 || !padded.len().is_multiple_of(PAD_BLOCK) {
        return None;
    }
    padded.truncate(end);
    Some(padded)
}

/// v2's associated data: the version is bound too, so a v1 ciphertext relabelled v2 (or back) does not open.
fn associated_data(function: &str, name: &str) -> Vec<u8> {
    format!("riposte settings v2\0{function}\0{name}").into_bytes()
}

fn associated_data_v1(function: &str, name: &str) -> Vec<u8> {
    format!("riposte settings v1\0{function}\0{name}").into_bytes()
}

/// Whether the function has settings to seal (secret ones under its manifest): only then a key is needed.
pub fn needs_key(function: &Function) -> bool {
    has_secret_settings(&function.manifest, &function.settings)
}

/// Whether any of `settings` is secret under `manifest` (before a [`Function`] exists: deploy checks it before
/// building).
pub fn has_secret_settings(manifest: &crate::model::manifest::Manifest, settings: &Settings) -> bool {
    settings.names().any(|n| manifest.is_secret(n))
}

/// `function` as stored: its secret setting values sealed with `keys` (refused without keys when it has any).
pub fn seal_settings(keys: Option<&SettingsKeys>, function: &Function) -> Result<Function, SealError> {
    if !needs_key(function) {
        return Ok(function.clone());
    }
    let keys = keys.ok_or_else(|| SealError::NoKey { function: function.name.clone() })?;
    let sealed = function.settings.iter().map(|(name, value)| {
        let value = match function.manifest.is_secret(name) {
            true => keys.seal(&function.name, name, value),
            false => value.to_owned(),
        };
        (name.to_owned(), value)
    });
    Ok(Function { settings: Settings::from_pairs(sealed), ..function.clone() })
}

/// `function` as stored, its secret setting values opened with `keys`.
pub fn open_settings(keys: Option<&SettingsKeys>, function: Function) -> Result<Function, SealError> {
    if !needs_key(&function) {
        return Ok(function);
    }
    let mut opened = Vec::new();
    for (name, value) in function.settings.iter() {
        if !function.manifest.is_secret(name) {
            opened.push((name.to_owned(), value.to_owned()));
            continue;
        }
        let keys = match (keys, sealed_with(value)) {
            (Some(keys), _) => keys,
            (None, Some(key_id)) => {
                let (function, name, key_id) = (function.name.clone(), name.to_owned(), key_id.to_owned());
                return Err(SealError::UnknownKey { function, name, key_id });
            }
            (None, None) => {
                return Err(SealError::NotSealed { function: function.name.clone(), name: name.to_owned() })
            }
        };
        opened.push((name.to_owned(), keys.open(&function.name, name, value)?));
    }
    Ok(Function { settings: Settings::from_pairs(opened), ..function })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::Manifest;

    fn keys(byte: u8) -> SettingsKeys {
        SettingsKeys::parse(STANDARD.encode([byte; 32]).as_bytes()).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_function_and_setting() {
        let k = keys(7);
        let sealed = k.seal("falco-slack", "SLACK_WEBHOOK_URL", "https://hooks.example/T0/XYZ");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("hooks.example"), "{sealed}");
        assert_ne!(sealed, k.seal("falco-slack", "SLACK_WEBHOOK_URL", "https://hooks.example/T0/XYZ"), "fresh nonce");
        assert_eq!(k.open("falco-slack", "SLACK_WEBHOOK_URL", &sealed).unwrap(), "https://hooks.example/T0/XYZ");
        assert!(matches!(k.open("falco-other", "SLACK_WEBHOOK_URL", &sealed), Err(SealError::Corrupt { .. })));
        assert!(matches!(k.open("falco-slack", "OTHER", &sealed), Err(SealError::Corrupt { .. })));
        assert!(matches!(k.open("falco-slack", "X", "plain"), Err(SealError::NotSealed { .. })));
        let altered = format!("{}A", &sealed[..sealed.len() - 1]);
        assert!(matches!(k.open("falco-slack", "SLACK_WEBHOOK_URL", &altered), Err(SealError::Corrupt { .. })));
    }

    /// How the previous version sealed (no padding, v1 associated data): what the registry may still hold.
    fn seal_v1(keys: &SettingsKeys, function: &str, name: &str, value: &str) -> String {
        let key = &keys.keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data_v1(function, name);
        let ciphertext = key.cipher.encrypt(&nonce, Payload { msg: value.as_bytes(), aad: &aad }).unwrap();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        format!("{PREFIX_V1}{}:{}", key.id, URL_SAFE_NO_PAD.encode(blob))
    }

    #[test]
    fn secrets_of_lengths_3_and_20_seal_to_the_same_length() {
        let k = keys(5);
        let (short, long) = (k.seal("f", "K", "abc"), k.seal("f", "K", &"x".repeat(20)));
        assert_eq!(short.len(), long.len(), "{short} {long}");
        assert_ne!(short.len(), k.seal("f", "K", &"x".repeat(32)).len(), "the next block is longer");
    }

    #[test]
    fn every_length_from_0_to_100_round_trips_including_trailing_zeros_and_0x80() {
        let k = keys(6);
        for len in 0..=100 {
            for fill in ["a", "\0", "\u{80}"] {
                let value = fill.repeat(len);
                let sealed = k.seal("f", "K", &value);
                assert_eq!(k.open("f", "K", &sealed).unwrap(), value, "length {len}");
            }
        }
    }

    #[test]
    fn values_sealed_by_the_previous_version_still_open_and_cannot_be_relabelled() {
        let k = keys(8);
        let old = seal_v1(&k, "falco-slack", "URL", "https://hooks.example/T0");
        assert_eq!(sealed_with(&old), Some(k.sealing_key_id()));
        assert_eq!(k.open("falco-slack", "URL", &old).unwrap(), "https://hooks.example/T0");
        assert!(matches!(k.open("falco-other", "URL", &old), Err(SealError::Corrupt { .. })));
        let relabelled = old.replacen(PREFIX_V1, PREFIX, 1);
        assert!(matches!(k.open("falco-slack", "URL", &relabelled), Err(SealError::Corrupt { .. })));
        let downgraded = k.seal("falco-slack", "URL", "v").replacen(PREFIX, PREFIX_V1, 1);
        assert!(matches!(k.open("falco-slack", "URL", &downgraded), Err(SealError::Corrupt { .. })));
    }

    #[test]
    fn padding_is_unambiguous() {
        for len in 0..=70 {
            let value = vec![0u8; len];
            let padded = pad(&value);
            assert!(padded.len().is_multiple_of(PAD_BLOCK));
            assert!(padded.len() > len);
            assert_eq!(unpad(padded), Some(value));
        }
        assert_eq!(unpad(vec![0; 32]), None);
        assert_eq!(unpad(vec![1; 32]), None);
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any() {
        let (old, new) = (STANDARD.encode([1u8; 32]), STANDARD.encode([2u8; 32]));
        let before = SettingsKeys::parse(old.as_bytes()).unwrap();
        let sealed_old = before.seal("f", "K", "v1-value");
        let both = SettingsKeys::parse(format!("# new first\n{new}\n\n{old}\n").as_bytes()).unwrap();
        assert_eq!(both.open("f", "K", &sealed_old).unwrap(), "v1-value");
        let sealed_new = both.seal("f", "K", "v2-value");
        assert_eq!(sealed_with(&sealed_new), Some(both.sealing_key_id()));
        let err = before.open("f", "K", &sealed_new).unwrap_err().to_string();
        assert!(err.contains(both.sealing_key_id()) && err.contains("--settings-key-file"), "{err}");
        assert!(!err.contains("v2-value"));
    }

    #[test]
    fn key_files_are_checked_and_generated_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.key");
        let generated = SettingsKeys::load_or_generate(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = SettingsKeys::load_or_generate(&path).unwrap();
        assert_eq!(generated.sealing_key_id(), again.sealing_key_id(), "an existing key is kept");
        assert!(matches!(SettingsKeys::generate(&path), Err(SealError::Create { .. })), "never overwritten");
        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, [9u8; 32]).unwrap();
        let from_raw = SettingsKeys::load(&raw).unwrap();
        assert_eq!(from_raw.open("f", "K", &keys(9).seal("f", "K", "v")).unwrap(), "v", "raw = base64 of the same");
        std::fs::write(&path, "not base64!\n").unwrap();
        let err = SettingsKeys::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("riposte settings-key new"), "{err}");
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(matches!(SettingsKeys::load(&path), Err(SealError::Empty(_))));
    }

    #[test]
    fn only_secret_settings_are_sealed_and_a_function_without_them_needs_no_key() {
        let manifest =
            Manifest::parse("name = \"x\"\nkind = \"wasm\"\n[settings.TOKEN]\n[settings.KEY]\nsecret = false\n")
                .unwrap();
        let pairs = [("TOKEN".to_owned(), "s3cr3t-token".to_owned()), ("KEY".to_owned(), "taint".to_owned())];
        let f = Function {
            name: "f".into(),
            manifest,
            artifact: "a".into(),
            settings: Settings::from_pairs(pairs),
            runs_on: None,
            policy: Default::default(),
        };
        let err = seal_settings(None, &f).unwrap_err().to_string();
        assert!(err.contains("--settings-key-file") && err.contains("settings-key new"), "{err}");
        let k = keys(3);
        let stored = seal_settings(Some(&k), &f).unwrap();
        assert!(stored.settings.get("TOKEN").unwrap().starts_with(PREFIX));
        assert_eq!(stored.settings.get("KEY"), Some("taint"));
        assert_eq!(open_settings(Some(&k), stored.clone()).unwrap(), f);
        assert!(matches!(open_settings(None, stored.clone()), Err(SealError::UnknownKey { .. })));
        assert!(matches!(open_settings(Some(&k), f.clone()), Err(SealError::NotSealed { .. })));
        let public = Function { settings: Settings::from_pairs([("KEY".to_owned(), "t".to_owned())]), ..f };
        assert_eq!(seal_settings(None, &public).unwrap(), public);
        assert_eq!(open_settings(None, public.clone()).unwrap(), public);
    }
}
