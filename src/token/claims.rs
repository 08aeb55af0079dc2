//! Decoding an access token's claims and judging whether Exchange will accept it.
//!
//! The token comes to us over TLS straight from Entra, so its signature is not checked here:
//! decoding is a diagnostic (exo-access-token.md §2), and a token that does not decode is
//! passed on with a warning rather than refused (Microsoft may change the format).
//!
//! The verdict follows Exchange's layers (exo-access-token.md §3): wrong audience, wrong tenant
//! or no `Exchange.ManageAsApp` role make the token unusable; no supported directory role in
//! `wids` is only a warning, because an Exchange-side role assignment (RBAC for applications)
//! authorizes the app without showing in the token. `wids` always holds
//! `0997a1d0-0d1d-4acb-b408-d5ca73121e90` for app-only tokens, which is not a role, so the test
//! is "a supported role template id is present".

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::Diagnosis;
use crate::config::TenantName;

/// The application permission Exchange requires.
pub const MANAGE_AS_APP: &str = "Exchange.ManageAsApp";

/// The `wids` entry every app-only token carries; not a directory role.
pub const APP_ONLY_MARKER: &str = "0997a1d0-0d1d-4acb-b408-d5ca73121e90";

/// Exchange Administrator's role template id: the role we tell people to assign.
pub const EXCHANGE_ADMINISTRATOR: &str = "29232cdf-9323-42fd-ade2-1d097af3e4de";

/// Directory roles Exchange accepts for app-only access (exo-access-token.md §4.1).
pub const SUPPORTED_ROLES: [(&str, &str); 8] = [
    (EXCHANGE_ADMINISTRATOR, "Exchange Administrator"),
    (
        "62e90394-69f5-4237-9190-012177145e10",
        "Global Administrator",
    ),
    ("f2ef992c-3afb-46b9-b7cf-a126ee74c451", "Global Reader"),
    (
        "17315797-102d-40b4-93e0-432062caca18",
        "Compliance Administrator",
    ),
    (
        "31392ffb-586c-42d1-9346-e59415a2cc4e",
        "Exchange Recipient Administrator",
    ),
    (
        "729827e3-9c14-49f7-bb1b-9608f156bbb8",
        "Helpdesk Administrator",
    ),
    (
        "194ae4cb-b126-40b2-bd5b-6091b380977d",
        "Security Administrator",
    ),
    ("5d6b6bb7-de71-4623-b4af-96380a352509", "Security Reader"),
];

/// The claims the proxy looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Claims {
    /// Audience.
    #[serde(default)]
    pub aud: String,
    /// Issuer.
    #[serde(default)]
    pub iss: String,
    /// Tenant that issued the token.
    #[serde(default)]
    pub tid: String,
    /// Client id (v1 tokens).
    #[serde(default)]
    pub appid: Option<String>,
    /// Client id (v2 tokens).
    #[serde(default)]
    pub azp: Option<String>,
    /// The service principal's object id in this tenant.
    #[serde(default)]
    pub oid: Option<String>,
    /// Application permissions.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Directory role template ids.
    #[serde(default)]
    pub wids: Vec<String>,
    /// Expiry (epoch seconds).
    #[serde(default)]
    pub exp: u64,
    /// Token id.
    #[serde(default)]
    pub uti: Option<String>,
    /// `app` for app-only tokens.
    #[serde(default)]
    pub idtyp: Option<String>,
}

impl Claims {
    /// Decodes the payload of a compact JWS without verifying it.
    ///
    /// # Errors
    /// A description of what is not a JWT about it.
    pub fn decode(token: &str) -> Result<Self, String> {
        let mut parts = token.split('.');
        let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(p), Some(_), None) => p,
            _ => return Err("not a compact JWS (three dot-separated parts)".into()),
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|e| format!("payload is not base64url ({e})"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("payload is not JSON claims ({e})"))
    }

    /// The app's client id (`appid` or `azp`).
    pub fn client_id(&self) -> Option<&str> {
        self.appid.as_deref().or(self.azp.as_deref())
    }

    /// Names of the supported directory roles in `wids`.
    pub fn directory_roles(&self) -> Vec<&'static str> {
        SUPPORTED_ROLES
            .iter()
            .filter(|(id, _)| self.wids.iter().any(|w| w.eq_ignore_ascii_case(id)))
            .map(|(_, name)| *name)
            .collect()
    }
}

