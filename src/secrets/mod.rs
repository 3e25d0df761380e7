//! Secrets and untrusted text: setting values sealed at rest, secret values taken out of anything shown, and
//! untrusted text cut to a bound and made safe to print.

pub mod redact;
pub mod seal;
pub mod truncate;
