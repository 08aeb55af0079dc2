//! Every response the proxy makes up itself, and the one function that turns errors into them.
//!
//! A WinRM client shows the text of a WS-Man fault and little else, so every failure the proxy
//! produces for a WS-Man request is a SOAP fault (HTTP 500, built by
//! [`remoting::wsman::fault_response`](crate::remoting::wsman::fault_response)) whose text says
//! what happened and what to do (DESIGN.md §4). The exception is bad local credentials: those
//! get `401` with `WWW-Authenticate: Basic realm="exo-authproxy"`, which is what makes a WinRM
//! client report "Access is denied" and ask again. Every invented response carries
//! `X-Exo-Authproxy-Error: <code>` so it is never mistaken for Exchange's answer.
//!
//! Handlers return `Result<Response<Body>, ProxyError>`; [`respond`] at the service edge is the
//! only place a [`ProxyError`] becomes bytes on the wire.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::config::TenantName;
use crate::remoting::wsman::{self, Fault, SoapCode as FaultCode};
use crate::token::TokenError;
use crate::token::claims::{self, RoleRefusal};

/// The boxed error type of streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the listener sends: relayed (streamed) or invented (full).
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Marks a response as the proxy's own, with a stable machine-readable code.
pub const PROXY_ERROR: HeaderName = HeaderName::from_static("x-exo-authproxy-error");

/// The content type of plain-text answers.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The Basic challenge the proxy sends (WinRM clients answer it with the credential).
pub const BASIC_CHALLENGE: &str = r#"Basic realm="exo-authproxy""#;

/// WSManFault code for "access denied" (0x80070005 as WinRM reports it).
const WSMAN_ACCESS_DENIED: u32 = 5;
/// WSManFault code ERROR_WSMAN_INTERNAL_ERROR-like (0x803381B0 is not documented; use the
/// generic 0x8033805F "the WS-Management service cannot process the request").
const WSMAN_CANNOT_PROCESS: u32 = 2_150_858_847;
/// WSManFault code for an operation that timed out (0x80338029).
const WSMAN_TIMED_OUT: u32 = 2_150_858_793;

/// A body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A plain-text response (the `Shape::Plain` errors, and the admin listener's answers).
pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut rsp = Response::new(full(body));
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    rsp
}

/// The stable code of a response the proxy made up, kept on the response so the listener
/// counts `requests_total` by it without parsing headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Invented(&'static str);

/// Marks `rsp`, which the proxy made up but did not build here (`rest` mode: the remoting
/// endpoint's WS-Man faults for a quota, an unknown shell, bad data …), as the proxy's own:
/// `X-Exo-Authproxy-Error: <code>`, and the code for the metrics.
pub fn mark_invented(rsp: &mut Response<Body>, code: &'static str) {
    rsp.headers_mut()
        .insert(PROXY_ERROR, HeaderValue::from_static(code));
    rsp.extensions_mut().insert(Invented(code));
}

/// The `X-Exo-Authproxy-Error` code of a response the proxy made up; None for a relayed or
/// successful one.
pub fn invented_code<B>(rsp: &Response<B>) -> Option<&'static str> {
    rsp.extensions().get::<Invented>().map(|i| i.0)
}

