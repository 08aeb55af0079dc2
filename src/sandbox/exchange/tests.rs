//! Unit tests for the simulator: each refusal Exchange makes, and the routing after them.

use super::*;
use base64::Engine;
use futures_util::future::BoxFuture;
use jsonwebtoken::{DecodingKey, EncodingKey, Header};

/// An RSA signing key for tests (the real one comes from the simulated Entra).
pub(crate) fn test_key() -> (EncodingKey, DecodingKey) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA keygen");
    let enc = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).expect("encoding key");
    let dec = DecodingKey::from_rsa_pem(pair.public_key_pem().as_bytes()).expect("decoding key");
    (enc, dec)
}

struct NoRps;
impl RpsService for NoRps {
    fn handle<'a>(
        &'a self,
        _: &'a str,
        _: AppIdentity,
        _: Request<Bytes>,
    ) -> BoxFuture<'a, Response<Bytes>> {
        Box::pin(async { text(StatusCode::OK, "rps") })
    }
}

fn sim(dec: DecodingKey) -> ExchangeSim {
    let mut keys = SigningKeys::default();
    keys.push(Some("k1".into()), dec);
    ExchangeSim::new(
        keys,
        vec![
            SimTenant {
                tenant_id: "t-contoso".into(),
                organization: "contoso.onmicrosoft.com".into(),
                exchange_role_apps: HashSet::new(),
            },
            SimTenant {
                tenant_id: "t-rbac".into(),
                organization: "rbac.onmicrosoft.com".into(),
                exchange_role_apps: HashSet::from(["app".to_owned()]),
            },
        ],
        Arc::new(NoRps),
        None,
    )
}

fn token(enc: &EncodingKey, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(&header, &claims, enc).unwrap()
}

fn claims(tid: &str, aud: &str, exp_in: i64, roles: &[&str], wids: &[&str]) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({"aud": aud, "tid": tid, "appid": "app", "exp": now + exp_in, "roles": roles, "wids": wids})
}

#[test]
fn exchange_checks_are_layered_like_exchange() {
    let (enc, dec) = test_key();
    let sim = sim(dec);
    let admin = "29232cdf-9323-42fd-ade2-1d097af3e4de";
    let ok = token(
        &enc,
        claims(
            "t-contoso",
            EXCHANGE_RESOURCE,
            3600,
            &["Exchange.ManageAsApp"],
            &[NOT_A_ROLE, admin],
        ),
    );
    assert_eq!(
        sim.authorize(&ok).unwrap().organization,
        "contoso.onmicrosoft.com"
    );

    let aud = token(
        &enc,
        claims(
            "t-contoso",
            "https://graph.microsoft.com",
            3600,
            &["Exchange.ManageAsApp"],
            &[admin],
        ),
    );
    assert!(matches!(sim.authorize(&aud), Err(Refusal::Unauthorized(m)) if m.contains("audience")));
    let expired = token(
        &enc,
        claims(
            "t-contoso",
            EXCHANGE_RESOURCE,
            -3600,
            &["Exchange.ManageAsApp"],
            &[admin],
        ),
    );
    assert!(matches!(
        sim.authorize(&expired),
        Err(Refusal::Unauthorized(_))
    ));
    let no_perm = token(
        &enc,
        claims("t-contoso", EXCHANGE_RESOURCE, 3600, &[], &[admin]),
    );
    assert!(matches!(
        sim.authorize(&no_perm),
        Err(Refusal::Unauthorized(_))
    ));
    let no_role = token(
        &enc,
        claims(
            "t-contoso",
            EXCHANGE_RESOURCE,
            3600,
            &["Exchange.ManageAsApp"],
            &[NOT_A_ROLE],
        ),
    );
    assert_eq!(
        sim.authorize(&no_role),
        Err(Refusal::NoManagementRole {
            app_id: "app".into()
        })
    );
    let rbac = token(
        &enc,
        claims(
            "t-rbac",
            EXCHANGE_RESOURCE,
            3600,
            &["Exchange.ManageAsApp"],
            &[NOT_A_ROLE],
        ),
    );
    assert!(
        sim.authorize(&rbac).is_ok(),
        "an Exchange-side assignment authorizes without a directory role"
    );

    let (other, _) = test_key();
    let forged = token(
        &other,
        claims(
            "t-contoso",
            EXCHANGE_RESOURCE,
            3600,
            &["Exchange.ManageAsApp"],
            &[admin],
        ),
    );
    assert!(matches!(
        sim.authorize(&forged),
        Err(Refusal::Unauthorized(_))
    ));
}

#[tokio::test]
async fn rps_needs_the_conversion_flag_and_the_right_anchor_and_refuses_cryptically() {
    let (enc, dec) = test_key();
    let sim = sim(dec);
    let basic = |tok: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("OAuthUser@t:Bearer {tok}"))
        )
    };
    let request = |query: &str, auth: &str| {
        Request::post(format!("/PowerShell-LiveID?{query}"))
            .header(header::AUTHORIZATION, auth)
            .body(Bytes::new())
            .unwrap()
    };
    let admin = "29232cdf-9323-42fd-ade2-1d097af3e4de";
    let ok = token(
        &enc,
        claims(
            "t-contoso",
            EXCHANGE_RESOURCE,
            3600,
            &["Exchange.ManageAsApp"],
            &[admin],
        ),
    );
    let anchor = "email=SystemMailbox%7Bx%7D%40contoso.onmicrosoft.com";
    let good = sim
        .handle(
            request(
                &format!("BasicAuthToOAuthConversion=true&{anchor}"),
                &basic(&ok),
            ),
            "pod",
        )
        .await;
    assert_eq!(good.status(), StatusCode::OK);
    let no_flag = sim.handle(request(anchor, &basic(&ok)), "pod").await;
    assert_eq!(no_flag.status(), StatusCode::UNAUTHORIZED);
    let wrong_anchor = sim
        .handle(
            request(
                "BasicAuthToOAuthConversion=true&email=x%40fabrikam.onmicrosoft.com",
                &basic(&ok),
            ),
            "pod",
        )
        .await;
    assert_eq!(wrong_anchor.status(), StatusCode::BAD_REQUEST);

    let no_role = token(
        &enc,
        claims(
            "t-contoso",
            EXCHANGE_RESOURCE,
            3600,
            &["Exchange.ManageAsApp"],
            &[NOT_A_ROLE],
        ),
    );
    let refused = sim
        .handle(
            request(
                &format!("BasicAuthToOAuthConversion=true&{anchor}"),
                &basic(&no_role),
            ),
            "pod",
        )
        .await;
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = String::from_utf8_lossy(refused.body());
    assert!(
        body.contains("isn't assigned to any management roles"),
        "{body}"
    );
    assert!(
        !body.contains("contoso"),
        "Exchange's text does not name the tenant"
    );
    assert_eq!(sim.counters.role_refusals.load(Ordering::Relaxed), 1);
}
