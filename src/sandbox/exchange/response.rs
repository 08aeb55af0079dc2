//! The responses Exchange's front end makes up itself: role refusals, WS-Man faults, text, JSON.
//!
//! Separate because their exact shapes (empty 401s, Exchange's cryptic fault texts) are what the
//! proxy's diagnosis is tested against.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::Api;

pub(super) fn role_refusal(api: &Api, app_id: &str) -> Response<Bytes> {
    match api {
        Api::Rps => {
            let message = format!(
                "[AuthZRequestId={}][FailureCategory=AuthZ-CmdletAccessDeniedException] The application {app_id} isn't assigned to any management roles. Please check online documentation for assigning correct Directory Roles to Azure AD Application for EXO App-Only Authentication.",
                uuid::Uuid::new_v4()
            );
            exchange_fault(&message)
        }
        Api::Rest(_) => json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": {"code": "UnAuthorized", "message": format!(
                "The role assigned to application {app_id} isn't supported in this scenario. Please check online documentation for assigning correct Directory Roles to Azure AD Application for EXO App-Only Authentication."
            )}}),
        ),
    }
}

/// A WS-Man fault shaped as Exchange's front end sent it (HTTP 500).
fn exchange_fault(message: &str) -> Response<Bytes> {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        r#"<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action><a:MessageID>uuid:{}</a:MessageID></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>w:AccessDenied</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{escaped}</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="5" Machine="exchange.sandbox"><f:Message>{escaped}</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"#,
        uuid::Uuid::new_v4()
    );
    let mut rsp = Response::new(Bytes::from(body));
    *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/soap+xml;charset=UTF-8"),
    );
    rsp
}

pub(super) fn text(status: StatusCode, body: &str) -> Response<Bytes> {
    let mut rsp = Response::new(Bytes::from(body.to_owned()));
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    rsp
}

pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
    let mut rsp = Response::new(Bytes::from(value.to_string()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    rsp
}
