//! The token endpoint: knobs (throttle, fail), the client-credentials checks, the signed token.
//!
//! Separate because this is the request the proxy depends on, and its order of checks (grant
//! type, client id, tenant, scope, app, credential) is what decides which AADSTS code is sent.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::sandbox::claims::{APP_ONLY_MARKER, MANAGE_AS_APP};

use super::response::{aadsts, json_response};
use super::{EXCHANGE_RESOURCE, EntraSim, JWT_BEARER, lock, now_secs};
use crate::sandbox::claims::COMPLIANCE_RESOURCE;

impl EntraSim {
    pub(super) fn token(&self, tenant: &str, url: &str, body: &[u8]) -> Response<Full<Bytes>> {
        {
            let mut k = lock(&self.state.knobs);
            if k.throttle_next > 0 {
                k.throttle_next -= 1;
                let mut rsp = aadsts(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    90055,
                    "The tenant is being throttled: too many requests. Retry after the time in \
                     the Retry-After header.",
                );
                rsp.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from(k.retry_after),
                );
                return rsp;
            }
            if k.fail_next > 0 {
                k.fail_next -= 1;
                return aadsts(
                    k.fail_status,
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                );
            }
        }
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        match self.issue(tenant, url, &form) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(rsp) => rsp,
        }
    }

    fn issue(
        &self,
        tenant: &str,
        url: &str,
        form: &HashMap<String, String>,
    ) -> Result<Value, Response<Full<Bytes>>> {
        let bad = StatusCode::BAD_REQUEST;
        let unauthorized = StatusCode::UNAUTHORIZED;
        let field = |k: &str| form.get(k).map(String::as_str);
        if field("grant_type") != Some("client_credentials") {
            return Err(aadsts(
                bad,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type; this endpoint supports client_credentials.",
            ));
        }
        let Some(client_id) = field("client_id") else {
            return Err(aadsts(
                bad,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            ));
        };
        let reg = lock(&self.state.registry);
        let Some(consents) = reg.tenants.get(tenant) else {
            return Err(aadsts(
                bad,
                "invalid_request",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant \
                     ID and are signing into the correct cloud. Check with your subscription \
                     administrator, this may happen if there are no active subscriptions for the \
                     tenant."
                ),
            ));
        };
        let scope = field("scope").unwrap_or_default();
        // Exchange's resource, or Security & Compliance's (scc-rest-adminapi.md §1).
        let Some(audience) = [EXCHANGE_RESOURCE, COMPLIANCE_RESOURCE]
            .into_iter()
            .find(|r| scope == format!("{r}/.default"))
        else {
            return Err(aadsts(
                bad,
                "invalid_scope",
                70011,
                &format!(
                    "The provided request must include a 'scope' input parameter. The provided \
                     value for the input parameter 'scope' is not valid: {scope:?}. The scope \
                     {EXCHANGE_RESOURCE}/.default is valid."
                ),
            ));
        };
        let (Some(app), Some(consent)) = (reg.apps.get(client_id), consents.get(client_id)) else {
            return Err(aadsts(
                bad,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory \
                     '{tenant}'. This can happen if the application has not been installed by \
                     the administrator of the tenant or consented to by any user in the tenant. \
                     You may have sent your authentication request to the wrong tenant."
                ),
            ));
        };
        let acr = if let Some(secret) = field("client_secret") {
            let ok = app
                .secrets
                .iter()
                .any(|s| bool::from(s.expose().as_bytes().ct_eq(secret.as_bytes())));
            if !ok {
                return Err(aadsts(
                    unauthorized,
                    "invalid_client",
                    7000215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the \
                         request is the client secret value, not the client secret ID, for a \
                         secret added to app '{client_id}'."
                    ),
                ));
            }
            "1"
        } else if let Some(assertion) = field("client_assertion") {
            if field("client_assertion_type") != Some(JWT_BEARER) {
                return Err(aadsts(
                    bad,
                    "invalid_request",
                    50027,
                    &format!("client_assertion_type must be {JWT_BEARER}."),
                ));
            }
            self.check_assertion(app, url, assertion)?;
            "2"
        } else {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or \
                 'client_secret'.",
            ));
        };
        let k = lock(&self.state.knobs);
        let now = now_secs();
        let mut wids = consent.directory_roles.clone();
        wids.push(APP_ONLY_MARKER.to_owned());
        let mut claims = json!({
            "aud": audience,
            "iss": Self::issuer(tenant),
            "iat": now, "nbf": now, "exp": now + k.lifetime,
            "app_displayname": app.display_name,
            "appid": client_id,
            "appidacr": acr,
            "idp": Self::issuer(tenant),
            "idtyp": "app",
            "oid": consent.object_id,
            "sub": consent.object_id,
            "tid": tenant,
            "uti": URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()),
            "ver": "1.0",
            "wids": wids,
        });
        if consent.permission {
            claims["roles"] = json!([MANAGE_AS_APP]);
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.state.kid.clone());
        header.x5t = Some(self.state.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, self.state.signing.expose()).map_err(|e| {
                aadsts(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    50000,
                    &format!("signing failed: {e}"),
                )
            })?;
        let mut out = json!({
            "token_type": "Bearer",
            "expires_in": k.lifetime,
            "ext_expires_in": k.lifetime,
            "access_token": token,
        });
        if let Some(r) = k.refresh_in {
            out["refresh_in"] = json!(r);
        }
        Ok(out)
    }
}
