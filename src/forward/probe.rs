//! `check`'s live probe: does Exchange accept the tenant's app, asked through the same code
//! a script's requests take?
//!
//! The token's claims only predict Exchange's answer (an Exchange-side role assignment
//! authorizes an app without showing in the token), so `check` asks Exchange, in the
//! configured mode, through the same door as requests ([`Forwarder`] with its pre-flight
//! policy, or the bridge's InvokeCommand client):
//!
//! - `winrm`: open a shell on `/PowerShell-LiveID` (a WS-Man Create with the creationXml
//!   Windows PowerShell 5.1 sends, reference psrp-protocol.md §11.1) and delete it again;
//! - `rest`: run `Get-OrganizationConfig` (read-only) through the REST bridge; for
//!   `/compliance/powershell-liveid/` (a [`Route`] for the compliance audience) run
//!   `Get-RetentionCompliancePolicy` (read-only, and one of the S&C cmdlets known to run
//!   app-only in production, scc-rest-adminapi.md §5) through the S&C bridge, region
//!   discovery included — so `check` asks S&C itself instead of predicting from the claims.
//!
//! Exchange refusing the app (or the pre-flight policy refusing it first) is a
//! [`Verdict::Refused`] with the same text a script would see; Exchange out of reach settles
//! nothing ([`Verdict::Inconclusive`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Map;

use super::client::{self, UpstreamError};
use super::rest::rest_caller;
use super::{ConnectionState, Forwarder, Inbound, Route, Upstream, Winrm};
use crate::bridge::catalog::Catalog;
use crate::bridge::pipeline::{Backend, Failure};
use crate::bridge::{RestClient, RestSettings};
use crate::config::{Config, Mode};
use crate::errors::ProxyError;
use crate::remoting::binding::CommonParameters;
use crate::remoting::executor::ErrorCategory;
use crate::remoting::wsman;
use crate::token::{Audience, TokenProvider};

/// How long one probe may take (a shell Create on a cold Exchange pod takes seconds).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Probe answers read at most (a Create response is a few KiB).
const ANSWER_LIMIT: usize = 256 * 1024;
/// Windows PowerShell 5.1's creationXml (SESSION_CAPABILITY + INIT_RUNSPACEPOOL); its
/// RunspacePool id is [`PROBE_SHELL_ID`].
const CREATION_XML: &str = include_str!("probe_creation_xml.b64");
/// The ShellId the probe proposes (the creationXml's RunspacePool id).
const PROBE_SHELL_ID: &str = "1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B";
/// The read-only cmdlet the `rest` probe runs on `audience`'s endpoint.
fn rest_probe_cmdlet(audience: Audience) -> &'static str {
    match audience {
        Audience::Exchange => "Get-OrganizationConfig",
        Audience::Compliance => "Get-RetentionCompliancePolicy",
    }
}

/// What Exchange said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exchange accepted the app (a shell opened, or the cmdlet ran).
    Accepted,
    /// Exchange (or the pre-flight policy) refused the app; the text says what to do.
    Refused(String),
    /// No verdict: Exchange could not be reached or answered something else; why.
    Inconclusive(String),
}

/// The probe for the configured mode.
pub enum Probe {
    /// Through the door, in `winrm` mode.
    Winrm(Forwarder),
    /// Through the bridge's InvokeCommand clients, one per endpoint.
    Rest {
        /// Exchange (`[exchange] endpoint`).
        exchange: Box<RestClient<dyn TokenProvider>>,
        /// Security & Compliance (`[compliance] endpoint`, regions discovered).
        compliance: Box<RestClient<dyn TokenProvider>>,
    },
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Winrm(_) => "Probe::Winrm",
            Self::Rest { .. } => "Probe::Rest",
        })
    }
}

impl Probe {
    /// The probe for `config`'s mode, with tokens from `tokens`.
    ///
    /// # Errors
    /// [`UpstreamError`] for a bad endpoint or CA file.
    pub fn new(config: &Config, tokens: Arc<dyn TokenProvider>) -> Result<Self, UpstreamError> {
        let ca = config.exchange.ca_file.as_deref();
        Ok(match config.exchange.mode {
            Mode::Winrm => {
                let winrm = Winrm::new(&config.exchange.endpoint, ca, tokens.clone())?;
                Self::Winrm(Forwarder::new(tokens, Upstream::Winrm(Box::new(winrm))))
            }
            Mode::Rest => {
                let probe_settings = |mut settings: RestSettings| {
                    settings.timeout = PROBE_TIMEOUT;
                    settings.max_retries = 0;
                    settings.fetch_exported_cmdlets = false;
                    settings
                };
                let exchange = probe_settings(RestSettings::new(client::endpoint(
                    &config.exchange.endpoint,
                )?));
                let compliance = probe_settings(RestSettings::compliance(client::endpoint(
                    &config.compliance_endpoint(),
                )?));
                Self::Rest {
                    exchange: Box::new(RestClient::new(
                        client::http_client(ca)?,
                        tokens.clone(),
                        exchange,
                    )),
                    compliance: Box::new(RestClient::new(
                        client::http_client(config.compliance.ca_file.as_deref())?,
                        tokens,
                        compliance,
                    )),
                }
            }
        })
    }

