//! The identity of an artifact: the hex sha256 of its bytes. Components are stored, cached and compiled under it.

use sha2::{Digest, Sha256};

/// The hex sha256 of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `text` has the shape of a digest (64 hex characters), so it may name a file or an object.
pub fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The first 12 characters of a digest, for people; anything else (an image reference) as it is.
pub fn short(artifact: &str) -> &str {
    if is_digest(artifact) {
        &artifact[..12]
    } else {
        artifact
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_are_hex_sha256_and_shorten_for_people() {
        let d = super::digest(b"");
        assert_eq!(d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert!(super::is_digest(&d));
        assert!(!super::is_digest("../../etc/passwd"));
        assert_eq!(super::short(&d), "e3b0c44298fc");
        assert_eq!(super::short("localhost/x:1"), "localhost/x:1");
    }
}