/// Everything the proxy itself can answer instead of relaying Exchange.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No `Authorization` header.
    #[error(
        "this proxy needs Basic credentials: connect with -Authentication Basic -Credential <local user>"
    )]
    MissingCredentials,
    /// An `Authorization` header that is not `Basic base64(user:password)`.
    #[error("the Authorization header is not Basic base64(user:password): {reason}")]
    MalformedCredentials {
        /// What was wrong with it (never the value).
        reason: &'static str,
    },
    /// Unknown user or wrong password (the client is not told which).
    #[error(
        "wrong user name or password for exo-authproxy (the local [[user]] credentials, not the Microsoft 365 ones)"
    )]
    BadCredentials,
    /// Too many failed (or still unchecked) logins from one address.
    #[error(
        "too many failed logins from {client} (a check still running counts until it succeeds): wait {retry_after:?} and check the local [[user]] password; if many different users log in from this host at once, stagger their first logins"
    )]
    Throttled {
        /// Where the attempts came from.
        client: IpAddr,
        /// How long until attempts are verified again.
        retry_after: Duration,
    },
    /// Too many logins are waiting for a password check (every address at once).
    #[error(
        "exo-authproxy is checking too many logins at once ({queued} waiting): retry in {retry_after:?}; scripts already connected are not affected"
    )]
    LoginBusy {
        /// The queue bound.
        queued: usize,
        /// A short wait.
        retry_after: Duration,
    },
    /// `DelegatedOrg` names a tenant the user may not use (or that is not configured).
    #[error(
        "user {user} may not use tenant {requested:?} (DelegatedOrg in the connection URI): allowed are {allowed}; add it to [[user]] tenants in the proxy config or fix the DelegatedOrg value"
    )]
    TenantNotAllowed {
        /// Local user.
        user: String,
        /// The DelegatedOrg value as sent.
        requested: String,
        /// The user's tenants, organization domains.
        allowed: String,
    },
    /// A path this proxy does not serve.
    #[error(
        "exo-authproxy serves WS-Man at /powershell-liveid, not {path:?}: use -ConnectionUri https://<proxy>/powershell-liveid/"
    )]
    UnknownPath {
        /// The request path.
        path: String,
    },
    /// `/compliance/powershell-liveid/` in `winrm` mode: there is no RPS to pass through.
    #[error(
        "Security & Compliance retired Remote PowerShell (October 2023), so winrm mode cannot pass /compliance/powershell-liveid/ through: set [exchange] mode = \"rest\" in the proxy's config so the proxy runs the session over the REST admin API (the script stays unchanged)"
    )]
    ComplianceNeedsRest,
    /// Not a POST.
    #[error(
        "exo-authproxy expects WS-Man POST requests, not {method}: point a PowerShell remoting client (New-PSSession -ConnectionUri https://<proxy>/powershell-liveid/) at it"
    )]
    MethodNotAllowed {
        /// The request method.
        method: String,
    },
    /// The request body exceeds the envelope cap.
    #[error(
        "request body larger than {limit} bytes: lower MaxEnvelopeSize / the client's envelope size"
    )]
    RequestTooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The client's body could not be read (cut off, or malformed framing).
    #[error("could not read the request body from the client: {reason}")]
    ClientBody {
        /// What happened.
        reason: String,
    },
    /// The client stopped sending its body.
    #[error(
        "the request body did not arrive within {after:?} of the headers: the client or the network path stalled"
    )]
    ClientBodyTimeout {
        /// The bound.
        after: Duration,
    },
    /// A WS-Man POST whose Content-Type is not `application/soap+xml`.
    #[error(
        "WS-Man requests must be sent with Content-Type: application/soap+xml, not {content_type:?}"
    )]
    UnsupportedContentType {
        /// The Content-Type as sent (at most 100 characters), or "none".
        content_type: String,
    },
    /// The request line (method and URL) is longer than the proxy accepts.
    #[error(
        "request line longer than {limit} bytes: shorten the URL (the connection URI and its query)"
    )]
    RequestLineTooLong {
        /// The bound.
        limit: usize,
    },
    /// The request's header section is larger than the proxy accepts.
    #[error(
        "request header section larger than {limit} bytes: a header (often Authorization) is far longer than any client sends"
    )]
    HeadTooLarge {
        /// The bound.
        limit: usize,
    },
    /// The request has more header fields than the proxy accepts.
    #[error("more than {limit} header fields in one request")]
    TooManyHeaders {
        /// The bound.
        limit: usize,
    },
    /// A request head that is not HTTP/1.1 syntax.
    #[error("malformed HTTP request: {reason}")]
    MalformedHead {
        /// What is wrong (never the bytes).
        reason: &'static str,
    },
    /// Plain HTTP on the TLS port.
    #[error(
        "exo-authproxy listens with TLS: use https:// in -ConnectionUri (and -UseSSL is implied by https)"
    )]
    PlaintextOnTlsPort,
    /// The token engine could not provide a token.
    #[error("no Exchange access token for tenant {tenant}: {source}")]
    Token {
        /// Local tenant.
        tenant: TenantName,
        /// Why (boxed: it is large and rare).
        #[source]
        source: Box<TokenError>,
    },
    /// The token's claims show the endpoint (Exchange, or S&C for its audience) will refuse it.
    #[error(
        "tenant {tenant}: the app's token cannot be used with {}: {reason}",
        claims::endpoint_name(*endpoint)
    )]
    TokenUnusable {
        /// Local tenant.
        tenant: TenantName,
        /// The token engine's diagnosis, with the fix.
        reason: String,
        /// The endpoint the client opened (its token's audience).
        endpoint: crate::token::Audience,
    },
    /// Exchange refused an app without a supported directory role (the text is
    /// [`RoleRefusal`]'s, shared with `rest` mode's error record).
    #[error(transparent)]
    DirectoryRoleMissing(#[from] RoleRefusal),
    /// `require_directory_role = true` and the token has no directory role the endpoint
    /// accepts (judged per endpoint: S&C accepts other roles than Exchange).
    #[error(
        "tenant {tenant}: refused before contacting {} (require_directory_role = true): the token of app {app_id} carries {}; {}",
        claims::endpoint_name(*endpoint),
        claims::role_lack(*endpoint),
        claims::role_fix(*endpoint, &format!("{tenant} ({organization})"))
    )]
    DirectoryRoleRequired {
        /// Local tenant.
        tenant: TenantName,
        /// Organization domain.
        organization: String,
        /// The app's client id.
        app_id: String,
        /// The endpoint the client opened.
        endpoint: crate::token::Audience,
    },
    /// Exchange answered 401 to a freshly fetched token too.
    #[error(
        "tenant {tenant}: Exchange ({url}) rejected a freshly issued token of app {app_id} (HTTP 401): check that the app has the Exchange.ManageAsApp permission with admin consent in {tenant}, and that [exchange] endpoint matches the token audience; `exo-authproxy check` shows the claims"
    )]
    ExchangeRejectedToken {
        /// Local tenant.
        tenant: TenantName,
        /// The upstream URL.
        url: String,
        /// The app's client id.
        app_id: String,
    },
    /// Exchange could not be reached.
    #[error(
        "tenant {tenant}: cannot reach Exchange at {url}: {reason}; check [exchange] endpoint, DNS, the network path and [exchange] ca_file"
    )]
    UpstreamUnreachable {
        /// Local tenant.
        tenant: TenantName,
        /// The upstream URL (no credentials in it).
        url: String,
        /// The transport error, flattened.
        reason: String,
    },
    /// Exchange did not answer within the request's deadline.
    #[error("tenant {tenant}: Exchange at {url} did not answer within {after:?}")]
    UpstreamTimeout {
        /// Local tenant.
        tenant: TenantName,
        /// The upstream URL.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// Exchange kept redirecting.
    #[error(
        "tenant {tenant}: Exchange redirected more than {limit} times (last to {last}); this is an Exchange-side problem, retry later"
    )]
    TooManyRedirects {
        /// Local tenant.
        tenant: TenantName,
        /// The bound.
        limit: usize,
        /// The last Location.
        last: String,
    },
    /// Exchange redirected somewhere the proxy will not send a token.
    #[error(
        "tenant {tenant}: Exchange redirected to {location:?}, {reason}; the proxy sends the tenant's token only to {allowed}, so it did not follow: check [exchange] endpoint (a proxy or captive portal in the network path answers like this)"
    )]
    RedirectRefused {
        /// Local tenant.
        tenant: TenantName,
        /// The Location header (query removed).
        location: String,
        /// Why it was refused.
        reason: &'static str,
        /// The hosts a redirect may name.
        allowed: String,
    },
    /// The proxy is shutting down.
    #[error("exo-authproxy is shutting down: reconnect in a moment")]
    ShuttingDown,
}