    /// Asks the endpoint of `route` (Exchange, or Security & Compliance for the compliance
    /// audience) whether it accepts `route`'s app.
    pub async fn run(&self, route: &Route) -> Verdict {
        let probe = async {
            match (self, route.audience) {
                (Self::Winrm(door), Audience::Exchange) => winrm(door, route).await,
                (Self::Winrm(_), Audience::Compliance) => {
                    Verdict::Inconclusive(ProxyError::ComplianceNeedsRest.to_string())
                }
                (Self::Rest { exchange, .. }, Audience::Exchange) => rest(exchange, route).await,
                (Self::Rest { compliance, .. }, Audience::Compliance) => {
                    rest(compliance, route).await
                }
            }
        };
        tokio::time::timeout(PROBE_TIMEOUT, probe)
            .await
            .unwrap_or_else(|_| {
                Verdict::Inconclusive(format!("no answer within {} s", PROBE_TIMEOUT.as_secs()))
            })
    }
}

async fn winrm(door: &Forwarder, route: &Route) -> Verdict {
    let conn = ConnectionState::default();
    let create = envelope(
        wsman::ACTION_CREATE,
        None,
        "<w:OptionSet s:mustUnderstand=\"true\"><w:Option Name=\"protocolversion\" \
         MustComply=\"true\">2.3</w:Option></w:OptionSet><w:OperationTimeout>PT60.000S</w:OperationTimeout>",
        &format!(
            "<rsp:Shell ShellId=\"{PROBE_SHELL_ID}\"><rsp:InputStreams>stdin pr</rsp:InputStreams>\
             <rsp:OutputStreams>stdout</rsp:OutputStreams><creationXml \
             xmlns=\"http://schemas.microsoft.com/powershell\">{}</creationXml></rsp:Shell>",
            CREATION_XML.trim()
        ),
    );
    let (status, answer) = match send(door, &conn, route, "Create", create).await {
        Ok(answer) => answer,
        Err(err) => return refused_or_not(&err),
    };
    if !status.is_success() {
        let text = answer.chars().take(500).collect::<String>();
        return match status.as_u16() {
            401 | 403 => Verdict::Refused(format!(
                "Exchange refused to open a shell (HTTP {status}): {text}"
            )),
            _ => Verdict::Inconclusive(format!(
                "opening a shell got HTTP {status}, which settles nothing: {text}"
            )),
        };
    }
    let shell = element_text(&answer, "ShellId").unwrap_or_else(|| PROBE_SHELL_ID.to_owned());
    let delete = envelope(wsman::ACTION_DELETE, Some(&shell), "", "");
    match send(door, &conn, route, "Delete", delete).await {
        Ok((s, _)) if s.is_success() => {}
        Ok((s, _)) => {
            tracing::warn!(tenant = %route.tenant.name, status = s.as_u16(), "check: the probe shell was opened but not deleted; Exchange closes it when idle");
        }
        Err(e) => {
            tracing::warn!(tenant = %route.tenant.name, error = %e, "check: the probe shell was opened but not deleted; Exchange closes it when idle");
        }
    }
    Verdict::Accepted
}

