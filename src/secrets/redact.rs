//! Secret setting values taken out of text before anyone sees it. [`crate::model::execution::Handler::handle`] applies
//! [`Execution::redact`](crate::model::execution::Execution::redact) to every execution a handler finishes (WASM,
//! container, dry run alike), so the records built from it (results, dead letters), the runner's log lines
//! about it and the CLI's output only ever see redacted text. Output bounded as it is captured (a guest's
//! stdout and stderr, a container's) is kept [`Secrets::longest`] bytes beyond its bound and redacted before
//! the final cut ([`Secrets::redact_tail`], [`Secrets::redact_head`]): a secret the cut splits goes whole.
//!
//! A value is found whatever the case of its ASCII letters (a URL parser lower-cases a hostname; hex escapes
//! come in either case) and in the forms a playbook's code gives it on the way out: percent-encoded (as a URL
//! component, and as Python's `urllib.parse.quote` writes it, keeping `/`), form-encoded (`quote_plus`, a
//! space as `+`), escaped in a JSON string (`json.dumps`, which also escapes non-ASCII, and serde_json or
//! `JSON.stringify`, which do not), in Python's `repr()` and `ascii()` of the string and `repr()` of its
//! UTF-8 bytes. Two setting values, one of them secret, are also found as HTTP basic credentials
//! (`base64("user:password")`), and a number of parsed JSON is looked at as its text. Values shorter than
//! [`MIN_REDACTED_LEN`] are not replaced: replacing every "on" would garble the text. A playbook that
//! transforms its own secret otherwise (reverses it, base64s it alone) is not caught.
//!
//! Recorded HTTP calls also show credential headers masked whatever their value ([`shown_header`]): a token
//! that is no setting (one a playbook obtained at run time) is a credential all the same.

use aho_corasick::AhoCorasick;
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::{self, Write};

/// Secret values shorter than this are not redacted from text (replacing every "on" would garble it).
pub const MIN_REDACTED_LEN: usize = 4;

/// What replaces a secret value.
pub const MARK: &str = "***";

/// The secret values of one function, in every form they are looked for, prepared once (when the function is
/// made) and matched in one pass over a text. `Debug` shows how many forms, never a value.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Every form of every value (ASCII letters in any case); `None` when there is nothing to look for.
    forms: Option<AhoCorasick>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} forms)", self.forms.as_ref().map_or(0, |a| a.patterns_len()))
    }
}

impl Secrets {
    /// Secrets of `values`, as if each were a secret setting (so pairs of them are basic credentials too).
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Secrets {
        let values: Vec<S> = values.into_iter().collect();
        Secrets::of_settings(values.iter().map(|v| (v.as_ref(), true)))
    }

