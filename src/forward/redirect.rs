//! Where `winrm` mode follows a redirect, and how long it remembers one.
//!
//! Following a redirect re-sends `Authorization: Basic OAuthUser@<tid>:Bearer <token>`, a
//! token good for the whole tenant's Exchange, so a `Location` is followed only to Exchange
//! itself: the configured endpoint's host, or a host of the same cloud's Exchange family —
//!
//! | cloud | endpoint | a redirect may name |
//! |---|---|---|
//! | commercial / GCC | `outlook.office365.com`, `outlook.office.com` | `outlook.office365.com`, `*.outlook.office365.com`, `outlook.office.com`, `*.outlook.office.com`, `*.protection.outlook.com` |
//! | GCC High | `outlook.office365.us` | `outlook.office365.us`, `*.office365.us` |
//! | DoD | `webmail.apps.mil` | `webmail.apps.mil` |
//! | 21Vianet (China) | `partner.outlook.cn` | `partner.outlook.cn`, `*.partner.outlook.cn` |
//! | anything else (a private or loopback test endpoint) | | the same host and port only (`localhost`, `127.0.0.1` and `::1` count as one host) |
//!
//! always over https on port 443 for the family hosts. Anything else is refused with a fault
//! that says where the redirect pointed and why (`ProxyError::RedirectRefused`).
//!
//! Exchange redirects a new session to its pod once; the pod is remembered per tenant
//! ([`Pins`]) so the following requests go straight there. A pin is dropped after
//! [`PIN_TTL`] (pods are drained and moved), and as soon as the pinned host fails to answer or
//! answers 5xx, so one bad pod does not hold a tenant for the life of the process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use url::{Host, Url};

use super::client::Target;
use crate::config::TenantName;

/// How long a redirect target is used without Exchange naming it again (1 h: long enough
/// for a script's session, short enough that a moved pod is forgotten).
pub const PIN_TTL: Duration = Duration::from_secs(3600);

/// An Exchange cloud's host family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Commercial,
    GccHigh,
    Dod,
    China,
}