async fn send(
    door: &Forwarder,
    conn: &ConnectionState,
    route: &Route,
    action: &'static str,
    envelope: String,
) -> Result<(http::StatusCode, String), ProxyError> {
    let (parts, ()) = http::Request::post("/powershell-liveid")
        .header(
            http::header::CONTENT_TYPE,
            "application/soap+xml;charset=UTF-8",
        )
        .body(())
        .expect("a static request is valid")
        .into_parts();
    let inbound = Inbound {
        parts,
        body: Bytes::from(envelope),
        action,
    };
    let rsp = door.forward(conn, route, inbound).await?;
    let status = rsp.status();
    let body = http_body_util::Limited::new(rsp.into_body(), ANSWER_LIMIT)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The pre-flight policy's refusals and Exchange's are a verdict; transport trouble is not.
fn refused_or_not(err: &ProxyError) -> Verdict {
    match err {
        ProxyError::DirectoryRoleMissing(_)
        | ProxyError::DirectoryRoleRequired { .. }
        | ProxyError::TokenUnusable { .. }
        | ProxyError::ExchangeRejectedToken { .. }
        | ProxyError::Token { .. } => Verdict::Refused(err.to_string()),
        _ => Verdict::Inconclusive(err.to_string()),
    }
}

async fn rest(client: &RestClient<dyn TokenProvider>, route: &Route) -> Verdict {
    let catalog = Catalog::builtin_for(route.audience);
    let cmdlet = rest_probe_cmdlet(route.audience);
    let Some(entry) = catalog.lookup(cmdlet) else {
        return Verdict::Inconclusive(format!("{cmdlet} is not in the catalog"));
    };
    let caller = rest_caller(route);
    let common = CommonParameters::default();
    let origin = crate::remoting::executor::Origin::default();
    let site = crate::bridge::pipeline::CallSite {
        origin: &origin,
        position: 0,
    };
    let mut call = client.call(&caller, site, entry, Map::new(), &common);
    match call.next().await {
        None | Some(Ok(_)) => Verdict::Accepted,
        Some(Err(Failure::Terminating(rec) | Failure::NonTerminating(rec))) => match rec.category {
            ErrorCategory::AuthenticationError | ErrorCategory::PermissionDenied => {
                Verdict::Refused(rec.message)
            }
            _ => Verdict::Inconclusive(rec.message),
        },
    }
}

/// A WS-Man request as Windows PowerShell shapes it, for the probe's Create and Delete.
fn envelope(action: &str, shell: Option<&str>, headers: &str, body: &str) -> String {
    let selector = shell
        .map(|s| {
            format!(
                "<w:SelectorSet><w:Selector Name=\"ShellId\">{}</w:Selector></w:SelectorSet>",
                wsman::xml_escape(s)
            )
        })
        .unwrap_or_default();
    format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
         xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" \
         xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\" \
         xmlns:rsp=\"http://schemas.microsoft.com/wbem/wsman/1/windows/shell\"><s:Header>\
         <a:To>https://outlook.office365.com/PowerShell-LiveID</a:To>\
         <w:ResourceURI s:mustUnderstand=\"true\">http://schemas.microsoft.com/powershell/Microsoft.Exchange</w:ResourceURI>\
         <a:ReplyTo><a:Address s:mustUnderstand=\"true\">{anonymous}</a:Address></a:ReplyTo>\
         <a:Action s:mustUnderstand=\"true\">{action}</a:Action>\
         <w:MaxEnvelopeSize s:mustUnderstand=\"true\">512000</w:MaxEnvelopeSize>\
         <a:MessageID>uuid:{id}</a:MessageID>\
         <w:Locale xml:lang=\"en-US\" s:mustUnderstand=\"false\" />\
         <p:DataLocale xml:lang=\"en-US\" s:mustUnderstand=\"false\" />\
         {selector}{headers}</s:Header><s:Body>{body}</s:Body></s:Envelope>",
        anonymous = wsman::ANONYMOUS,
        id = uuid::Uuid::new_v4().to_string().to_uppercase(),
    )
}

/// The text of the first element whose local name is `local` (`rsp:ShellId`).
fn element_text(xml: &str, local: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut inside = false;
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) if e.local_name().as_ref() == local.as_bytes() => {
                inside = true;
            }
            quick_xml::events::Event::Text(t) if inside => {
                let text = t.unescape().ok()?.trim().to_owned();
                return (!text.is_empty() && text.len() <= 100).then_some(text);
            }
            quick_xml::events::Event::End(_) if inside => return None,
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_envelopes_are_what_the_endpoint_parses() {
        let create = envelope(wsman::ACTION_CREATE, None, "", "<rsp:Shell/>");
        let parsed = wsman::parse_request(create.as_bytes(), 512_000).unwrap();
        assert_eq!(parsed.action, wsman::ACTION_CREATE);
        let delete = envelope(wsman::ACTION_DELETE, Some("S<1>"), "", "");
        let parsed = wsman::parse_request(delete.as_bytes(), 512_000).unwrap();
        assert_eq!(parsed.action, wsman::ACTION_DELETE);
        assert_eq!(parsed.shell_id.as_deref(), Some("S<1>"));
        assert_eq!(
            element_text(
                "<a><rsp:ShellId xmlns:rsp=\"x\"> AB-1 </rsp:ShellId></a>",
                "ShellId"
            )
            .as_deref(),
            Some("AB-1")
        );
        assert_eq!(element_text("<a><ShellId></ShellId></a>", "ShellId"), None);
        assert_eq!(element_text("<a", "ShellId"), None);
    }
}