    /// The secrets of a function's settings, given as `(value, secret)`: every secret value of at least
    /// [`MIN_REDACTED_LEN`] bytes, and the basic credentials `base64("a:b")` of any two values (or one and
    /// nothing) of which one is a non-empty secret.
    pub fn of_settings<'a>(settings: impl IntoIterator<Item = (&'a str, bool)>) -> Secrets {
        let settings: Vec<(&str, bool)> = settings.into_iter().collect();
        let mut values: Vec<String> = Vec::new();
        for (value, secret) in &settings {
            if *secret && value.len() >= MIN_REDACTED_LEN {
                values.push((*value).to_owned());
            }
        }
        let secret = |(v, s): (&str, bool)| s && !v.is_empty();
        let users = settings.iter().copied().chain([("", false)]);
        for (i, user) in users.enumerate() {
            let passwords = settings.iter().copied().chain([("", false)]).enumerate();
            for (_, password) in passwords.filter(|(j, _)| *j != i) {
                if secret(user) || secret(password) {
                    values.extend(basic_credentials(user.0, password.0));
                }
            }
        }
        let forms: BTreeSet<String> = values.iter().flat_map(|v| forms(v)).map(|f| f.to_ascii_lowercase()).collect();
        if forms.is_empty() {
            return Secrets::default();
        }
        let matcher = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&forms)
            .expect("a few thousand short patterns always build");
        Secrets { forms: Some(matcher) }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.forms.is_none()
    }

    /// The longest form of a value, in bytes: how much more than its bound a capture keeps, so that its cut
    /// (made after redaction) never leaves part of a value unrecognised.
    pub fn longest(&self) -> usize {
        self.forms.as_ref().map_or(0, |a| a.max_pattern_len())
    }

    /// `text` with every form of every value replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.redact_range(text, 0, text.len())
    }

    /// Redacts every string, object key and number (as its text: a secret `1234567890` is also the number) of
    /// a JSON value; a number that held a value becomes the redacted string.
    pub fn redact_json(&self, value: Value) -> Value {
        if self.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.redact(&s)),
            Value::Number(n) => {
                let text = n.to_string();
                let redacted = self.redact(&text);
                if redacted == text {
                    Value::Number(n)
                } else {
                    Value::String(redacted)
                }
            }
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.redact_json(v)).collect()),
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (self.redact(&k), self.redact_json(v))).collect())
            }
            other => other,
        }
    }

    /// The last `max` bytes of `bytes` (read as UTF-8, lossily), redacted, and how many bytes came before
    /// them. The bytes before are read too, so a value that ends inside the kept part is recognised; a value
    /// the cut splits is left out whole. Keep [`longest`](Self::longest) bytes more than `max` when capturing.
    pub fn redact_tail(&self, bytes: &[u8], max: usize) -> (String, usize) {
        let mut cut = bytes.len().saturating_sub(max);
        while cut < bytes.len() && is_continuation(bytes[cut]) {
            cut += 1;
        }
        let before = String::from_utf8_lossy(&bytes[..cut]);
        let mut text = before.clone().into_owned();
        text.push_str(&String::from_utf8_lossy(&bytes[cut..]));
        (self.redact_range(&text, before.len(), text.len()), cut)
    }

    /// The first `max` bytes of `bytes` (read as UTF-8, lossily), redacted; the bytes after them are read
    /// too, so a value the cut splits is recognised and left out whole.
    pub fn redact_head(&self, bytes: &[u8], max: usize) -> String {
        let mut end = bytes.len().min(max);
        while end > 0 && end < bytes.len() && is_continuation(bytes[end]) {
            end -= 1;
        }
        let kept = String::from_utf8_lossy(&bytes[..end]);
        let mut text = kept.clone().into_owned();
        text.push_str(&String::from_utf8_lossy(&bytes[end..]));
        self.redact_range(&text, 0, kept.len())
    }

    /// `text[from..to]` redacted, matching in the whole `text`: a match that crosses `from` or `to` is left out
    /// of the result whole (with whatever else of the range it overlaps).
    fn redact_range(&self, text: &str, mut from: usize, mut to: usize) -> String {
        let spans = self.spans(text);
        if spans.is_empty() {
            return text[from..to].to_owned();
        }
        for &(start, end) in &spans {
            if start < from && end > from {
                from = end;
            }
            if start < to && end > to {
                to = start;
            }
        }
        if from >= to {
            return String::new();
        }
        let mut out = String::with_capacity(to - from);
        let mut at = from;
        for (start, end) in spans.into_iter().filter(|&(s, e)| s >= from && e <= to) {
            out.push_str(&text[at..start]);
            out.push_str(MARK);
            at = end;
        }
        out.push_str(&text[at..to]);
        out
    }

    /// Where forms are found in `text`: sorted, overlapping matches merged (adjacent ones kept apart).
    fn spans(&self, text: &str) -> Vec<(usize, usize)> {
        let Some(forms) = &self.forms else { return Vec::new() };
        let mut found: Vec<(usize, usize)> = forms.find_overlapping_iter(text).map(|m| (m.start(), m.end())).collect();
        found.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(found.len());
        for (start, end) in found {
            match merged.last_mut() {
                Some(last) if start < last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xc0 == 0x80
}

/// `Authorization: Basic …` for `user` and `password`, with and without its `=` padding.
fn basic_credentials(user: &str, password: &str) -> Vec<String> {
    let padded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let bare = padded.trim_end_matches('=').to_owned();
    if bare == padded {
        vec![padded]
    } else {
        vec![padded, bare]
    }
}

/// Every form `value` is looked for in (see the module's doc), itself first.
fn forms(value: &str) -> Vec<String> {
    let mut out = vec![
        value.to_owned(),
        percent(value, b"-._~", false),  // a URL component; quote(v, safe='')
        percent(value, b"-._~/", false), // quote(v)
        percent(value, b"-._~", true),   // quote_plus(v), urlencode
        percent(value, b"*-._", true),   // application/x-www-form-urlencoded as browsers and Rust's url crate write it
        json(value, false),              // serde_json, JSON.stringify
        json(value, true),               // json.dumps
    ];
    for quote in [Some('\''), None] {
        // Python quotes with ' and escapes it, unless the whole string holds ' and no ".
        out.push(python(value, quote, Python::Repr));
        out.push(python(value, quote, Python::Ascii));
        out.push(python(value, quote, Python::Bytes));
    }
    out.sort();
    out.dedup();
    out
}

/// Each byte of `value` but ASCII letters, digits and `keep` as `%XX`; with `plus`, a space as `+`.
fn percent(value: &str, keep: &[u8], plus: bool) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else if plus && b == b' ' {
            out.push('+');
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `value` inside a JSON string; `ascii`: every non-ASCII character as `\uXXXX` (UTF-16) too.
fn json(value: &str, ascii: bool) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && !c.is_ascii()) => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Which of Python's representations of a text.
#[derive(Clone, Copy)]
enum Python {
    /// `repr(s)`: printable non-ASCII characters as they are.
    Repr,
    /// `ascii(s)`: every non-ASCII character as `\xXX`, `\uXXXX` or `\UXXXXXXXX`.
    Ascii,
    /// `repr(s.encode())`: every byte outside ASCII as `\xXX`.
    Bytes,
}

/// `value` as Python writes it inside a quoted literal, escaping `quote` if given.
fn python(value: &str, quote: Option<char>, how: Python) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if Some(c) == quote => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_ascii() => out.push(c),
            c => match how {
                Python::Repr if printable(c) => out.push(c),
                Python::Bytes => {
                    for b in c.encode_utf8(&mut [0; 4]).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                _ => {
                    let _ = match c as u32 {
                        n @ 0..=0xff => write!(out, "\\x{n:02x}"),
                        n @ 0x100..=0xffff => write!(out, "\\u{n:04x}"),
                        n => write!(out, "\\U{n:08x}"),
                    };
                }
            },
        }
    }
    out
}