impl Family {
    /// Exact host names, then `*.suffix` patterns (stored without the `*`).
    fn hosts(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Self::Commercial => (
                &["outlook.office365.com", "outlook.office.com"],
                &[
                    ".outlook.office365.com",
                    ".outlook.office.com",
                    ".protection.outlook.com",
                ],
            ),
            Self::GccHigh => (&["outlook.office365.us"], &[".office365.us"]),
            Self::Dod => (&["webmail.apps.mil"], &[]),
            Self::China => (&["partner.outlook.cn"], &[".partner.outlook.cn"]),
        }
    }

    fn of(host: &str) -> Option<Self> {
        [Self::Commercial, Self::GccHigh, Self::Dod, Self::China]
            .into_iter()
            .find(|f| f.contains(host))
    }

    fn contains(self, host: &str) -> bool {
        let (exact, suffixes) = self.hosts();
        exact.iter().any(|h| host.eq_ignore_ascii_case(h))
            || suffixes.iter().any(|s| {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            })
    }

    fn describe(self) -> String {
        let (exact, suffixes) = self.hosts();
        exact
            .iter()
            .map(|h| (*h).to_owned())
            .chain(suffixes.iter().map(|s| format!("*{s}")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Which `Location`s may receive the tenant's token.
#[derive(Debug, Clone)]
pub struct RedirectPolicy {
    endpoint: Url,
    family: Option<Family>,
}

/// Why a `Location` was refused (the fault says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why, in words.
    pub reason: &'static str,
    /// Where a redirect may point instead.
    pub allowed: String,
}

impl RedirectPolicy {
    /// The policy for `[exchange] endpoint`.
    pub fn new(endpoint: &Url) -> Self {
        Self {
            family: endpoint.host_str().and_then(Family::of),
            endpoint: endpoint.clone(),
        }
    }

    /// What a redirect may name, in words (for the fault).
    pub fn allowed(&self) -> String {
        match self.family {
            Some(f) => format!("Exchange Online's hosts ({})", f.describe()),
            None => format!(
                "the configured endpoint {}",
                self.endpoint.origin().ascii_serialization()
            ),
        }
    }

    /// Whether the token may follow a redirect to `target`.
    ///
    /// # Errors
    /// [`Refused`] with the reason.
    pub fn check(&self, target: &Url) -> Result<(), Refused> {
        let refuse = |reason| {
            Err(Refused {
                reason,
                allowed: self.allowed(),
            })
        };
        if !target.username().is_empty() || target.password().is_some() {
            return refuse("which carries credentials in the URL");
        }
        if self.same_server(target) {
            return Ok(());
        }
        let Some(family) = self.family else {
            return refuse("which is not the configured endpoint's host and port");
        };
        if target.scheme() != "https" {
            return refuse("which is not an https URL");
        }
        let in_family = matches!(target.host(), Some(Host::Domain(d)) if family.contains(d));
        if !in_family {
            return refuse("which is not an Exchange Online host of the endpoint's cloud");
        }
        if target.port_or_known_default() != Some(443) {
            return refuse("which is not on port 443");
        }
        Ok(())
    }

    /// Same scheme, port and host as the endpoint (loopback names count as one host).
    fn same_server(&self, target: &Url) -> bool {
        let e = &self.endpoint;
        if target.scheme() != e.scheme()
            || target.port_or_known_default() != e.port_or_known_default()
        {
            return false;
        }
        match (e.host(), target.host()) {
            (Some(a), Some(b)) if is_loopback(&a) && is_loopback(&b) => true,
            (Some(Host::Domain(a)), Some(Host::Domain(b))) => a.eq_ignore_ascii_case(b),
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// Per tenant, the pod Exchange redirected to, until [`PIN_TTL`] or a failure there (kept as
/// a prepared [`Target`]: after a session's first request, every request goes there).
#[derive(Debug, Default)]
pub struct Pins {
    pins: Mutex<HashMap<TenantName, (Target, Instant)>>,
}

impl Pins {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantName, (Target, Instant)>> {
        // Plain inserts and removes: a panic elsewhere cannot leave the map inconsistent.
        self.pins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The live pin for `tenant` (an expired one is dropped).
    pub fn get(&self, tenant: &TenantName) -> Option<Target> {
        let mut pins = self.lock();
        match pins.get(tenant) {
            Some((target, until)) if Instant::now() < *until => Some(target.clone()),
            Some(_) => {
                tracing::info!(%tenant, "pinned Exchange pod expired; back to the endpoint");
                pins.remove(tenant);
                None
            }
            None => None,
        }
    }

    /// Remembers `url` (without its query) for `tenant` for [`PIN_TTL`].
    pub fn pin(&self, tenant: &TenantName, url: &Url) {
        // A redirect the policy allowed names a host; one without is simply not pinned.
        if let Ok(target) = Target::new(url) {
            self.lock()
                .insert(tenant.clone(), (target, Instant::now() + PIN_TTL));
        }
    }

    /// Forgets `tenant`'s pin if it is still `url`'s origin (the pod failed).
    pub fn drop_failed(&self, tenant: &TenantName, url: &Url) {
        let mut pins = self.lock();
        if pins
            .get(tenant)
            .is_some_and(|(pinned, _)| pinned.url().origin() == url.origin())
        {
            tracing::info!(%tenant, pod = %url.origin().ascii_serialization(), "pinned Exchange pod failed; dropping the pin");
            pins.remove(tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn commercial_family_is_followed_and_lookalikes_are_not() {
        let p = RedirectPolicy::new(&url("https://outlook.office365.com"));
        for ok in [
            "https://outlook.office365.com/PowerShell-LiveID?x=1",
            "https://am3pr01mb0001psh.outlook.office365.com/PowerShell-LiveID",
            "https://outlook.office.com/PowerShell-LiveID",
            "https://nam.outlook.office.com/x",
            "https://eur01.ps.protection.outlook.com/x",
            "https://OUTLOOK.OFFICE365.COM:443/x",
        ] {
            assert_eq!(p.check(&url(ok)), Ok(()), "{ok}");
        }
        for (bad, why) in [
            (
                "https://attacker.example/PowerShell-LiveID",
                "not an Exchange",
            ),
            (
                "https://outlook.office365.com.attacker.example/",
                "not an Exchange",
            ),
            ("https://attacker-outlook.office365.com/", "not an Exchange"),
            ("https://protection.outlook.com/", "not an Exchange"),
            ("http://pod.outlook.office365.com/", "not an https"),
            ("https://pod.outlook.office365.com:8443/", "port 443"),
            ("https://outlook.office365.us/", "not an Exchange"),
            ("https://u:p@pod.outlook.office365.com/", "credentials"),
            ("https://52.96.0.1/", "not an Exchange"),
        ] {
            let refused = p.check(&url(bad)).unwrap_err();
            assert!(refused.reason.contains(why), "{bad}: {}", refused.reason);
            assert!(refused.allowed.contains("*.protection.outlook.com"));
        }
    }

    #[test]
    fn sovereign_clouds_stay_in_their_family() {
        let gcch = RedirectPolicy::new(&url("https://outlook.office365.us"));
        assert_eq!(gcch.check(&url("https://pod.office365.us/x")), Ok(()));
        assert!(
            gcch.check(&url("https://pod.outlook.office365.com/x"))
                .is_err()
        );
        let dod = RedirectPolicy::new(&url("https://webmail.apps.mil"));
        assert_eq!(dod.check(&url("https://webmail.apps.mil/x")), Ok(()));
        assert!(dod.check(&url("https://pod.apps.mil/x")).is_err());
        let cn = RedirectPolicy::new(&url("https://partner.outlook.cn"));
        assert_eq!(cn.check(&url("https://pod.partner.outlook.cn/x")), Ok(()));
        assert!(cn.check(&url("https://outlook.cn/x")).is_err());
    }

    #[test]
    fn a_test_endpoint_allows_only_itself() {
        let p = RedirectPolicy::new(&url("https://127.0.0.1:4443"));
        assert_eq!(p.check(&url("https://localhost:4443/pod")), Ok(()));
        assert_eq!(p.check(&url("https://[::1]:4443/pod")), Ok(()));
        assert_eq!(p.check(&url("https://127.0.0.1:4443/pod")), Ok(()));
        assert!(p.check(&url("https://127.0.0.1:4444/pod")).is_err());
        assert!(p.check(&url("http://127.0.0.1:4443/pod")).is_err());
        assert!(p.check(&url("https://pod.outlook.office365.com/")).is_err());
        let private = RedirectPolicy::new(&url("https://exchange.test"));
        assert_eq!(private.check(&url("https://EXCHANGE.test/a")), Ok(()));
        assert!(private.check(&url("https://pod.exchange.test/a")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pin_expires_and_is_dropped_when_its_pod_fails() {
        let pins = Pins::default();
        let t = TenantName("contoso".into());
        let pod = url("https://localhost:1/PowerShell-LiveID?x=1");
        pins.pin(&t, &pod);
        assert_eq!(
            pins.get(&t).unwrap().url().as_str(),
            "https://localhost:1/PowerShell-LiveID"
        );
        tokio::time::advance(PIN_TTL - Duration::from_secs(1)).await;
        assert!(pins.get(&t).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(pins.get(&t).is_none(), "expired");

        pins.pin(&t, &pod);
        pins.drop_failed(&t, &url("https://other:1/"));
        assert!(pins.get(&t).is_some(), "another host's failure keeps it");
        pins.drop_failed(&t, &pod);
        assert!(pins.get(&t).is_none());
    }
}
