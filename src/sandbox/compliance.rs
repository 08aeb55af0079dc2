//! Simulated Security & Compliance (S&C) REST admin API, written from the reference
//! (scc-rest-adminapi.md), not from the bridge that calls it.
//!
//! - A **global** host answers the module's region lookup
//!   (`GET /AdminApi/v1.0/{tid}/EXOModuleFile`, §2) with a 302 whose `Location` is the
//!   tenant's **regional** host. Here each region is its own loopback listener, so the
//!   `Location` is `https://127.0.0.1:<port>/…` (not the documented
//!   `{region}.admin.protection.outlook.com`, which loopback cannot serve).
//! - A regional host serves `POST /adminapi/beta/{tid}/InvokeCommand` and the cmdlet list
//!   (`GET …/EXOModuleFile` with `CommandName: *`) for its own tenants only; another tenant
//!   gets a bare 404 (no error body), the sign that the pin is stale.
//! - Checks, in order (§1, §2, §6): a token signed by simulated Entra with `aud` = S&C's
//!   resource and `Exchange.ManageAsApp` (401 with a Bearer challenge naming `client_id`
//!   `00000007-…`), an S&C directory role in `wids` (403 "The role assigned to application …
//!   isn't supported in this scenario"; Exchange Administrator is not one), and the app-only
//!   anchor `UPN:SystemMailbox{bb558c35-…}@<organization>` (400).
//! - Its own data per tenant (retention policies and rules, DLP policies and rules, labels,
//!   label policies, compliance tags, role groups, cases), kept across `New-`/`Set-`/`Add-`.
//!   eDiscovery cmdlets fail as the service does without a search-only session (§5).
//!
//! Knobs for tests: [`ComplianceSim::fail_region`] (the region answers 421),
//! [`ComplianceSim::move_tenant`], [`ComplianceSim::check_protection_permission`] (S&C checks
//! the permission of the other resource, §8 question 1: every app-only call is a 401), and
//! counters of region lookups per region and InvokeCommand calls.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::claims::{COMPLIANCE_RESOURCE, COMPLIANCE_ROLES, MANAGE_AS_APP};
use super::data::CmdletError;
use super::exchange::SigningKeys;

/// The system mailbox app-only clients anchor on (§2 table, first row).
const SYSTEM_MAILBOX: &str = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}";

/// The eDiscovery cmdlets the service refuses without a search-only session (§1, §5).
const SEARCH_ONLY: &[&str] = &[
    "New-ComplianceSearch",
    "Start-ComplianceSearch",
    "New-ComplianceSearchAction",
    "Get-ComplianceSearchAction",
    "New-CaseHoldPolicy",
    "Set-CaseHoldPolicy",
];

/// A tenant as S&C hosts it.
#[derive(Debug, Clone)]
pub struct ComplianceTenant {
    /// Directory id.
    pub tenant_id: String,
    /// Organization domain.
    pub organization: String,
    /// Region label (`nam02b`, `eur02b`, …).
    pub region: String,
}

/// Which host a request reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// `ps.compliance.protection.outlook.com`.
    Global,
    /// `{region}.ps.compliance.protection.outlook.com`.
    Region(String),
}

/// Simulated S&C.
pub struct ComplianceSim {
    keys: SigningKeys,
    tenants: HashMap<String, ComplianceTenant>,
    regions: Mutex<HashMap<String, SocketAddr>>,
    /// Each tenant's current region (tests move tenants).
    placement: Mutex<HashMap<String, String>>,
    failing: Mutex<HashSet<String>>,
    lookups: Mutex<HashMap<String, u64>>,
    data: Mutex<HashMap<String, Map<String, Json>>>,
    /// S&C checks Microsoft Exchange Online Protection's `Exchange.ManageAsApp`, which the
    /// simulated app was never granted.
    protection_permission: AtomicBool,
    /// InvokeCommand requests answered.
    pub invocations: AtomicU64,
}

impl std::fmt::Debug for ComplianceSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComplianceSim")
            .field("tenants", &self.tenants.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    tid: String,
    appid: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    wids: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn json_response(status: StatusCode, body: &Json) -> Response<Bytes> {
    let mut rsp = Response::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;odata.metadata=minimal;charset=utf-8"),
    );
    rsp
}

fn empty(status: StatusCode) -> Response<Bytes> {
    let mut rsp = Response::new(Bytes::new());
    *rsp.status_mut() = status;
    rsp
}