impl ProxyError {
    /// The stable code in `X-Exo-Authproxy-Error` (and in logs and tests).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing-credentials",
            Self::MalformedCredentials { .. } => "malformed-credentials",
            Self::BadCredentials => "bad-credentials",
            Self::Throttled { .. } => "auth-throttled",
            Self::LoginBusy { .. } => "auth-busy",
            Self::TenantNotAllowed { .. } => "tenant-not-allowed",
            Self::UnknownPath { .. } => "unknown-path",
            Self::ComplianceNeedsRest => "compliance-needs-rest",
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::RequestTooLarge { .. } => "request-too-large",
            Self::ClientBody { .. } => "client-body",
            Self::ClientBodyTimeout { .. } => "client-body-timeout",
            Self::UnsupportedContentType { .. } => "unsupported-content-type",
            Self::RequestLineTooLong { .. } => "request-line-too-long",
            Self::HeadTooLarge { .. } => "request-header-too-large",
            Self::TooManyHeaders { .. } => "too-many-headers",
            Self::PlaintextOnTlsPort => "plaintext-on-tls-port",
            Self::MalformedHead { .. } => "malformed-request",
            Self::Token { .. } => "token-unavailable",
            Self::TokenUnusable { .. } => "token-unusable",
            Self::DirectoryRoleMissing(_) => "directory-role-missing",
            Self::DirectoryRoleRequired { .. } => "directory-role-required",
            Self::ExchangeRejectedToken { .. } => "exchange-rejected-token",
            Self::UpstreamUnreachable { .. } => "upstream-unreachable",
            Self::UpstreamTimeout { .. } => "upstream-timeout",
            Self::TooManyRedirects { .. } => "too-many-redirects",
            Self::RedirectRefused { .. } => "redirect-refused",
            Self::ShuttingDown => "shutting-down",
        }
    }

    /// How the error reaches the client.
    fn shape(&self) -> Shape {
        match self {
            Self::MissingCredentials
            | Self::MalformedCredentials { .. }
            | Self::BadCredentials
            | Self::Throttled { .. } => Shape::Challenge,
            Self::UnknownPath { .. } => Shape::Plain(StatusCode::NOT_FOUND),
            Self::MethodNotAllowed { .. } => Shape::Plain(StatusCode::METHOD_NOT_ALLOWED),
            // A client's mistake is a 4xx: nothing Exchange-side went wrong.
            Self::RequestTooLarge { .. } => Shape::Plain(StatusCode::PAYLOAD_TOO_LARGE),
            Self::ClientBody { .. } | Self::PlaintextOnTlsPort | Self::MalformedHead { .. } => {
                Shape::Plain(StatusCode::BAD_REQUEST)
            }
            Self::ClientBodyTimeout { .. } => Shape::Plain(StatusCode::REQUEST_TIMEOUT),
            Self::UnsupportedContentType { .. } => Shape::Plain(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            Self::RequestLineTooLong { .. } => Shape::Plain(StatusCode::URI_TOO_LONG),
            Self::HeadTooLarge { .. } | Self::TooManyHeaders { .. } => {
                Shape::Plain(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
            Self::TenantNotAllowed { .. }
            | Self::DirectoryRoleMissing(_)
            | Self::DirectoryRoleRequired { .. }
            | Self::TokenUnusable { .. }
            | Self::ExchangeRejectedToken { .. } => {
                Shape::Fault(FaultCode::Sender, "w:AccessDenied", WSMAN_ACCESS_DENIED)
            }
            Self::UpstreamTimeout { .. } => {
                Shape::Fault(FaultCode::Receiver, "w:TimedOut", WSMAN_TIMED_OUT)
            }
            Self::Token { .. }
            | Self::ComplianceNeedsRest
            | Self::UpstreamUnreachable { .. }
            | Self::TooManyRedirects { .. }
            | Self::RedirectRefused { .. }
            | Self::LoginBusy { .. }
            | Self::ShuttingDown => {
                Shape::Fault(FaultCode::Receiver, "w:InternalError", WSMAN_CANNOT_PROCESS)
            }
        }
    }
}

enum Shape {
    Challenge,
    Plain(StatusCode),
    Fault(FaultCode, &'static str, u32),
}

/// The only place a `ProxyError` becomes bytes on the wire. `relates_to` is the request's
/// `wsa:MessageID` when known, so the fault correlates with the request.
pub fn respond(
    result: Result<Response<Body>, ProxyError>,
    relates_to: Option<&str>,
) -> Response<Body> {
    let err = match result {
        Ok(rsp) => return rsp,
        Err(err) => err,
    };
    // `{:#}`-like: the whole chain, which for token errors carries the fix.
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    tracing::warn!(code = err.code(), error = %text, "answered by the proxy");
    let mut rsp = match err.shape() {
        Shape::Challenge => {
            let mut rsp = Response::new(full(text));
            *rsp.status_mut() = StatusCode::UNAUTHORIZED;
            rsp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(BASIC_CHALLENGE));
            rsp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            rsp
        }
        Shape::Plain(status) => self::text(status, TEXT_PLAIN, text + "\n"),
        Shape::Fault(code, subcode, wsman_code) => {
            let fault = Fault {
                code,
                subcode,
                wsman_code,
                message: text,
                proxy_code: wsman::FaultCode(err.code()),
            };
            wsman::fault_response(&fault, relates_to).map(full)
        }
    };
    if let ProxyError::Throttled { retry_after, .. } | ProxyError::LoginBusy { retry_after, .. } =
        &err
    {
        rsp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
    }
    mark_invented(&mut rsp, err.code());
    rsp
}

/// `err` as the bytes of a complete HTTP/1.1 response that closes the connection: for refusals
/// made before hyper has a request to answer (an oversized head, plain HTTP on the TLS port).
/// Same status, code header and text as [`respond`] gives the error.
pub fn raw_response(err: &ProxyError) -> Vec<u8> {
    let status = match err.shape() {
        Shape::Plain(status) => status,
        Shape::Challenge => StatusCode::UNAUTHORIZED,
        Shape::Fault(..) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let text = format!("{err}\n");
    format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {TEXT_PLAIN}\r\nContent-Length: {}\r\n{}: {}\r\nConnection: close\r\n\r\n{text}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        text.len(),
        PROXY_ERROR.as_str(),
        err.code(),
    )
    .into_bytes()
}

/// Extracts `wsa:MessageID` from a request envelope (for `RelatesTo`): the SOAP header as
/// [`wsman::peek`] reads it.
pub fn message_id(envelope: &[u8]) -> Option<String> {
    wsman::peek(envelope).message_id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_kebab_case() {
        let errs = [
            ProxyError::MissingCredentials,
            ProxyError::MalformedCredentials { reason: "x" },
            ProxyError::BadCredentials,
            ProxyError::ShuttingDown,
            ProxyError::UnknownPath { path: "/".into() },
            ProxyError::ComplianceNeedsRest,
            ProxyError::RequestTooLarge { limit: 1 },
            ProxyError::ClientBody { reason: "x".into() },
            ProxyError::ClientBodyTimeout {
                after: Duration::from_secs(1),
            },
            ProxyError::UnsupportedContentType {
                content_type: "text/plain".into(),
            },
            ProxyError::RequestLineTooLong { limit: 1 },
            ProxyError::HeadTooLarge { limit: 1 },
            ProxyError::TooManyHeaders { limit: 1 },
            ProxyError::MalformedHead { reason: "x" },
            ProxyError::PlaintextOnTlsPort,
        ];
        let mut codes: Vec<_> = errs.iter().map(ProxyError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errs.len());
        assert!(
            codes
                .iter()
                .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'))
        );
    }

    #[test]
    fn bad_credentials_are_a_basic_challenge_never_5xx() {
        for err in [
            ProxyError::MissingCredentials,
            ProxyError::MalformedCredentials {
                reason: "not base64",
            },
            ProxyError::BadCredentials,
        ] {
            let code = err.code();
            let rsp = respond(Err(err), None);
            assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(rsp.headers()[WWW_AUTHENTICATE], BASIC_CHALLENGE);
            assert_eq!(rsp.headers()[PROXY_ERROR], code);
        }
    }

    #[test]
    fn a_clients_mistake_is_a_4xx_with_its_code_and_a_one_line_reason() {
        for err in [
            ProxyError::RequestTooLarge { limit: 1 },
            ProxyError::ClientBody { reason: "x".into() },
            ProxyError::ClientBodyTimeout {
                after: Duration::from_secs(1),
            },
            ProxyError::UnsupportedContentType {
                content_type: "text/plain".into(),
            },
            ProxyError::HeadTooLarge { limit: 1 },
            ProxyError::MalformedHead { reason: "x" },
        ] {
            let code = err.code();
            let raw = String::from_utf8(raw_response(&err)).unwrap();
            let rsp = respond(Err(err), None);
            assert!(rsp.status().is_client_error(), "{code}: {}", rsp.status());
            assert_eq!(rsp.headers()[PROXY_ERROR], code);
            let status = format!("HTTP/1.1 {} ", rsp.status().as_u16());
            assert!(raw.starts_with(&status), "{raw}");
            assert!(raw.contains(&format!("x-exo-authproxy-error: {code}\r\n")));
            let body = raw.split("\r\n\r\n").nth(1).unwrap();
            assert_eq!(body.lines().count(), 1, "{body}");
        }
    }

    #[test]
    fn throttled_and_busy_logins_say_when_to_retry() {
        let throttled = respond(
            Err(ProxyError::Throttled {
                client: IpAddr::from([127, 0, 0, 1]),
                retry_after: Duration::from_secs(42),
            }),
            None,
        );
        assert_eq!(throttled.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(throttled.headers()[RETRY_AFTER], "42");
        assert_eq!(throttled.headers()[PROXY_ERROR], "auth-throttled");
        let busy = respond(
            Err(ProxyError::LoginBusy {
                queued: 64,
                retry_after: Duration::from_secs(1),
            }),
            None,
        );
        assert_eq!(busy.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(busy.headers()[RETRY_AFTER], "1");
        assert_eq!(busy.headers()[PROXY_ERROR], "auth-busy");
    }

    #[test]
    fn directory_role_text_names_tenant_app_role_and_where() {
        let err = ProxyError::DirectoryRoleMissing(RoleRefusal {
            tenant: TenantName("fabrikam".into()),
            organization: "fabrikam.onmicrosoft.com".into(),
            app_id: "11111111-2222-3333-4444-555555555555".into(),
        });
        let text = err.to_string();
        for needle in [
            "fabrikam",
            "11111111-2222-3333-4444-555555555555",
            "Exchange Administrator",
            "Roles and administrators",
            "Add assignment",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn message_id_is_found_in_an_envelope() {
        let env = br#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"><s:Header><a:MessageID s:mustUnderstand="true">uuid:1234-AB</a:MessageID></s:Header></s:Envelope>"#;
        assert_eq!(message_id(env).as_deref(), Some("uuid:1234-AB"));
        assert_eq!(message_id(b"garbage"), None);
    }
}
