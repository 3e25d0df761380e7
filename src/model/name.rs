//! Names of functions, triggers, playbooks and runners.

/// Whether `name` is a valid name: lower-case letters, digits and '-', 1 to 63 long, starting and ending with a
/// letter or digit (a Kubernetes-style name, valid in a NATS subject, a KV key and a container name).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_are_kubernetes_style() {
        assert!(valid_name("falco-slack-trigger-0"));
        assert!(!valid_name("Falco"));
        assert!(!valid_name("a.b"));
        assert!(!valid_name(""));
        assert!(!valid_name("-a"));
        assert!(!valid_name(&"a".repeat(64)));
    }
}
