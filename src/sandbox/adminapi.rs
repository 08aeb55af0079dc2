//! The simulated Exchange Online REST admin API: `InvokeCommand` and `EXOModuleFile`.
//!
//! `sandbox/exchange/` verifies the Bearer token (as for RPS) and calls [`handle`] with the
//! app it established; this module answers as the live service does (reference
//! exo-rest-adminapi.md §6–§10): OData JSON with per-property annotations, paging through
//! `@odata.nextLink` (absolute URL, same body re-POSTed) honouring
//! `Prefer: odata.maxpagesize`, `@adminapi.warnings` with the last page, OData error bodies
//! with `details[0].message` = `ErrorId|Class|Message`, and `request-id` /
//! `X-CalculatedBETarget` headers. All cmdlets run on the same tenant data as the simulated
//! RPS endpoint (`data/`).
//!
//! Everything here is the simulator's own reading of the reference (cmdlet list, error bodies,
//! paging, JSON encoding in `data/`); it shares no code with the bridge that calls it.
//!
//! Test knobs live in [`ExchangeData::knobs`](super::data::Knobs): 429 with `Retry-After`,
//! 503, 401, latency (all requests, or follow-up pages only); counters in
//! [`ExchangeData::stats`](super::data::Stats) (requests, follow-up pages, last request).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{Map, Value as Json};

use super::AppIdentity;
use super::data::{CmdletError, ExchangeData, catalog};

/// Largest page the service returns.
pub const MAX_PAGE: usize = 1000;

/// Counts a request whose client went away while the simulator was still holding it (its
/// handler future was dropped); forgotten once the wait is over.
struct Unanswered<'a>(&'a super::data::Stats);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        self.0.count(&self.0.abandoned_requests);
    }
}

fn take(counter: &std::sync::atomic::AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn json_response(
    status: StatusCode,
    body: &Json,
    request_id: &str,
    server: &str,
) -> Response<Bytes> {
    let mut rsp = Response::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default()));
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
        ),
    );
    h.insert("OData-Version", HeaderValue::from_static("4.0"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(server) {
        h.insert("X-CalculatedBETarget", v);
    }
    rsp
}

fn error_response(
    status: StatusCode,
    e: &CmdletError,
    request_id: &str,
    server: &str,
) -> Response<Bytes> {
    let mut rsp = json_response(status, &e.rest_body(), request_id, server);
    if let Ok(v) = HeaderValue::from_str(e.short_name()) {
        rsp.headers_mut().insert("x-ExceptionType", v);
    }
    rsp
}

fn page_size(request: &Request<Bytes>) -> usize {
    request
        .headers()
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .next()
        .unwrap_or(MAX_PAGE)
        .clamp(1, MAX_PAGE)
}

fn skip_token(request: &Request<Bytes>) -> usize {
    request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "$skiptoken" || *k == "%24skiptoken")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn host(request: &Request<Bytes>) -> String {
    request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "outlook.office365.com".into())
}

/// The admin API as simulated Exchange's handler (`sandbox::exchange::AdminApi`).
pub fn service(data: std::sync::Arc<ExchangeData>) -> super::exchange::AdminApi {
    std::sync::Arc::new(
        move |app: AppIdentity, tenant: String, request: Request<Bytes>| {
            let data = data.clone();
            Box::pin(async move { handle(&data, &app, &tenant, request).await })
        },
    )
}

