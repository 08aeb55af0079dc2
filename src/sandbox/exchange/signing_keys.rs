//! [`SigningKeys`]: the keys tokens are verified with, from the simulated Entra's JWKS.
//!
//! Separate because they are the one input shared with the Entra simulator, set up before the
//! server starts.

use std::sync::Arc;

use jsonwebtoken::DecodingKey;

/// The keys tokens are verified with (the simulated Entra's signing keys).
#[derive(Clone, Default)]
pub struct SigningKeys(Vec<(Option<String>, Arc<DecodingKey>)>);

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(kid, _)| kid))
            .finish()
    }
}

impl SigningKeys {
    /// Adds one key (`kid` None matches any token without a known kid).
    pub fn push(&mut self, kid: Option<String>, key: DecodingKey) {
        self.0.push((kid, Arc::new(key)));
    }

    /// Every key of a JWKS document.
    ///
    /// # Errors
    /// A key jsonwebtoken cannot use.
    pub fn from_jwks(
        jwks: &jsonwebtoken::jwk::JwkSet,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let mut keys = Self::default();
        for jwk in &jwks.keys {
            keys.push(jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)?);
        }
        Ok(keys)
    }

    pub(crate) fn find(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        self.0
            .iter()
            .find(|(k, _)| k.as_deref() == kid)
            .or_else(|| self.0.iter().find(|(k, _)| k.is_none()))
            .map(|(_, key)| key.as_ref())
    }
}