fn cmdlet_error(status: StatusCode, e: &CmdletError) -> Response<Bytes> {
    json_response(status, &e.rest_body())
}

/// A tenant's starting data (§5's common nouns).
fn seed(organization: &str) -> Map<String, Json> {
    let obj = |name: &str, extra: Json| {
        let mut o = json!({
            "Name": name,
            "Identity": name,
            "Guid": uuid::Uuid::new_v4().to_string(),
            "DistinguishedName": format!("CN={name},OU={organization}"),
        });
        if let (Some(o), Json::Object(e)) = (o.as_object_mut(), extra) {
            o.extend(e);
        }
        o
    };
    let mut m = Map::new();
    m.insert(
        "RetentionCompliancePolicy".into(),
        json!([
            obj("Retain mail 7 years", json!({"Enabled": true, "Mode": "Enforce", "ExchangeLocation": ["All"], "Comment": ""})),
            obj("Teams chats 1 year", json!({"Enabled": true, "Mode": "Enforce", "TeamsChatLocation": ["All"], "Comment": ""})),
        ]),
    );
    m.insert(
        "RetentionComplianceRule".into(),
        json!([obj("Retain mail 7 years rule", json!({"Policy": "Retain mail 7 years", "RetentionDuration": "2555", "RetentionComplianceAction": "Keep"}))]),
    );
    m.insert(
        "DlpCompliancePolicy".into(),
        json!([obj(
            "U.S. Financial Data",
            json!({"Mode": "TestWithNotifications", "Enabled": true})
        )]),
    );
    m.insert(
        "DlpComplianceRule".into(),
        json!([obj(
            "Low volume of content detected",
            json!({"Policy": "U.S. Financial Data"})
        )]),
    );
    m.insert(
        "Label".into(),
        json!([
            obj("Public", json!({"DisplayName": "Public", "Priority": 0})),
            obj(
                "Confidential",
                json!({"DisplayName": "Confidential", "Priority": 1})
            ),
        ]),
    );
    m.insert(
        "LabelPolicy".into(),
        json!([obj(
            "Default label policy",
            json!({"Labels": ["Public", "Confidential"]})
        )]),
    );
    m.insert(
        "ComplianceTag".into(),
        json!([obj(
            "Financial record",
            json!({"RetentionDuration": "2555", "IsRecordLabel": true})
        )]),
    );
    m.insert(
        "RoleGroup".into(),
        json!([
            obj("ComplianceAdministrator", json!({"Members": []})),
            obj("eDiscoveryManager", json!({"Members": []})),
        ]),
    );
    m.insert(
        "ComplianceCase".into(),
        json!([obj(
            "Contoso litigation",
            json!({"CaseType": "eDiscovery", "Status": "Active"})
        )]),
    );
    m
}

impl ComplianceSim {
    /// A simulator trusting `keys` for `tenants`.
    pub fn new(keys: SigningKeys, tenants: Vec<ComplianceTenant>) -> Self {
        let data = tenants
            .iter()
            .map(|t| (t.tenant_id.clone(), seed(&t.organization)))
            .collect();
        let placement = tenants
            .iter()
            .map(|t| (t.tenant_id.clone(), t.region.clone()))
            .collect();
        Self {
            keys,
            placement: Mutex::new(placement),
            tenants: tenants
                .into_iter()
                .map(|t| (t.tenant_id.clone(), t))
                .collect(),
            regions: Mutex::new(HashMap::new()),
            failing: Mutex::new(HashSet::new()),
            lookups: Mutex::new(HashMap::new()),
            data: Mutex::new(data),
            protection_permission: AtomicBool::new(false),
            invocations: AtomicU64::new(0),
        }
    }

    /// The regions the tenants live in (one listener each).
    pub fn region_names(&self) -> Vec<String> {
        let mut r: Vec<String> = self.tenants.values().map(|t| t.region.clone()).collect();
        r.sort();
        r.dedup();
        r
    }

    /// Records where `region` listens (the 302's `Location`).
    pub fn set_region_addr(&self, region: &str, addr: SocketAddr) {
        lock(&self.regions).insert(region.to_owned(), addr);
    }

    /// Region lookups the global host answered for `region`.
    pub fn lookups(&self, region: &str) -> u64 {
        lock(&self.lookups).get(region).copied().unwrap_or(0)
    }