/// What the token is expected to be.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// Our name for the tenant (for messages).
    pub tenant: &'a str,
    /// Its directory id: the token's `tid`.
    pub tenant_id: &'a str,
    /// The app's client id.
    pub client_id: &'a str,
    /// The resource: the token's `aud`.
    pub audience: &'a str,
    /// The authority (for the consent URL in messages).
    pub authority: &'a str,
}

/// Judges `claims`.
pub fn diagnose(claims: &Claims, want: &Expected<'_>) -> Diagnosis {
    let aud = claims.aud.trim_end_matches('/');
    if !aud.eq_ignore_ascii_case(want.audience.trim_end_matches('/')) {
        return Diagnosis::Unusable(format!(
            "tenant {}: the token's audience is {:?}, but Exchange expects {:?}: the scope asked \
             for does not match [exchange] endpoint (check the endpoint's cloud)",
            want.tenant, claims.aud, want.audience
        ));
    }
    if !claims.tid.eq_ignore_ascii_case(want.tenant_id) {
        return Diagnosis::Unusable(format!(
            "tenant {}: the token was issued by tenant {:?}, not {}: check tenant_id in [[tenant]] {}",
            want.tenant, claims.tid, want.tenant_id, want.tenant
        ));
    }
    if !claims.roles.iter().any(|r| r == MANAGE_AS_APP) {
        return Diagnosis::Unusable(format!(
            "tenant {}: the token of app {} has no {MANAGE_AS_APP} role (roles: {}): add the \
             application permission Office 365 Exchange Online → {MANAGE_AS_APP} to the app \
             registration and have an administrator of {} grant admin consent: {}",
            want.tenant,
            want.client_id,
            if claims.roles.is_empty() {
                "none".into()
            } else {
                claims.roles.join(", ")
            },
            want.tenant,
            consent_url(want.authority, want.tenant_id, want.client_id),
        ));
    }
    if claims.directory_roles().is_empty() {
        return Diagnosis::Warning(no_directory_role(want.tenant, want.client_id));
    }
    Diagnosis::Ready
}

/// The fix for a token with no supported directory role (also used when Exchange refuses).
pub fn no_directory_role(tenant: &str, client_id: &str) -> String {
    format!(
        "tenant {tenant}: the token of app {client_id} carries no supported directory role: \
         assign Exchange Administrator to the app's service principal in {tenant} (Entra admin \
         center → Roles and administrators → Exchange Administrator → Add assignments), or give \
         it an Exchange role group (New-ServicePrincipal, Add-RoleGroupMember); tokens keep \
         their roles until refreshed"
    )
}

/// Exchange refused an app whose token carries no supported directory role: the one text both
/// upstream modes show for it (DESIGN.md §4), `winrm` as a WS-Man fault, `rest` as the
/// cmdlet's error record. Built only here so the modes cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant {tenant}: Exchange refused app {app_id}, whose token carries no supported directory \
     role: assign Exchange Administrator to the app's service principal in {tenant} \
     ({organization}) (Entra admin center → Roles and administrators → Exchange Administrator → \
     Add assignment), or give it an Exchange role group; then retry (tokens keep their roles \
     until refreshed)"
)]
pub struct RoleRefusal {
    /// Local tenant name.
    pub tenant: TenantName,
    /// Organization domain.
    pub organization: String,
    /// The app's client id.
    pub app_id: String,
}

