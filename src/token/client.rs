//! The token endpoint client: `POST {authority}/{tenant_id}/oauth2/v2.0/token`.
//!
//! reqwest over rustls, HTTP/1.1 with keep-alive (one TLS handshake per authority, not per
//! token), with connect and total deadlines so a hung Entra cannot hang a script forever.
//! Trust roots are webpki-roots plus an optional extra CA file (corporate TLS inspection, the
//! sandbox): a preconfigured rustls `ClientConfig`, so behaviour does not depend on the host's
//! certificate store.
//!
//! Entra's error bodies (`error`, `error_description`, `error_codes`, `trace_id`,
//! `correlation_id`) become [`TokenError::Rejected`] with the fix for the common AADSTS codes
//! (entra-client-credentials.md §6.1); 5xx, 429 and network failures become
//! [`TokenError::Unavailable`], which the cache retries.
//!
//! An app certificate replaced on disk while the proxy serves (a rotation in place) is picked
//! up by the configuration reload (`crate::reload` watches the credential files and hands the
//! engine new targets): one that does not load yet (the key written after the certificate)
//! leaves the previous credential in use until the files change again. Tokens already issued
//! stay valid, so a rotation costs no outage.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use super::Audience;
use super::cache::{CacheKey, Fetched, TokenSource};
use super::claims::{self, Claims, Expected};
use super::credential::{self, Credential, CredentialError};
use super::{AccessToken, Diagnosis, TokenError};
use crate::config::{TenantId, TenantName};
use crate::secret::Secret;

/// Largest token response we read (a token is a few KiB).
const MAX_BODY: usize = 256 * 1024;

/// Why a trust store could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("CA file {}: {problem}", path.display())]
pub struct CaFileError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What is wrong.
    pub problem: String,
}

