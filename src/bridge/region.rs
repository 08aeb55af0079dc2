//! Security & Compliance's regional host, discovered once per tenant and pinned.
//!
//! S&C runs a tenant's cmdlets on a regional host (`nam02b.ps.compliance.protection.outlook.com`);
//! the global host answers the module's `GET /AdminApi/v1.0/{tid}/EXOModuleFile` with a 302
//! whose `Location` host's first label is the region (scc-rest-adminapi.md §2). The module
//! asks once per connection with redirects off and builds `https://{label}.{global host}`; we
//! ask once per tenant and keep the answer until [`Regions::forget`] (a connection failure, a
//! 421, a 404 that is not an Exchange error body) or the TTL — never per command.
//!
//! Where the token may go: the configured global host, and the regional host built from it
//! (`{label}.` + the global host, so always inside the configured family). A `Location` not of
//! the documented form (a loopback origin in tests and the sandbox) is pinned as it stands only
//! when the global endpoint itself is loopback; otherwise the discovery is refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use url::{Host, Url};

use crate::config::TenantId;

/// Per tenant, the regional base URL, until its deadline or a failure there.
#[derive(Debug, Default)]
pub struct Regions {
    pins: Mutex<HashMap<TenantId, (Url, Instant)>>,
    /// One discovery at a time (they are rare): a burst of first commands asks once.
    pub(super) discovering: tokio::sync::Mutex<()>,
}

impl Regions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (Url, Instant)>> {
        // Plain inserts and removes: a panic elsewhere cannot leave the map inconsistent.
        self.pins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The live pin for `tenant` (an expired one is dropped).
    pub fn get(&self, tenant: &TenantId) -> Option<Url> {
        let mut pins = self.lock();
        match pins.get(tenant) {
            Some((url, until)) if Instant::now() < *until => Some(url.clone()),
            Some(_) => {
                tracing::info!(%tenant, "S&C region pin expired; discovering again");
                pins.remove(tenant);
                None
            }
            None => None,
        }
    }

    /// Pins `base` for `tenant` for `ttl`.
    pub fn pin(&self, tenant: &TenantId, base: Url, ttl: Duration) {
        tracing::info!(%tenant, region = %base.origin().ascii_serialization(), "S&C region pinned");
        self.lock()
            .insert(tenant.clone(), (base, Instant::now() + ttl));
    }

    /// Forgets `tenant`'s pin (the regional host failed): the next command discovers again.
    pub fn forget(&self, tenant: &TenantId, why: &str) {
        if let Some((url, _)) = self.lock().remove(tenant) {
            tracing::warn!(%tenant, region = %url.origin().ascii_serialization(), why, "S&C region failed; it will be discovered again");
        }
    }
}

/// The regional base for a discovery 302 to `location` from `global`.
///
/// # Errors
/// Why the `Location` cannot be used (the token is not sent there).
pub fn regional_base(global: &Url, location: &str) -> Result<Url, String> {
    let target = global
        .join(location)
        .map_err(|e| format!("the Location {location:?} is not a URL ({e})"))?;
    if !target.username().is_empty() || target.password().is_some() {
        return Err("the Location carries credentials".into());
    }
    let global_host = global.host_str().unwrap_or_default();
    if let Some(Host::Domain(host)) = target.host()
        && !is_loopback(global)
    {
        // Documented form: `{region}.admin.protection.outlook.com[:446]`.
        let label = host.split('.').next().unwrap_or_default();
        let dns_label = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !dns_label || !host.contains('.') {
            return Err(format!(
                "the Location host {host:?} is not of the form <region>.<host>"
            ));
        }
        let label = label.to_ascii_lowercase();
        // Already regional (`nam02b.ps.compliance…` answering with itself): keep the global.
        let base = if global_host
            .to_ascii_lowercase()
            .starts_with(&format!("{label}."))
        {
            global.origin().ascii_serialization()
        } else {
            format!("{}://{label}.{global_host}", global.scheme())
        };
        return Url::parse(&base).map_err(|e| format!("{base}: {e}"));
    }
    if is_loopback(global) && is_loopback(&target) && target.scheme() == global.scheme() {
        // Tests and the sandbox: a second loopback origin is the region itself.
        return Url::parse(&target.origin().ascii_serialization()).map_err(|e| e.to_string());
    }
    Err(format!(
        "the Location {} is neither <region>.<host> nor, with a loopback endpoint, a loopback \
         origin",
        target.origin().ascii_serialization()
    ))
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn the_region_is_the_first_label_under_the_global_host() {
        let g = url("https://ps.compliance.protection.outlook.com");
        let b = regional_base(&g, "https://nam02b.admin.protection.outlook.com:446/x?y").unwrap();
        assert_eq!(
            b.as_str(),
            "https://nam02b.ps.compliance.protection.outlook.com/"
        );
        // Whatever the Location's host, the token stays under the configured global host.
        let b = regional_base(&g, "https://evil.example.com/").unwrap();
        assert_eq!(
            b.as_str(),
            "https://evil.ps.compliance.protection.outlook.com/"
        );
        assert!(regional_base(&g, "https://127.0.0.1:9/").is_err());
        assert!(regional_base(&g, "https://u:p@nam02b.x.com/").is_err());
        assert!(regional_base(&g, "https://localhost/").is_err());
    }

    #[test]
    fn a_loopback_endpoint_pins_a_loopback_origin_only() {
        let g = url("https://127.0.0.1:4000");
        let b = regional_base(&g, "https://127.0.0.1:5000/AdminApi/v1.0/t/EXOModuleFile").unwrap();
        assert_eq!(b.as_str(), "https://127.0.0.1:5000/");
        assert!(regional_base(&g, "https://nam02b.admin.protection.outlook.com/").is_err());
        assert!(regional_base(&g, "http://127.0.0.1:5000/").is_err());
    }
}