/// Security & Compliance refused an app for its role: S&C accepts other directory roles than
/// Exchange (scc-rest-adminapi.md §1), so Exchange Administrator — enough for
/// `/powershell-liveid/` — is not enough here. The one text for it, with both fixes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant {tenant}: Security & Compliance refused app {app_id} ({detail}): S&C accepts the \
     directory roles Compliance Administrator, Global Administrator, Global Reader, Security \
     Administrator or Security Reader — not Exchange Administrator, Exchange Recipient \
     Administrator or Helpdesk Administrator. Assign Compliance Administrator to the app's \
     service principal in {tenant} ({organization}) (Entra admin center → Roles and \
     administrators → Compliance Administrator → Add assignment), or in Security & Compliance \
     run New-ServicePrincipal and Add-RoleGroupMember for it; then retry (tokens keep their \
     roles until refreshed)"
)]
pub struct ComplianceRoleRefusal {
    /// Local tenant name.
    pub tenant: TenantName,
    /// Organization domain.
    pub organization: String,
    /// The app's client id.
    pub app_id: String,
    /// What S&C said.
    pub detail: String,
}

/// The directory roles S&C accepts app-only (scc-rest-adminapi.md §1), by name.
pub const COMPLIANCE_ROLE_NAMES: [&str; 5] = [
    "Compliance Administrator",
    "Global Administrator",
    "Global Reader",
    "Security Administrator",
    "Security Reader",
];

/// The admin-consent URL for `tenant_id` (exo-access-token.md §5.2).
pub fn consent_url(authority: &str, tenant_id: &str, client_id: &str) -> String {
    format!(
        "{}/{tenant_id}/adminconsent?client_id={client_id}&scope=https://outlook.office365.com/.default",
        authority.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &serde_json::Value) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims.to_string()))
    }

    fn want() -> Expected<'static> {
        Expected {
            tenant: "contoso",
            tenant_id: "t1",
            client_id: "app",
            audience: "https://outlook.office365.com",
            authority: "https://login.microsoftonline.com",
        }
    }

    #[test]
    fn marker_alone_is_not_a_role() {
        let c = Claims::decode(&token(&serde_json::json!({
            "aud": "https://outlook.office365.com", "tid": "t1", "roles": [MANAGE_AS_APP],
            "wids": [APP_ONLY_MARKER], "exp": 1
        })))
        .unwrap();
        let Diagnosis::Warning(text) = diagnose(&c, &want()) else {
            panic!()
        };
        assert!(text.contains("assign Exchange Administrator"), "{text}");
    }

    #[test]
    fn exchange_administrator_is_ready() {
        let c = Claims::decode(&token(&serde_json::json!({
            "aud": "https://outlook.office365.com/", "tid": "t1", "roles": [MANAGE_AS_APP],
            "wids": [APP_ONLY_MARKER, EXCHANGE_ADMINISTRATOR]
        })))
        .unwrap();
        assert_eq!(diagnose(&c, &want()), Diagnosis::Ready);
        assert_eq!(c.directory_roles(), ["Exchange Administrator"]);
    }

    #[test]
    fn missing_role_wrong_tid_and_audience_are_unusable() {
        let mk = |v| Claims::decode(&token(&v)).unwrap();
        let cases = [
            (
                serde_json::json!({"aud": "https://outlook.office365.com", "tid": "t1"}),
                "no Exchange.ManageAsApp role",
            ),
            (
                serde_json::json!({"aud": "https://outlook.office365.com", "tid": "t2", "roles": [MANAGE_AS_APP]}),
                "issued by tenant \"t2\"",
            ),
            (
                serde_json::json!({"aud": "https://graph.microsoft.com", "tid": "t1", "roles": [MANAGE_AS_APP]}),
                "audience is \"https://graph.microsoft.com\"",
            ),
        ];
        for (claims, text) in cases {
            let Diagnosis::Unusable(msg) = diagnose(&mk(claims), &want()) else {
                panic!("{text}")
            };
            assert!(msg.contains(text), "{msg}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Claims::decode("abc").is_err());
        assert!(Claims::decode("a.!!!.c").is_err());
        assert!(Claims::decode("a.e30.c").is_ok());
    }
}