/// Answers one admin API request for `app` (already authenticated by the caller).
/// `tenant_in_path` is the `{tenant}` URL segment. Never panics on client input.
pub async fn handle(
    data: &ExchangeData,
    app: &AppIdentity,
    tenant_in_path: &str,
    request: Request<Bytes>,
) -> Response<Bytes> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let tenant = data.tenant(&app.tenant_id, &app.organization);
    let server = tenant.server.clone();
    if !tenant_in_path.eq_ignore_ascii_case(&app.tenant_id)
        && !tenant_in_path.eq_ignore_ascii_case(&app.organization)
    {
        let e = CmdletError::new(
            "Microsoft.Exchange.Security.Authorization.UnauthorizedAccessException",
            format!(
                "The tenant in the URL ({tenant_in_path}) is not the tenant of the access token ({}).",
                app.tenant_id
            ),
        );
        return error_response(StatusCode::FORBIDDEN, &e, &request_id, &server);
    }
    let path = request.uri().path().to_ascii_lowercase();
    if path.ends_with("/exomodulefile") && request.method() == Method::GET {
        data.stats.count(&data.stats.module_file_requests);
        let names = data
            .knobs
            .exported_cmdlets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let names = names.unwrap_or_else(|| {
            catalog::cmdlets()
                .iter()
                .map(|c| c.name.to_owned())
                .collect()
        });
        let body = serde_json::json!({ "value": [{ "exportedCmdlets": names.join(",") }] });
        return json_response(StatusCode::OK, &body, &request_id, &server);
    }
    if !path.ends_with("/invokecommand") {
        let e = CmdletError::new(
            "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
            format!(
                "The simulated admin API has no resource at {}.",
                request.uri().path()
            ),
        );
        return error_response(StatusCode::NOT_FOUND, &e, &request_id, &server);
    }
    if request.method() != Method::POST {
        let e = CmdletError::new(
            "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
            "InvokeCommand accepts only POST.".to_owned(),
        );
        return error_response(StatusCode::METHOD_NOT_ALLOWED, &e, &request_id, &server);
    }
    data.stats.count(&data.stats.invoke_requests);
    let skip = skip_token(&request);
    if skip > 0 {
        data.stats.count(&data.stats.page_requests);
    }
    let latency = data.knobs.latency_ms.load(Ordering::SeqCst)
        + if skip > 0 {
            data.knobs.page_latency_ms.load(Ordering::SeqCst)
        } else {
            0
        };
    if latency > 0 {
        let waiting = Unanswered(&data.stats);
        tokio::time::sleep(Duration::from_millis(latency)).await;
        std::mem::forget(waiting);
    }
    if skip > 0 {
        data.stats.count(&data.stats.pages_answered);
    }
    if take(&data.knobs.unauthorized_next) {
        let mut rsp = Response::new(Bytes::new());
        *rsp.status_mut() = StatusCode::UNAUTHORIZED;
        rsp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer error=\"invalid_token\", error_description=\"The token has expired\"",
            ),
        );
        return rsp;
    }
    if take(&data.knobs.throttle_next) {
        let secs = data.knobs.retry_after_secs.load(Ordering::SeqCst);
        let e = CmdletError::new(
            "Microsoft.Exchange.Admin.OData.Core.ThrottlingException",
            "You have reached the maximum number of concurrent requests per tenant. Please wait and try again"
                .to_owned(),
        );
        let mut rsp = error_response(StatusCode::TOO_MANY_REQUESTS, &e, &request_id, &server);
        rsp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        return rsp;
    }
    if take(&data.knobs.unavailable_next) {
        let e = CmdletError::new(
            "Microsoft.Exchange.Admin.OData.Core.ServiceUnavailableException",
            "The service is temporarily unavailable.".to_owned(),
        );
        return error_response(StatusCode::SERVICE_UNAVAILABLE, &e, &request_id, &server);
    }
    let body: Json = match serde_json::from_slice(request.body()) {
        Ok(b) => b,
        Err(err) => {
            let e = CmdletError::new(
                "Microsoft.Exchange.AdminApi.CommandInvocation.InvalidRequestException",
                format!("The request body is not JSON: {err}"),
            );
            return error_response(StatusCode::BAD_REQUEST, &e, &request_id, &server);
        }
    };
    {
        let headers = request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        *data
            .stats
            .last_request
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((headers, body.clone()));
        let mut bodies = data.stats.bodies.lock().unwrap_or_else(|e| e.into_inner());
        if bodies.len() >= 1000 {
            bodies.remove(0);
        }
        bodies.push(body.clone());
    }
    let input = body.get("CmdletInput");
    let Some(cmdlet) = input
        .and_then(|i| i.get("CmdletName"))
        .and_then(Json::as_str)
    else {
        let e = CmdletError::new(
            "Microsoft.Exchange.AdminApi.CommandInvocation.InvalidRequestException",
            "The request body must be {\"CmdletInput\":{\"CmdletName\":\"…\",\"Parameters\":{…}}}."
                .to_owned(),
        );
        return error_response(StatusCode::BAD_REQUEST, &e, &request_id, &server);
    };
    let params: Map<String, Json> = match input.and_then(|i| i.get("Parameters")) {
        Some(Json::Object(m)) => m.clone(),
        None | Some(Json::Null) => Map::new(),
        Some(_) => {
            let e = CmdletError::new(
                "Microsoft.Exchange.AdminApi.CommandInvocation.InvalidRequestException",
                "CmdletInput.Parameters must be an object.".to_owned(),
            );
            return error_response(StatusCode::BAD_REQUEST, &e, &request_id, &server);
        }
    };
    if skip > 0 && !cmdlet.to_ascii_lowercase().starts_with("get-") {
        let e = CmdletError::new(
            "Microsoft.Exchange.AdminApi.CommandInvocation.InvalidRequestException",
            format!("{cmdlet} returns no further pages."),
        );
        return error_response(StatusCode::BAD_REQUEST, &e, &request_id, &server);
    }
    let outcome = match tenant.invoke(cmdlet, &params) {
        Ok(o) => o,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e, &request_id, &server),
    };
    let size = page_size(&request);
    let end = (skip + size).min(outcome.items.len());
    let page: Vec<Json> = outcome
        .items
        .get(skip..end)
        .unwrap_or_default()
        .iter()
        .map(|i| Json::Object(tenant.object(i).to_json()))
        .collect();
    let host = host(&request);
    let path = request.uri().path();
    let mut envelope = serde_json::json!({
        "@odata.context": format!("https://{host}/adminapi/beta/{tenant_in_path}/$metadata#Collection(Exchange.GenericHashTable)"),
        "adminapi.warnings@odata.type": "#Collection(String)",
        "@adminapi.warnings": if end >= outcome.items.len() { outcome.warnings.clone() } else { Vec::new() },
        "value": page,
    });
    if end < outcome.items.len() {
        envelope["@odata.nextLink"] = Json::from(format!("https://{host}{path}?$skiptoken={end}"));
    }
    json_response(StatusCode::OK, &envelope, &request_id, &server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppIdentity {
        AppIdentity {
            tenant_id: "t1".into(),
            app_id: "a1".into(),
            organization: "contoso.onmicrosoft.com".into(),
        }
    }

    fn req(uri: &str, body: Json, prefer: Option<&str>) -> Request<Bytes> {
        let mut b = Request::builder()
            .method("POST")
            .uri(uri)
            .header("host", "127.0.0.1:1");
        if let Some(p) = prefer {
            b = b.header("prefer", p);
        }
        b.body(Bytes::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    fn json(rsp: &Response<Bytes>) -> Json {
        serde_json::from_slice(rsp.body()).unwrap()
    }

    #[tokio::test]
    async fn pages_with_next_link_and_warnings_on_the_last_page() {
        let data = ExchangeData::new(25);
        let body = serde_json::json!({"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": {"ResultSize": 20}}});
        let rsp = handle(
            &data,
            &app(),
            "t1",
            req(
                "/adminapi/beta/t1/InvokeCommand",
                body.clone(),
                Some("odata.maxpagesize=8"),
            ),
        )
        .await;
        assert_eq!(rsp.status(), 200);
        let j = json(&rsp);
        assert_eq!(j["value"].as_array().unwrap().len(), 8);
        let next = j["@odata.nextLink"].as_str().unwrap();
        assert_eq!(
            next,
            "https://127.0.0.1:1/adminapi/beta/t1/InvokeCommand?$skiptoken=8"
        );
        let rsp = handle(
            &data,
            &app(),
            "t1",
            req(
                "/adminapi/beta/t1/InvokeCommand?$skiptoken=16",
                body,
                Some("odata.maxpagesize=8"),
            ),
        )
        .await;
        let j = json(&rsp);
        assert_eq!(j["value"].as_array().unwrap().len(), 4);
        assert!(j.get("@odata.nextLink").is_none());
        assert_eq!(data.stats.page_requests.load(Ordering::SeqCst), 1);
        assert_eq!(data.stats.invoke_requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn errors_throttling_and_tenant_mismatch() {
        let data = ExchangeData::new(3);
        let body = serde_json::json!({"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": {"Identity": "nobody"}}});
        let rsp = handle(
            &data,
            &app(),
            "t1",
            req("/adminapi/beta/t1/InvokeCommand", body.clone(), None),
        )
        .await;
        assert_eq!(rsp.status(), 400);
        assert_eq!(
            rsp.headers()["x-ExceptionType"],
            "ManagementObjectNotFoundException"
        );
        let msg = json(&rsp)["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(msg.contains("|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|The operation couldn't be performed because object 'nobody'"), "{msg}");
        data.knobs.throttle_next.store(1, Ordering::SeqCst);
        data.knobs.retry_after_secs.store(3, Ordering::SeqCst);
        let rsp = handle(
            &data,
            &app(),
            "t1",
            req("/adminapi/beta/t1/InvokeCommand", body.clone(), None),
        )
        .await;
        assert_eq!(rsp.status(), 429);
        assert_eq!(rsp.headers()["retry-after"], "3");
        let rsp = handle(
            &data,
            &app(),
            "other",
            req("/adminapi/beta/other/InvokeCommand", body.clone(), None),
        )
        .await;
        assert_eq!(rsp.status(), 403);
        let bad = Request::builder()
            .method("POST")
            .uri("/adminapi/beta/t1/InvokeCommand")
            .body(Bytes::from_static(b"{nope"))
            .unwrap();
        assert_eq!(handle(&data, &app(), "t1", bad).await.status(), 400);
    }

    #[tokio::test]
    async fn module_file_lists_cmdlets() {
        let data = ExchangeData::new(1);
        let r = Request::builder()
            .method("GET")
            .uri("/adminapi/v1.0/t1/EXOModuleFile?Version=3.9.2")
            .body(Bytes::new())
            .unwrap();
        let j = json(&handle(&data, &app(), "t1", r).await);
        assert!(
            j["value"][0]["exportedCmdlets"]
                .as_str()
                .unwrap()
                .split(',')
                .any(|c| c == "Get-Mailbox")
        );
    }
}
