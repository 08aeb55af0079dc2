//! Decoding an access token's claims and judging whether its endpoint (Exchange, or
//! Security & Compliance for the compliance audience) will accept it.
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
//!
//! "Supported" depends on the endpoint: Security & Compliance accepts other directory roles
//! than Exchange (scc-rest-adminapi.md §1: Exchange Administrator is enough for
//! `/powershell-liveid/`, not for `/compliance/powershell-liveid/`). So the roles are judged
//! per endpoint ([`accepted_roles`]), and the fix for a missing one is worded once per
//! endpoint ([`role_fix`]): the claims warning, `check`, the pre-flight refusal
//! (`require_directory_role`) and the refusal after the service said no all use it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::{Audience, Diagnosis};
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

/// Role template ids Security & Compliance accepts for app-only access
/// (scc-rest-adminapi.md §1); Exchange Administrator, Exchange Recipient Administrator and
/// Helpdesk Administrator are not among them.
pub const COMPLIANCE_ROLES: [(&str, &str); 5] = [
    (
        "17315797-102d-40b4-93e0-432062caca18",
        "Compliance Administrator",
    ),
    (
        "62e90394-69f5-4237-9190-012177145e10",
        "Global Administrator",
    ),
    ("f2ef992c-3afb-46b9-b7cf-a126ee74c451", "Global Reader"),
    (
        "194ae4cb-b126-40b2-bd5b-6091b380977d",
        "Security Administrator",
    ),
    ("5d6b6bb7-de71-4623-b4af-96380a352509", "Security Reader"),
];

/// The directory roles `endpoint` accepts app-only: (template id, name).
pub fn accepted_roles(endpoint: Audience) -> &'static [(&'static str, &'static str)] {
    match endpoint {
        Audience::Exchange => &SUPPORTED_ROLES,
        Audience::Compliance => &COMPLIANCE_ROLES,
    }
}

/// The endpoint's name in the first words of a message ("refused before contacting …").
pub fn endpoint_name(endpoint: Audience) -> &'static str {
    match endpoint {
        Audience::Exchange => "Exchange",
        Audience::Compliance => "Security & Compliance",
    }
}

/// What a token without an accepted directory role lacks, for `endpoint`.
pub fn role_lack(endpoint: Audience) -> &'static str {
    match endpoint {
        Audience::Exchange => "no supported directory role",
        Audience::Compliance => "no directory role Security & Compliance accepts",
    }
}

/// The fix for an app without a directory role `endpoint` accepts, in `place` (the tenant,
/// as the message names it): the one wording of it, used by the claims warning, `check`,
/// the pre-flight refusal and the refusal after the service said no.
pub fn role_fix(endpoint: Audience, place: &str) -> String {
    match endpoint {
        Audience::Exchange => format!(
            "assign Exchange Administrator to the app's service principal in {place} (Entra \
             admin center → Roles and administrators → Exchange Administrator → Add \
             assignment), or give it an Exchange role group; then retry (tokens keep their \
             roles until refreshed)"
        ),
        Audience::Compliance => {
            let names = |roles: &[(&str, &'static str)]| {
                let names: Vec<&str> = roles.iter().map(|(_, n)| *n).collect();
                match names.split_last() {
                    Some((last, [])) => (*last).to_owned(),
                    Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                    None => String::new(),
                }
            };
            let not_accepted: Vec<(&str, &'static str)> = SUPPORTED_ROLES
                .iter()
                .filter(|(id, _)| !COMPLIANCE_ROLES.iter().any(|(c, _)| c == id))
                .copied()
                .collect();
            format!(
                "Security & Compliance accepts the directory roles {} — not {}. Assign \
                 Compliance Administrator to the app's service principal in {place} (Entra \
                 admin center → Roles and administrators → Compliance Administrator → Add \
                 assignment), or in Security & Compliance run New-ServicePrincipal and \
                 Add-RoleGroupMember for it; then retry (tokens keep their roles until \
                 refreshed)",
                names(&COMPLIANCE_ROLES),
                names(&not_accepted),
            )
        }
    }
}

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

    /// Names of the directory roles in `wids` that Exchange accepts.
    pub fn directory_roles(&self) -> Vec<&'static str> {
        self.directory_roles_for(Audience::Exchange)
    }

    /// Names of the directory roles in `wids` that `endpoint` accepts.
    pub fn directory_roles_for(&self, endpoint: Audience) -> Vec<&'static str> {
        accepted_roles(endpoint)
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
    /// The endpoint the token is for: it decides which directory roles count.
    pub endpoint: Audience,
}