    /// Makes `region` answer 421 (or recover with `false`).
    pub fn fail_region(&self, region: &str, failing: bool) {
        if failing {
            lock(&self.failing).insert(region.to_owned());
        } else {
            lock(&self.failing).remove(region);
        }
    }

    /// Moves `tenant_id` to `region`: the old region answers a bare 404 for it, and the next
    /// lookup redirects to the new one.
    pub fn move_tenant(&self, tenant_id: &str, region: &str) {
        lock(&self.placement).insert(tenant_id.to_owned(), region.to_owned());
    }

    /// Which permission S&C checks app-only is an open question (§1 lists conflicting
    /// sources, §8 question 1). With `true`, S&C behaves as the answer "Microsoft Exchange
    /// Online Protection (`00000007-…`) → `Exchange.ManageAsApp`", which the simulated app
    /// (consented only to the permission in its token's `roles`) does not hold: every
    /// app-only request is refused with a 401 whose challenge names `client_id`
    /// `00000007-…` (§6), however fresh the token.
    pub fn check_protection_permission(&self, on: bool) {
        self.protection_permission.store(on, Ordering::SeqCst);
    }

    fn region_of(&self, tenant_id: &str) -> String {
        lock(&self.placement)
            .get(tenant_id)
            .cloned()
            .unwrap_or_default()
    }