/// Whether Python's `repr` shows a non-ASCII character as it is (close to `str.isprintable`: not a control,
/// a separator other than the space, or an invisible format character).
fn printable(c: char) -> bool {
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
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

    fn redact(values: &[&str], text: &str) -> String {
        Secrets::new(values).redact(text)
    }

    #[test]
    fn values_are_found_lower_cased_percent_encoded_and_overlapping() {
        let secrets = ["Canary-Tok3n", "p@ss word", "Tok3n-XY", "on"];
        assert_eq!(redact(&secrets, "host canary-tok3n.invalid:80 refused"), "host ***.invalid:80 refused");
        assert_eq!(redact(&secrets, "GET /login?pw=p%40ss%20word"), "GET /login?pw=***");
        assert_eq!(redact(&secrets, "GET /login?pw=p%40ss%20word".to_lowercase().as_str()), "get /login?pw=***");
        assert_eq!(redact(&secrets, "CANARY-TOK3N-XY and p@ss word"), "*** and ***");
        assert_eq!(redact(&secrets, "héllo Canary-Tok3n ünï on"), "héllo *** ünï on", "short values stay");
        assert_eq!(redact(&[], "unchanged"), "unchanged");
    }

    #[test]
    fn json_and_python_escaped_forms_are_found() {
        let secrets = ["Pa\"ss\\wörd"];
        let cases = [
            (r#"{"password": "Pa\"ss\\w\u00f6rd"}"#, r#"{"password": "***"}"#), // json.dumps (ASCII only)
            (r#"{"password":"Pa\"ss\\wörd"}"#, r#"{"password":"***"}"#),        // serde_json, JSON.stringify
            (r#"{'password': 'Pa"ss\\wörd'}"#, r#"{'password': '***'}"#),       // repr()
            (r#"{'password': 'Pa"ss\\w\xf6rd'}"#, r#"{'password': '***'}"#),    // ascii()
            (r#"b'Pa"ss\\w\xc3\xb6rd'"#, r#"b'***'"#),                          // repr() of the UTF-8 bytes
        ];
        for (text, want) in cases {
            assert_eq!(redact(&secrets, text), want, "{text}");
        }
        let quoted = ["it's-Secret\n"];
        assert_eq!(redact(&quoted, r#"x = 'it\'s-Secret\n'"#), "x = '***'", "repr escapes ' in '…'");
        assert_eq!(redact(&quoted, r#"x = "it's-Secret\n""#), r#"x = "***""#, "repr keeps ' in \"…\"");
        assert_eq!(redact(&["n\u{e9}e\u{1F600}!"], r#"'n\xe9e\U0001f600!' "n\u00e9e\ud83d\ude00!""#), "'***' \"***\"");
    }

    #[test]
    fn url_and_form_encoded_forms_are_found() {
        let secrets = ["a/b c+d&é"];
        // urllib.parse.quote keeps '/', quote_plus writes ' ' as '+'; upper-case hex (any case is found).
        assert_eq!(redact(&secrets, "GET /x?k=a/b%20c%2Bd%26%C3%A9 HTTP/1.1"), "GET /x?k=*** HTTP/1.1");
        assert_eq!(redact(&secrets, "k=a%2Fb+c%2Bd%26%C3%A9&x=1"), "k=***&x=1");
        assert_eq!(redact(&secrets, "k=a%2fb%20c%2bd%26%c3%a9&x=1"), "k=***&x=1");
    }

    #[test]
    fn basic_auth_of_two_settings_is_found() {
        // base64("admin:s3cret-pw"), base64("admin:pw1"), padded or not; base64("tok3n-only:")
        let both = Secrets::new(["admin", "s3cret-pw"]);
        assert_eq!(both.redact("Authorization: Basic YWRtaW46czNjcmV0LXB3"), "Authorization: Basic ***");
        let user_in_clear = Secrets::of_settings([("admin", false), ("pw1", true), ("tok3n-only", true)]);
        assert_eq!(user_in_clear.redact("Basic YWRtaW46cHcx, basic YWRtaW46cHcx"), "Basic ***, basic ***");
        assert_eq!(user_in_clear.redact("Basic dG9rM24tb25seTo="), "Basic ***");
        assert_eq!(user_in_clear.redact("Basic dG9rM24tb25seTo%3D"), "Basic ***", "percent-encoded");
        let none_secret = Secrets::of_settings([("admin", false), ("https://h.example", false)]);
        assert!(none_secret.is_empty());
    }

    #[test]
    fn numeric_secrets_are_found_in_parsed_json() {
        let secrets = Secrets::new(["1234567890"]);
        let detail = serde_json::json!({"account": 1234567890, "big": 91234567890u64, "n": 7, "s": "1234567890"});
        let r = secrets.redact_json(detail);
        assert_eq!(r, serde_json::json!({"account": "***", "big": "9***", "n": 7, "s": "***"}));
    }

    #[test]
    fn json_strings_and_keys_are_redacted_at_any_depth() {
        let secrets = Secrets::new(["Canary-Tok3n"]);
        let v = serde_json::json!({"k": "x Canary-Tok3n", "Canary-Tok3n": [1, {"deep": "canary-tok3n.invalid"}]});
        let r = secrets.redact_json(v);
        assert_eq!(r, serde_json::json!({"k": "x ***", "***": [1, {"deep": "***.invalid"}]}));
    }

    /// Whether `text` holds 4 or more consecutive characters of `value` (any ASCII case).
    fn holds_part_of(text: &str, value: &str) -> Option<String> {
        let (text, chars) = (text.to_ascii_lowercase(), value.to_ascii_lowercase().chars().collect::<Vec<_>>());
        chars.windows(4).map(|w| w.iter().collect::<String>()).find(|part| text.contains(part.as_str()))
    }

    #[test]
    fn a_secret_straddling_a_cut_leaves_no_part_of_itself() {
        for value in ["Canary-Tok3n-XYZ-0123", "pässwörd-ünïcode-✓✓"] {
            let secrets = Secrets::new([value]);
            for form in forms(value) {
                for at in 0..=form.len() {
                    // The kept end starts `at` bytes into the form (the form is split there when 0 < at < len).
                    let text = format!("{}{form}{}", "-".repeat(40), ".".repeat(60));
                    let max = text.len() - 40 - at;
                    let (tail, before) = secrets.redact_tail(text.as_bytes(), max);
                    assert!(holds_part_of(&tail, value).is_none(), "{form} cut at {at}: {tail}");
                    assert!(tail.ends_with(&".".repeat(60)) && before >= 40 + at, "{tail} {before}");
                    // The kept start ends `at` bytes into the form.
                    let head = secrets.redact_head(text.as_bytes(), 40 + at);
                    assert!(holds_part_of(&head, value).is_none(), "{form} cut at {at}: {head}");
                    assert!(head.starts_with(&"-".repeat(40)), "{head}");
                }
            }
            let whole = format!("xx{value}yy");
            assert_eq!(secrets.redact_tail(whole.as_bytes(), whole.len()), ("xx***yy".to_owned(), 0));
            assert_eq!(secrets.redact_head(whole.as_bytes(), 100), "xx***yy");
        }
    }

    #[test]
    fn a_cut_inside_a_character_keeps_valid_text() {
        let none = Secrets::default();
        let (tail, before) = none.redact_tail("aéb".as_bytes(), 2);
        assert_eq!((tail.as_str(), before), ("b", 3));
        assert_eq!(none.redact_head("aéb".as_bytes(), 2), "a");
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