/// Judges `claims`.
pub fn diagnose(claims: &Claims, want: &Expected<'_>) -> Diagnosis {
    let aud = claims.aud.trim_end_matches('/');
    let name = endpoint_name(want.endpoint);
    if !aud.eq_ignore_ascii_case(want.audience.trim_end_matches('/')) {
        return Diagnosis::Unusable(format!(
            "tenant {}: the token's audience is {:?}, but {name} expects {:?}: the scope asked \
             for does not match [{}] endpoint (check the endpoint's cloud)",
            want.tenant,
            claims.aud,
            want.audience,
            want.endpoint.as_str()
        ));
    }
    if !claims.tid.eq_ignore_ascii_case(want.tenant_id) {
        return Diagnosis::Unusable(format!(
            "tenant {}: the token was issued by tenant {:?}, not {}: check tenant_id in [[tenant]] {}",
            want.tenant, claims.tid, want.tenant_id, want.tenant
        ));
    }
    if !claims.roles.iter().any(|r| r == MANAGE_AS_APP) {
        let roles = if claims.roles.is_empty() {
            "none".into()
        } else {
            claims.roles.join(", ")
        };
        return Diagnosis::Unusable(match want.endpoint {
            Audience::Exchange => format!(
                "tenant {}: the token of app {} has no {MANAGE_AS_APP} role (roles: {roles}): add \
                 the application permission Office 365 Exchange Online → {MANAGE_AS_APP} to the \
                 app registration and have an administrator of {} grant admin consent: {}",
                want.tenant,
                want.client_id,
                want.tenant,
                consent_url(want.authority, want.tenant_id, want.client_id),
            ),
            Audience::Compliance => PermissionQuestion {
                tenant: TenantName(want.tenant.to_owned()),
                app_id: want.client_id.to_owned(),
                detail: format!("its token has no {MANAGE_AS_APP} role; roles: {roles}"),
            }
            .to_string()
            .replacen("refused", "will refuse", 1),
        });
    }
    if claims.directory_roles_for(want.endpoint).is_empty() {
        return Diagnosis::Warning(no_directory_role(
            want.tenant,
            want.client_id,
            want.endpoint,
        ));
    }
    Diagnosis::Ready
}

/// The fix for a token with no directory role `endpoint` accepts (the claims warning).
pub fn no_directory_role(tenant: &str, client_id: &str, endpoint: Audience) -> String {
    format!(
        "tenant {tenant}: the token of app {client_id} carries {}: {}",
        role_lack(endpoint),
        role_fix(endpoint, tenant)
    )
}

/// Exchange refused an app whose token carries no supported directory role: the one text both
/// upstream modes show for it (DESIGN.md §4), `winrm` as a WS-Man fault, `rest` as the
/// cmdlet's error record. Built only here so the modes cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant {tenant}: Exchange refused app {app_id}, whose token carries no supported directory \
     role: {}",
    role_fix(Audience::Exchange, &format!("{tenant} ({organization})"))
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
/// `/powershell-liveid/` — is not enough here. [`role_fix`]'s S&C wording, with both fixes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant {tenant}: Security & Compliance refused app {app_id} ({detail}): {}",
    role_fix(Audience::Compliance, &format!("{tenant} ({organization})"))
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

/// Security & Compliance refused the app's token app-only (401 even with a fresh token, or a
/// token without `Exchange.ManageAsApp`). Which application permission S&C checks is an open
/// question (scc-rest-adminapi.md §8, question 1; §1 lists the conflicting sources), so the
/// text names both possible fixes rather than guessing one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant {tenant}: Security & Compliance refused app {app_id} app-only ({detail}). Which \
     application permission S&C checks is not settled, so there are two possible fixes: (1) \
     the permission Exchange uses, Office 365 Exchange Online \
     (00000002-0000-0ff1-ce00-000000000000) → Exchange.ManageAsApp; (2) Microsoft Exchange \
     Online Protection (00000007-0000-0ff1-ce00-000000000000) → Exchange.ManageAsApp, the \
     resource S&C's challenge names. Add both to the app registration (API permissions → APIs \
     my organization uses), have an administrator of {tenant} grant admin consent, then retry \
     (tokens keep their permissions until refreshed)"
)]
pub struct PermissionQuestion {
    /// Local tenant name.
    pub tenant: TenantName,
    /// The app's client id.
    pub app_id: String,
    /// What S&C said (or what the token lacks).
    pub detail: String,
}

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
            endpoint: Audience::Exchange,
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
    fn roles_are_judged_per_endpoint() {
        let c = Claims::decode(&token(&serde_json::json!({
            "aud": "https://ps.compliance.protection.outlook.com", "tid": "t1",
            "roles": [MANAGE_AS_APP], "wids": [APP_ONLY_MARKER, EXCHANGE_ADMINISTRATOR]
        })))
        .unwrap();
        let scc = Expected {
            audience: "https://ps.compliance.protection.outlook.com",
            endpoint: Audience::Compliance,
            ..want()
        };
        let Diagnosis::Warning(text) = diagnose(&c, &scc) else {
            panic!("Exchange Administrator is not an S&C role")
        };
        assert_eq!(
            text,
            format!(
                "tenant contoso: the token of app app carries no directory role Security & \
                 Compliance accepts: {}",
                role_fix(Audience::Compliance, "contoso")
            )
        );
        assert!(
            text.contains(
                "accepts the directory roles Compliance Administrator, Global Administrator, \
                 Global Reader, Security Administrator or Security Reader — not Exchange \
                 Administrator, Exchange Recipient Administrator or Helpdesk Administrator."
            ),
            "{text}"
        );
        assert!(c.directory_roles_for(Audience::Compliance).is_empty());
        let mut admin = c.clone();
        admin
            .wids
            .push("17315797-102d-40b4-93e0-432062caca18".into());
        assert_eq!(diagnose(&admin, &scc), Diagnosis::Ready);
        // Without the permission, S&C's text asks the open permission question.
        admin.roles.clear();
        let Diagnosis::Unusable(text) = diagnose(&admin, &scc) else {
            panic!()
        };
        assert!(
            text.contains("00000002-0000-0ff1-ce00-000000000000")
                && text.contains("00000007-0000-0ff1-ce00-000000000000"),
            "{text}"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Claims::decode("abc").is_err());
        assert!(Claims::decode("a.!!!.c").is_err());
        assert!(Claims::decode("a.e30.c").is_ok());
    }
}