/// A rustls client configuration trusting webpki-roots plus the certificates in `ca_file`,
/// offering HTTP/1.1 only. Also usable for the Exchange side (`[exchange] ca_file`).
///
/// # Errors
/// [`CaFileError`] when the file cannot be read or holds no certificate.
pub fn tls_client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, CaFileError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let err = |problem: String| CaFileError {
            path: path.to_owned(),
            problem,
        };
        let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&data) {
            let cert = cert.map_err(|e| err(format!("not valid PEM ({e})")))?;
            roots
                .add(cert)
                .map_err(|e| err(format!("not a usable CA certificate ({e})")))?;
            added += 1;
        }
        if added == 0 {
            return Err(err("no \"BEGIN CERTIFICATE\" block".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Everything needed to ask Entra for one tenant's token.
#[derive(Debug)]
pub struct Target {
    /// Our name.
    pub tenant: TenantName,
    /// Directory id.
    pub tenant_id: TenantId,
    /// The app.
    pub client_id: String,
    /// `{authority}/{tenant_id}/oauth2/v2.0/token`.
    pub token_url: String,
    /// The authority (consent URLs in messages).
    pub authority: String,
    /// `https://outlook.office365.com` or the cloud's Exchange host.
    pub resource: String,
    /// `https://ps.compliance.protection.outlook.com` or the cloud's S&C host
    /// (scc-rest-adminapi.md §1).
    pub compliance_resource: String,
    /// The resolved credential, or why it could not be.
    pub credential: Result<Credential, CredentialError>,
    /// The configuration it was resolved from (a reload compares it).
    pub settings: crate::config::Credentials,
}

impl Target {
    /// The resource (and expected `aud`) of `audience`'s tokens.
    pub fn resource_for(&self, audience: Audience) -> &str {
        match audience {
            Audience::Exchange => &self.resource,
            Audience::Compliance => &self.compliance_resource,
        }
    }
}

fn index(targets: Vec<Target>) -> Targets {
    targets
        .into_iter()
        .map(|t| (t.tenant.clone(), Arc::new(t)))
        .collect()
}

/// The production [`TokenSource`]: Entra ID's token endpoint.
pub struct EntraSource {
    http: reqwest::Client,
    /// Swapped whole by a config reload ([`EntraSource::replace_targets`]); a fetch in flight
    /// keeps the target it started with.
    targets: arc_swap::ArcSwap<Targets>,
}

/// Every tenant's target, by our name for it.
pub type Targets = std::collections::HashMap<TenantName, Arc<Target>>;

impl EntraSource {
    /// A source for `targets`, trusting the extra CA in `ca_file`.
    ///
    /// # Errors
    /// [`CaFileError`] as for [`tls_client_config`].
    pub fn new(targets: Vec<Target>, ca_file: Option<&Path>) -> Result<Self, CaFileError> {
        let tls = tls_client_config(ca_file)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .http1_only()
            .connect_timeout(Duration::from_secs(10))
            // Per attempt; the cache makes up to four, so a dead Entra costs a caller about a
            // minute at worst, not forever.
            .timeout(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("exo-authproxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CaFileError {
                path: ca_file.map(Path::to_owned).unwrap_or_default(),
                problem: format!("cannot build the HTTPS client ({e})"),
            })?;
        Ok(Self {
            http,
            targets: arc_swap::ArcSwap::from_pointee(index(targets)),
        })
    }

    /// Replaces every target (a config reload); returns the ones replaced.
    pub fn replace_targets(&self, targets: Targets) -> Arc<Targets> {
        self.targets.swap(Arc::new(targets))
    }

    /// The target for `tenant`.
    pub fn target(&self, tenant: &TenantName) -> Option<Arc<Target>> {
        self.targets.load().get(tenant).cloned()
    }

    async fn request(&self, t: &Target, audience: Audience) -> Result<Fetched, TokenError> {
        let resource = t.resource_for(audience);
        let cred = t.credential.as_ref().map_err(|e| TokenError::Credential {
            tenant: t.tenant.clone(),
            error: e.clone(),
        })?;
        let scope = format!("{resource}/.default");
        let mut form: Vec<(&str, String)> = vec![
            ("client_id", t.client_id.clone()),
            ("scope", scope),
            ("grant_type", "client_credentials".into()),
        ];
        const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        match cred {
            Credential::Certificate(cert) => {
                // Entra would answer AADSTS700027; the local check names the date and the fix.
                cert.check_validity(SystemTime::now())
                    .map_err(|error| TokenError::Credential {
                        tenant: t.tenant.clone(),
                        error,
                    })?;
                let assertion =
                    super::assertion::sign(cert, &t.client_id, &t.token_url, SystemTime::now())
                        .map_err(|e| TokenError::Malformed {
                            tenant: t.tenant.clone(),
                            detail: format!("cannot sign the client assertion ({e})"),
                        })?;
                form.push(("client_assertion_type", JWT_BEARER.into()));
                form.push(("client_assertion", assertion.into_exposed()));
            }
            Credential::Secret { secret, .. } => {
                form.push(("client_secret", secret.expose().clone()));
            }
            Credential::Federated(path) => {
                let jwt =
                    credential::read_federated(path)
                        .await
                        .map_err(|e| TokenError::Credential {
                            tenant: t.tenant.clone(),
                            error: e,
                        })?;
                form.push(("client_assertion_type", JWT_BEARER.into()));
                form.push(("client_assertion", jwt.into_exposed()));
            }
        }
        let body = Secret::new(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                .finish(),
        );
        drop(form);
        let unavailable =
            |status: Option<u16>, reason: String, retry_after| TokenError::Unavailable {
                tenant: t.tenant.clone(),
                url: t.token_url.clone(),
                status,
                reason,
                retry_after,
                attempts: 1,
            };
        let rsp = self
            .http
            .post(&t.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("client-request-id", uuid::Uuid::new_v4().to_string())
            .header("return-client-request-id", "true")
            .body(body.into_exposed())
            .send()
            .await
            .map_err(|e| unavailable(None, unreachable_reason(&e), None))?;
        let status = rsp.status();
        let retry_after = rsp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            // A day at most: beyond that the value is nonsense, and `Instant + huge` panics.
            .map(|secs| Duration::from_secs(secs.min(86_400)));
        let bytes = read_limited(rsp)
            .await
            .map_err(|reason| unavailable(Some(status.as_u16()), reason, retry_after))?;
        if status.is_success() {
            return self.success(t, audience, &bytes);
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        if status.is_server_error() || status.as_u16() == 429 {
            let reason = parsed.as_ref().map_or_else(
                || format!("HTTP {status}"),
                |b| match b.error_codes.first() {
                    Some(code) => format!("HTTP {status}: AADSTS{code}: {}", b.first_line()),
                    None => format!("HTTP {status}: {}", b.first_line()),
                },
            );
            let reason = format!(
                "{reason} (an outage or throttling at Entra ID: tokens already cached keep \
                 working, and this tenant gets one when Entra recovers)"
            );
            return Err(unavailable(Some(status.as_u16()), reason, retry_after));
        }
        let Some(b) = parsed else {
            return Err(TokenError::Malformed {
                tenant: t.tenant.clone(),
                detail: format!(
                    "{} answered HTTP {status} without an Entra error body: is [entra] authority \
                     right?",
                    t.token_url
                ),
            });
        };
        let code = b.error_codes.first().copied();
        let fix = fix_for(code, t, cred);
        Err(TokenError::Rejected(Box::new(super::Rejection {
            tenant: t.tenant.clone(),
            client_id: t.client_id.clone(),
            status: status.as_u16(),
            code,
            error: b.error.clone(),
            description: b.first_line(),
            fix,
            trace_id: b.trace_id.clone().unwrap_or_default(),
            correlation_id: b.correlation_id.clone().unwrap_or_default(),
        })))
    }

    fn success(&self, t: &Target, audience: Audience, bytes: &[u8]) -> Result<Fetched, TokenError> {
        #[derive(Deserialize)]
        struct Ok_ {
            access_token: String,
            expires_in: serde_json::Value,
            #[serde(default)]
            refresh_in: Option<serde_json::Value>,
        }
        let ok: Ok_ = serde_json::from_slice(bytes).map_err(|e| TokenError::Malformed {
            tenant: t.tenant.clone(),
            detail: format!(
                "the token response is not the expected JSON ({e}): is [entra] authority a \
                 Microsoft identity platform endpoint? (a proxy or captive portal in the network \
                 path answers like this)"
            ),
        })?;
        let lifetime = seconds(&ok.expires_in).map_err(|why| TokenError::Malformed {
            tenant: t.tenant.clone(),
            detail: format!(
                "Entra's token response has an unusable expires_in ({why});                  is [entra] authority a Microsoft identity platform endpoint?"
            ),
        })?;
        if lifetime > super::MAX_TOKEN_LIFETIME {
            tracing::warn!(tenant = %t.tenant, expires_in_s = lifetime.as_secs(),
                max_s = super::MAX_TOKEN_LIFETIME.as_secs(), "Entra's expires_in is implausibly long; clamped");
        }
        let lifetime = lifetime.min(super::MAX_TOKEN_LIFETIME);
        let decoded = Claims::decode(&ok.access_token);
        let lifetime = match &decoded {
            Ok(c) => believed_lifetime(&t.tenant, lifetime, c.exp, SystemTime::now()),
            Err(_) => lifetime,
        };
        // `refresh_in` is advice: an unusable one is ignored (refresh at half-life).
        let refresh_in = ok
            .refresh_in
            .as_ref()
            .and_then(|v| seconds(v).ok())
            .map(|d| d.min(lifetime));
        let (uti, diagnosis) = match decoded {
            Ok(c) => {
                let d = claims::diagnose(
                    &c,
                    &Expected {
                        tenant: t.tenant.as_str(),
                        tenant_id: t.tenant_id.as_str(),
                        client_id: &t.client_id,
                        audience: t.resource_for(audience),
                        authority: &t.authority,
                        endpoint: audience,
                    },
                );
                (c.uti.clone(), d)
            }
            Err(why) => (
                None,
                Diagnosis::Warning(format!(
                    "tenant {}: the access token could not be decoded for diagnosis ({why}); \
                     passing it on unchecked",
                    t.tenant
                )),
            ),
        };
        tracing::info!(tenant = %t.tenant, uti = uti.as_deref().unwrap_or("-"), expires_in_s = lifetime.as_secs(),
            "token issued");
        Ok(Fetched {
            token: AccessToken {
                token: Secret::new(ok.access_token),
                expires_at: SystemTime::now()
                    .checked_add(lifetime)
                    .unwrap_or_else(SystemTime::now),
                uti,
                diagnosis,
            },
            lifetime,
            refresh_in,
        })
    }
}

/// The shortest lifetime believed from a token's `exp` when it is earlier than `expires_in`
/// says: above the cache's five-minute safety margin, so a host clock running fast costs
/// extra refreshes, never an outage.
const MIN_EXP_LIFETIME: Duration = Duration::from_secs(360);

/// How long a token lives: `expires_in`, or less when its `exp` says it expires earlier (a
/// token must be refreshed before Exchange refuses it, not after), never below
/// [`MIN_EXP_LIFETIME`]. `exp` 0 means the token carries none.
fn believed_lifetime(
    tenant: &TenantName,
    expires_in: Duration,
    exp: u64,
    now: SystemTime,
) -> Duration {
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if exp == 0 {
        return expires_in;
    }
    let by_exp = Duration::from_secs(exp.saturating_sub(now_s));
    if by_exp + Duration::from_secs(60) >= expires_in {
        return expires_in;
    }
    let believed = by_exp.max(MIN_EXP_LIFETIME).min(expires_in);
    tracing::warn!(%tenant, expires_in_s = expires_in.as_secs(), exp_in_s = by_exp.as_secs(),
        believed_s = believed.as_secs(),
        "the token's exp is earlier than Entra's expires_in: refreshing by exp (if this host's clock runs fast, fix it: NTP)");
    believed
}

/// Why Entra could not be reached, with what to check.
fn unreachable_reason(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "Entra ID did not answer in time (timed out)"
    } else {
        "Entra ID could not be reached"
    };
    format!(
        "{what}: {}; check [entra] authority, DNS and the network path to it, and [entra] ca_file",
        error_chain(e)
    )
}

/// A whole number of seconds, as a JSON number or string (Entra has sent both). Negative,
/// fractional, non-numeric or absurd values are refused with what was wrong, never a panic.
///
/// # Errors
/// What was wrong with the value (for the [`TokenError::Malformed`] text).
pub fn seconds(value: &serde_json::Value) -> Result<Duration, String> {
    let parsed = match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    let shown: String = value.to_string().chars().take(40).collect();
    parsed
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{shown} is not a whole, non-negative number of seconds"))
}

impl TokenSource for EntraSource {
    fn fetch<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Result<Fetched, TokenError>> {
        Box::pin(async move {
            let t = self
                .target(&key.tenant)
                .ok_or_else(|| TokenError::UnknownTenant(key.tenant.clone()))?;
            self.request(&t, key.audience).await
        })
    }
}

async fn read_limited(mut rsp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = rsp.chunk().await.map_err(|e| error_chain(&e))? {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(format!("response larger than {MAX_BODY} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u32>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
}

impl ErrorBody {
    /// The first line of the description, without the `AADSTSnnn: ` prefix (the code is
    /// shown separately).
    fn first_line(&self) -> String {
        let line = self
            .error_description
            .split(['\r', '\n'])
            .next()
            .unwrap_or_default()
            .trim();
        match line.split_once(": ") {
            Some((code, rest))
                if code.starts_with("AADSTS") && code[6..].chars().all(|c| c.is_ascii_digit()) =>
            {
                rest.to_owned()
            }
            _ => line.to_owned(),
        }
    }
}

/// What the user must do for an AADSTS code (entra-client-credentials.md §6.1).
fn fix_for(code: Option<u32>, t: &Target, cred: &Credential) -> String {
    let app = &t.client_id;
    let tenant = &t.tenant;
    match code {
        Some(700016) => format!(
            "app {app} is not known in tenant {tenant} ({}): check client_id and tenant_id, and \
             have an administrator of {tenant} grant admin consent: {}",
            t.tenant_id,
            claims::consent_url(&t.authority, t.tenant_id.as_str(), app)
        ),
        Some(700027) => match cred {
            Credential::Certificate(c) => format!(
                "upload {} (thumbprint {}) to app {app} (App registrations → Certificates & \
                 secrets → Certificates), or configure the certificate that is uploaded; right \
                 after an upload, retry in a minute",
                c.source.display(),
                c.thumbprint
            ),
            _ => format!("upload the app's certificate to app {app}"),
        },
        Some(700024) => match cred {
            Credential::Federated(p) => format!(
                "the federated token in {} has expired or is not yet valid: check that the \
                 projected service-account token is being rotated, and the host clock",
                p.display()
            ),
            _ => "the client assertion is outside its validity window: fix the host clock (NTP)"
                .into(),
        },
        Some(7000215) => match cred {
            Credential::Secret { from, .. } => format!(
                "the client secret in {from} is wrong for app {app}: paste the secret's *Value*, \
                 not its Secret ID (or better, switch to a certificate)"
            ),
            _ => format!("the client secret is wrong for app {app}"),
        },
        Some(7000222) => format!(
            "the client secret of app {app} has expired: create a new one, or switch to a \
             certificate"
        ),
        Some(90002) => format!(
            "tenant {} does not exist at {}: check tenant_id of [[tenant]] {tenant} and the \
             authority (sovereign clouds have their own)",
            t.tenant_id, t.authority
        ),
        Some(90038) => format!(
            "tenant {tenant} lives in another cloud: set [entra] authority to that cloud's login host"
        ),
        Some(500011) => format!(
            "tenant {tenant} has no resource {}: check that it has Exchange Online and that \
             [exchange] endpoint is the right cloud",
            t.resource
        ),
        Some(7000112) => {
            format!("app {app} is disabled in tenant {tenant}: re-enable the enterprise app")
        }
        Some(53003) => format!(
            "a Conditional Access policy in {tenant} blocks app {app}: exclude its service principal"
        ),
        Some(50012) => "Entra could not verify the client assertion: check that the certificate \
                        and key belong together and that the authority is right"
            .into(),
        Some(700211..=700213) => match cred {
            Credential::Federated(p) => format!(
                "no federated credential on app {app} matches the token in {} (issuer, subject \
                 or audience api://AzureADTokenExchange)",
                p.display()
            ),
            _ => "no federated credential matches".into(),
        },
        _ => format!(
            "see the Entra error above; the trace and correlation ids identify the request for \
             Microsoft support (app {app}, tenant {tenant})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantId;

    #[test]
    fn a_token_is_believed_until_the_earlier_of_exp_and_expires_in_never_below_the_floor() {
        let t = TenantName("contoso".into());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        let at = |secs: u64| 1_000_000 + secs;
        // No exp, or exp agreeing with expires_in (within a minute): expires_in.
        assert_eq!(believed_lifetime(&t, hour, 0, now), hour);
        assert_eq!(believed_lifetime(&t, hour, at(3600), now), hour);
        assert_eq!(believed_lifetime(&t, hour, at(3550), now), hour);
        assert_eq!(believed_lifetime(&t, hour, at(7200), now), hour);
        // exp earlier: exp.
        assert_eq!(
            believed_lifetime(&t, hour, at(900), now),
            Duration::from_secs(900)
        );
        // exp in the past or nearly (this host's clock runs fast): the floor, not an outage.
        assert_eq!(believed_lifetime(&t, hour, at(10), now), MIN_EXP_LIFETIME);
        assert_eq!(believed_lifetime(&t, hour, 5, now), MIN_EXP_LIFETIME);
        // Never longer than expires_in.
        let short = Duration::from_secs(200);
        assert_eq!(believed_lifetime(&t, short, at(10), now), short);
    }

    fn target() -> Target {
        Target {
            tenant: TenantName("contoso".into()),
            tenant_id: TenantId("0f9c3b1e-1111-2222-3333-444455556666".into()),
            client_id: "app".into(),
            token_url: "https://login.example/t/oauth2/v2.0/token".into(),
            authority: "https://login.example".into(),
            resource: "https://outlook.office365.com".into(),
            compliance_resource: "https://ps.compliance.protection.outlook.com".into(),
            credential: Err(CredentialError::Read {
                what: "certificate",
                path: "app.pem".into(),
                problem: "unused".into(),
            }),
            settings: crate::config::Credentials::default(),
        }
    }

    fn answer(expires_in: &str, refresh_in: Option<&str>) -> Result<Fetched, TokenError> {
        let source = EntraSource::new(vec![target()], None).unwrap();
        let refresh = refresh_in.map_or(String::new(), |r| format!(",\"refresh_in\":{r}"));
        let body = format!(r#"{{"access_token":"not.a.jwt","expires_in":{expires_in}{refresh}}}"#);
        source.success(&target(), Audience::Exchange, body.as_bytes())
    }

    #[test]
    fn expires_in_as_number_or_string() {
        assert_eq!(answer("3599", None).unwrap().lifetime.as_secs(), 3599);
        assert_eq!(answer("\"3599\"", None).unwrap().lifetime.as_secs(), 3599);
    }

    #[test]
    fn absurd_expires_in_is_an_error_with_the_fix_or_clamped_never_a_panic() {
        for bad in [
            "-1", "\"-1\"", "\"NaN\"", "\"inf\"", "3599.5", "1e300", "null", "\"\"", "[1]",
        ] {
            let err = answer(bad, None).unwrap_err().to_string();
            assert!(
                err.starts_with(
                    "tenant contoso: Entra's token response has an unusable expires_in ("
                ) && err.contains("is not a whole, non-negative number of seconds")
                    && err.contains("[entra] authority"),
                "{bad}: {err}"
            );
        }
        let err = answer("1e400", None).unwrap_err().to_string();
        assert!(err.contains("not the expected JSON"), "{err}");
        for huge in [
            "18446744073709551615",
            "\"18446744073709551615\"",
            "315360000",
        ] {
            let fetched = answer(huge, Some("18446744073709551615")).unwrap();
            assert_eq!(fetched.lifetime, crate::token::MAX_TOKEN_LIFETIME, "{huge}");
            assert_eq!(fetched.refresh_in, Some(crate::token::MAX_TOKEN_LIFETIME));
        }
        // An unusable refresh_in is advice ignored, not an error.
        let fetched = answer("3600", Some("\"soon\"")).unwrap();
        assert_eq!(fetched.refresh_in, None);
    }
}