    fn authorize(
        &self,
        request: &Request<Bytes>,
    ) -> Result<(Claims, &ComplianceTenant), Response<Bytes>> {
        let challenge = |why: &str| {
            let mut rsp = json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"error": {"code": "Unauthorized", "message": why}}),
            );
            rsp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize, client_id=00000007-0000-0ff1-ce00-000000000000",
                ),
            );
            rsp
        };
        let token = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| challenge("no bearer token"))?;
        // §6: an unparseable token is a 500 without a challenge.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| empty(StatusCode::INTERNAL_SERVER_ERROR))?;
        let key = self
            .keys
            .find(header.kid.as_deref())
            .ok_or_else(|| challenge("unknown signing key"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[COMPLIANCE_RESOURCE]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.leeway = 30;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    challenge("The audience claim value is invalid for current resource.")
                }
                _ => challenge("the token signature or claims are invalid"),
            })?
            .claims;
        let tenant = self
            .tenants
            .get(&claims.tid)
            .ok_or_else(|| challenge("the tenant is not hosted here"))?;
        if !claims.roles.iter().any(|r| r == MANAGE_AS_APP)
            || self.protection_permission.load(Ordering::SeqCst)
        {
            return Err(challenge("UnAuthorized"));
        }
        Ok((claims, tenant))
    }

    /// Handles one request that reached `host`.
    pub async fn handle(&self, host: &Host, request: Request<Bytes>) -> Response<Bytes> {
        let path = request.uri().path().to_owned();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (api, tid, op) = match segs.as_slice() {
            [a, v, tid, op] if a.eq_ignore_ascii_case("adminapi") && !v.is_empty() => (
                (*v).to_ascii_lowercase(),
                (*tid).to_owned(),
                (*op).to_owned(),
            ),
            _ => return empty(StatusCode::NOT_FOUND),
        };
        let (claims, tenant) = match self.authorize(&request) {
            Ok(x) => x,
            Err(rsp) => return rsp,
        };
        if tid != tenant.tenant_id && !tid.eq_ignore_ascii_case(&tenant.organization) {
            return cmdlet_error(
                StatusCode::BAD_REQUEST,
                &CmdletError::new(
                    "System.ArgumentException",
                    "The tenant in the URL does not match the token.",
                ),
            );
        }
        let region = match host {
            Host::Global => {
                if request.method() == Method::GET && op.eq_ignore_ascii_case("EXOModuleFile") {
                    let home = self.region_of(&tenant.tenant_id);
                    *lock(&self.lookups).entry(home.clone()).or_default() += 1;
                    let Some(addr) = lock(&self.regions).get(&home).copied() else {
                        return empty(StatusCode::SERVICE_UNAVAILABLE);
                    };
                    let mut rsp = empty(StatusCode::FOUND);
                    let location = format!("https://{addr}{path}?Version=3.9.2");
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        rsp.headers_mut().insert(http::header::LOCATION, v);
                    }
                    return rsp;
                }
                // The global host runs nothing itself: the region does.
                return empty(StatusCode::NOT_FOUND);
            }
            Host::Region(r) => r,
        };
        if lock(&self.failing).contains(region) {
            return empty(StatusCode::MISDIRECTED_REQUEST);
        }
        if &self.region_of(&tenant.tenant_id) != region {
            return empty(StatusCode::NOT_FOUND);
        }
        let has_role = claims
            .wids
            .iter()
            .any(|w| COMPLIANCE_ROLES.contains(&w.as_str()));
        if !has_role {
            let app = claims.appid.clone().unwrap_or_default();
            return cmdlet_error(
                StatusCode::FORBIDDEN,
                &CmdletError::new(
                    "Microsoft.Exchange.Management.Tasks.ManagementRoleNotFoundException",
                    format!(
                        "The role assigned to application {app} isn't supported in this scenario. Please check online documentation for assigning correct Directory Roles to Azure AD Application for EXO App-Only Authentication."
                    ),
                ),
            );
        }
        let anchor = request
            .headers()
            .get("X-AnchorMailbox")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let want = format!("UPN:{SYSTEM_MAILBOX}@{}", tenant.organization);
        if !anchor.eq_ignore_ascii_case(&want) {
            return cmdlet_error(
                StatusCode::BAD_REQUEST,
                &CmdletError::new(
                    "System.ArgumentException",
                    format!(
                        "X-AnchorMailbox {anchor:?} does not resolve to a mailbox of this organization."
                    ),
                ),
            );
        }
        match (request.method(), op.as_str()) {
            (&Method::GET, o) if o.eq_ignore_ascii_case("EXOModuleFile") => {
                let names = "Get-RetentionCompliancePolicy,New-RetentionCompliancePolicy,Set-RetentionCompliancePolicy,\
                    Remove-RetentionCompliancePolicy,Get-RetentionComplianceRule,New-RetentionComplianceRule,\
                    Get-DlpCompliancePolicy,Get-DlpComplianceRule,Get-Label,Get-LabelPolicy,Get-ComplianceTag,\
                    Get-RoleGroup,Get-RoleGroupMember,Add-RoleGroupMember,Get-ComplianceCase,Get-ComplianceSearch,\
                    New-ComplianceSearch,Start-ComplianceSearch,Get-ProtectionAlert";
                json_response(
                    StatusCode::OK,
                    &json!({"value": [{"exportedCmdlets": names}]}),
                )
            }
            (&Method::POST, o) if o.eq_ignore_ascii_case("InvokeCommand") && api == "beta" => {
                self.invocations.fetch_add(1, Ordering::Relaxed);
                self.invoke(&tenant.tenant_id, request.body())
            }
            (&Method::POST, o) if o.eq_ignore_ascii_case("InvokeCommand") => {
                empty(StatusCode::METHOD_NOT_ALLOWED)
            }
            _ => empty(StatusCode::NOT_FOUND),
        }
    }

    fn invoke(&self, tid: &str, body: &[u8]) -> Response<Bytes> {
        let bad = |m: &str| {
            cmdlet_error(
                StatusCode::BAD_REQUEST,
                &CmdletError::new("System.ArgumentException", m.to_owned()),
            )
        };
        let Ok(body) = serde_json::from_slice::<Json>(body) else {
            return bad("The request body is not JSON.");
        };
        let input = &body["CmdletInput"];
        let Some(cmdlet) = input["CmdletName"].as_str() else {
            return bad("CmdletInput.CmdletName is missing.");
        };
        let params = input["Parameters"].as_object().cloned().unwrap_or_default();
        let param = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        if SEARCH_ONLY.iter().any(|c| c.eq_ignore_ascii_case(cmdlet)) {
            return cmdlet_error(
                StatusCode::BAD_REQUEST,
                &CmdletError::new(
                    "Microsoft.Exchange.Management.ComplianceSearch.SearchOnlySessionRequiredException",
                    "Please close the current PowerShell session and open a new session using Connect-IPPSSession with the -EnableSearchOnlySession flag.",
                ),
            );
        }
        let Some((verb, noun)) = cmdlet.split_once('-') else {
            return bad("not a cmdlet name");
        };
        let (noun, member) = match noun {
            n if n.eq_ignore_ascii_case("RoleGroupMember") => ("RoleGroup".to_owned(), true),
            n => (n.to_owned(), false),
        };
        let mut data = lock(&self.data);
        let Some(tenant) = data.get_mut(tid) else {
            return empty(StatusCode::NOT_FOUND);
        };
        let Some(key) = tenant
            .keys()
            .find(|k| k.eq_ignore_ascii_case(&noun))
            .cloned()
        else {
            return cmdlet_error(
                StatusCode::BAD_REQUEST,
                &CmdletError::new(
                    "System.Management.Automation.CommandNotFoundException",
                    format!("The term '{cmdlet}' is not recognized as a name of a cmdlet."),
                ),
            );
        };
        let Some(list) = tenant.get_mut(&key).and_then(Json::as_array_mut) else {
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let identity = param("Identity").and_then(|v| v.as_str().map(str::to_owned));
        let find = |list: &Vec<Json>, id: &str| {
            list.iter().position(|o| {
                ["Identity", "Name", "Guid"]
                    .iter()
                    .any(|k| o[*k].as_str().is_some_and(|v| v.eq_ignore_ascii_case(id)))
            })
        };
        let not_found = |id: &str| {
            cmdlet_error(
                StatusCode::NOT_FOUND,
                &CmdletError::not_found(id, "simulated Security & Compliance"),
            )
        };
        let ok = |value: Vec<Json>| json_response(StatusCode::OK, &json!({ "value": value }));
        match verb.to_ascii_lowercase().as_str() {
            "get" => match identity {
                Some(id) => match find(list, &id) {
                    Some(i) if member => ok(list[i]["Members"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|m| json!({"Name": m, "Identity": m}))
                        .collect()),
                    Some(i) => ok(vec![list[i].clone()]),
                    None => not_found(&id),
                },
                None => ok(list.clone()),
            },
            "new" => {
                let Some(name) = param("Name").and_then(|v| v.as_str().map(str::to_owned)) else {
                    return bad("The Name parameter is required.");
                };
                if find(list, &name).is_some() {
                    return cmdlet_error(
                        StatusCode::BAD_REQUEST,
                        &CmdletError::new(
                            "Microsoft.Office.CompliancePolicy.Tasks.ErrorCompliancePolicyAlreadyExistsException",
                            format!("A policy with name \"{name}\" already exists."),
                        ),
                    );
                }
                let mut o = json!({
                    "Name": name, "Identity": name, "Guid": uuid::Uuid::new_v4().to_string(),
                    "Enabled": true, "Mode": "Enforce",
                });
                if let Some(obj) = o.as_object_mut() {
                    for (k, v) in &params {
                        obj.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                list.push(o.clone());
                ok(vec![o])
            }
            "set" | "add" | "remove" => {
                let Some(id) = identity else {
                    return bad("The Identity parameter is required.");
                };
                let Some(i) = find(list, &id) else {
                    return not_found(&id);
                };
                match verb.to_ascii_lowercase().as_str() {
                    "remove" if !member => {
                        list.remove(i);
                    }
                    "add" if member => {
                        if let Some(m) = param("Member")
                            && let Some(members) = list[i]["Members"].as_array_mut()
                        {
                            members.push(m);
                        }
                    }
                    _ => {
                        if let Some(obj) = list[i].as_object_mut() {
                            for (k, v) in &params {
                                if !k.eq_ignore_ascii_case("Identity") {
                                    obj.insert(k.clone(), v.clone());
                                }
                            }
                        }
                    }
                }
                ok(Vec::new())
            }
            _ => bad("unsupported verb"),
        }
    }
}

/// Serves `host` of `sim` over TLS on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    sim: std::sync::Arc<ComplianceSim>,
    host: Host,
    stop: tokio_util::sync::CancellationToken,
) {
    use http_body_util::{BodyExt, Full};
    use std::time::Duration;
    const MAX_BODY: usize = 2 * 1024 * 1024;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue }
            },
            () = stop.cancelled() => break,
        };
        let (acceptor, sim, host, stop) =
            (acceptor.clone(), sim.clone(), host.clone(), stop.clone());
        tasks.spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (sim, host) = (sim.clone(), host.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let rsp = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
                        Ok(body) => {
                            sim.handle(&host, Request::from_parts(parts, body.to_bytes()))
                                .await
                        }
                        Err(_) => empty(StatusCode::PAYLOAD_TOO_LARGE),
                    };
                    Ok::<_, std::convert::Infallible>(rsp.map(Full::new))
                }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .keep_alive(true);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
            }
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
}
