//! Secret setting values taken out of text before anyone sees it. [`crate::execution::Handler::handle`] applies
//! [`Execution::redact`](crate::execution::Execution::redact) to every execution a handler finishes (WASM,
//! container, dry run alike), so the records built from it (results, dead letters), the runner's log lines
//! about it and the CLI's output only ever see redacted text. Places that cut text before that point (a log
//! line, a crash's stderr, a container's output) redact first too, so a cut never leaves half a value behind.
//!
//! A value is found whatever the case of its ASCII letters (a URL parser lower-cases it inside a hostname) and
//! in its percent-encoded form (a value put in a URL's path or query). Values shorter than
//! [`MIN_REDACTED_LEN`] are not replaced: replacing every "on" would garble the text.
//!
//! Recorded HTTP calls also show credential headers masked whatever their value ([`shown_header`]): a token
//! that is no setting (base64 of a user and a password, one a playbook obtained at run time) is a credential
//! all the same.

use serde_json::Value;

/// Secret values shorter than this are not redacted from text (replacing every "on" would garble it).
pub const MIN_REDACTED_LEN: usize = 4;

/// What replaces a secret value.
pub const MARK: &str = "***";

/// Replaces every secret value found in `text` (any ASCII case, or percent-encoded) with `***`.
pub fn redact(secrets: &[String], text: &str) -> String {
    if secrets.is_empty() || text.is_empty() {
        return text.to_owned();
    }
    // ASCII lower-casing keeps every byte offset, so a match in `lower` is the same span of `text`.
    let lower = text.to_ascii_lowercase();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for value in secrets.iter().filter(|v| v.len() >= MIN_REDACTED_LEN) {
        let plain = value.to_ascii_lowercase();
        let encoded = percent_encoded(value).map(|e| e.to_ascii_lowercase());
        for needle in std::iter::once(plain).chain(encoded) {
            let mut from = 0;
            while let Some(i) = lower[from..].find(&needle) {
                spans.push((from + i, from + i + needle.len()));
                from += i + needle.len();
            }
        }
    }
    if spans.is_empty() {
        return text.to_owned();
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        if end <= at {
            continue;
        }
        if start >= at {
            out.push_str(&text[at..start]);
            out.push_str(MARK);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// Redacts every string and every object key of a JSON value.
pub fn redact_json(secrets: &[String], value: Value) -> Value {
    if secrets.is_empty() {
        return value;
    }
    match value {
        Value::String(s) => Value::String(redact(secrets, &s)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| redact_json(secrets, v)).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (redact(secrets, &k), redact_json(secrets, v))).collect())
        }
        other => other,
    }
}

/// `value` as it appears percent-encoded in a URL, when that differs from the value itself.
fn percent_encoded(value: &str) -> Option<String> {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    if value.bytes().all(keep) {
        return None;
    }
    Some(value.bytes().map(|b| if keep(b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect())
}

/// HTTP headers whose value is a credential whatever it is, by exact name (lower case).
const CREDENTIAL_HEADERS: [&str; 7] =
    ["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token"];

/// Words that make any header name a credential's.
const CREDENTIAL_WORDS: [&str; 6] = ["token", "secret", "password", "api-key", "apikey", "api_key"];

/// Whether an HTTP header carries a credential, by its name (any case): `Authorization`, `Cookie`,
/// `X-Api-Key` and the like, or any name holding `token`, `secret`, `password` or `api-key`/`apikey`.
pub fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    CREDENTIAL_HEADERS.contains(&name.as_str()) || CREDENTIAL_WORDS.iter().any(|w| name.contains(w))
}

/// What a record shows of a request header: the value, or `***` for a credential (an `Authorization` keeps
/// its scheme: `Basic ***`, `Bearer ***`).
pub fn shown_header(name: &str, value: &str) -> String {
    if !is_credential_header(name) {
        return value.to_owned();
    }
    let lower = name.to_ascii_lowercase();
    if lower == "authorization" || lower == "proxy-authorization" {
        if let Some((scheme, rest)) = value.trim().split_once(' ') {
            let word = !scheme.is_empty()
                && scheme.len() <= 16
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if word && !rest.trim().is_empty() {
                return format!("{scheme} {MARK}");
            }
        }
    }
    MARK.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_lower_cased_percent_encoded_and_overlapping() {
        let secrets = vec!["Canary-Tok3n".to_owned(), "p@ss word".to_owned(), "Tok3n-XY".to_owned(), "on".to_owned()];
        assert_eq!(redact(&secrets, "host canary-tok3n.invalid:80 refused"), "host ***.invalid:80 refused");
        assert_eq!(redact(&secrets, "GET /login?pw=p%40ss%20word"), "GET /login?pw=***");
        assert_eq!(redact(&secrets, "GET /login?pw=p%40ss%20word".to_lowercase().as_str()), "get /login?pw=***");
        assert_eq!(redact(&secrets, "CANARY-TOK3N-XY and p@ss word"), "*** and ***");
        assert_eq!(redact(&secrets, "héllo Canary-Tok3n ünï on"), "héllo *** ünï on", "short values stay");
        assert_eq!(redact(&[], "unchanged"), "unchanged");
    }

    #[test]
    fn json_strings_and_keys_are_redacted_at_any_depth() {
        let secrets = vec!["Canary-Tok3n".to_owned()];
        let v = serde_json::json!({"k": "x Canary-Tok3n", "Canary-Tok3n": [1, {"deep": "canary-tok3n.invalid"}]});
        let r = redact_json(&secrets, v);
        assert_eq!(r, serde_json::json!({"k": "x ***", "***": [1, {"deep": "***.invalid"}]}));
    }

    #[test]
    fn credential_headers_are_masked_by_name() {
        assert_eq!(shown_header("Authorization", "Basic YWRtaW46cHcx"), "Basic ***");
        assert_eq!(shown_header("authorization", "Bearer a.b.c"), "Bearer ***");
        assert_eq!(shown_header("Authorization", "the-api-key"), "***", "no scheme: all of it");
        assert_eq!(shown_header("PROXY-AUTHORIZATION", "Basic x"), "Basic ***");
        for name in [
            "Cookie",
            "set-cookie",
            "X-API-Key",
            "Api-Key",
            "x-auth-token",
            "X-Vault-Token",
            "Client-Secret",
            "X-Password",
            "X-ApiKey",
            "ph-auth-token",
        ] {
            assert_eq!(shown_header(name, "v"), "***", "{name}");
        }
        for name in ["Content-Type", "Accept", "User-Agent", "X-Request-Id"] {
            assert_eq!(shown_header(name, "v"), "v", "{name}");
        }
    }
}
