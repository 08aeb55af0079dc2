//! `Secret<T>`: the one type secrets live in.
//!
//! Passwords, private keys, client secrets and access tokens are wrapped in `Secret` from the
//! moment they are read until the moment they are written to the wire. `Debug` prints
//! `<redacted>`, there is deliberately no `Display`, `Serialize` or `Clone`-into-string, and the
//! only way to read the value is [`Secret::expose`], so every read shows up in
//! `git grep expose` for review.

use std::fmt;

/// A value that must never reach a log, an error message or a `Debug` print.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// Reads the secret. Call it only where the value goes onto the wire or into a crypto API.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret. Same rule as [`Secret::expose`].
    pub fn into_exposed(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }
}
