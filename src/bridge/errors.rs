//! Exchange's errors, both ways: REST error bodies → PowerShell ErrorRecords, and the
//! facts of an Exchange error (id, exception class, message, category, target) that the
//! simulated Exchange turns into REST bodies or RPS records.
//!
//! The REST API's useful text is `error.details[0].message`, formatted
//! `ErrorId|Exception.Class.Name|Human message` (reference exo-rest-adminapi.md §9.2); the
//! module falls back to `innererror.internalexception.message`, then `error.message`. The
//! record we build follows the module's own mapping (§9.3): Activity = cmdlet, Category =
//! `details[0].code` when it is an ErrorCategory number, Reason = the exception's short name,
//! TargetName = `details[0].target`, FullyQualifiedErrorId =
//! `[Server=…,RequestId=…,TimeStamp=…] <ErrorId or short name>,<cmdlet class>` — so a script
//! that matched on `$_.CategoryInfo.Reason` or the FQID's tail still matches.
//!
//! Whether an error stops the pipeline is decided by [`ExchangeError::is_terminating`]:
//! Exchange's cmdlet errors (object not found, validation) were non-terminating (one bad
//! identity among several did not stop the rest); parameter binding and unknown-command
//! errors failed the pipeline, as they do in PowerShell.

use serde_json::Value as Json;

use crate::remoting::clixml::Value;
use crate::remoting::executor::{ErrorCategory, ErrorRecord};

/// The facts of one Exchange error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeError {
    /// Error id (first `|` field); may be empty.
    pub error_id: String,
    /// Exception class full name, e.g.
    /// `Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException`.
    pub class: String,
    /// The message Exchange wrote.
    pub message: String,
    /// ErrorCategory number (`details[0].code` when numeric).
    pub category: Option<i32>,
    /// `details[0].target`.
    pub target: String,
}

/// Where the error was observed (the FQID's bracketed prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorOrigin {
    /// `X-CalculatedBETarget` host part.
    pub server: String,
    /// `request-id`.
    pub request_id: String,
    /// `Date`.
    pub timestamp: String,
}

const NOT_FOUND: &str = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException";

impl ExchangeError {
    /// An error with no id, from a class and message.
    pub fn new(class: &str, message: impl Into<String>) -> Self {
        Self {
            error_id: String::new(),
            class: class.into(),
            message: message.into(),
            category: None,
            target: String::new(),
        }
    }

    /// Exchange's "couldn't be found" error for `identity`.
    pub fn not_found(identity: &str, server: &str) -> Self {
        Self {
            error_id: short_hash(NOT_FOUND),
            class: NOT_FOUND.into(),
            message: format!(
                "The operation couldn't be performed because object '{identity}' couldn't be found on '{server}'."
            ),
            category: Some(ErrorCategory::NotSpecified as i32),
            target: String::new(),
        }
    }

    /// PowerShell's "not recognized" error for an unknown command.
    pub fn command_not_found(name: &str) -> Self {
        Self {
            error_id: "CommandNotFoundException".into(),
            class: "System.Management.Automation.CommandNotFoundException".into(),
            message: format!(
                "The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable \
                 program. Check the spelling of the name, or if a path was included, verify that the path is \
                 correct and try again."
            ),
            category: Some(ErrorCategory::ObjectNotFound as i32),
            target: name.into(),
        }
    }

    /// The exception's short name (`ManagementObjectNotFoundException`).
    pub fn short_name(&self) -> &str {
        self.class.rsplit('.').next().unwrap_or(&self.class)
    }

    /// Binding and command-resolution errors fail the pipeline; Exchange's cmdlet errors do
    /// not (unless `-ErrorAction Stop`).
    pub fn is_terminating(&self) -> bool {
        let s = self.short_name();
        s.contains("ParameterBinding")
            || s.contains("ParameterTransformation")
            || s.contains("AmbiguousParameterSet")
            || s == "CommandNotFoundException"
    }

    /// `details[0].message` form.
    pub fn detail_message(&self) -> String {
        format!("{}|{}|{}", self.error_id, self.class, self.message)
    }

    /// Parses `ErrorId|Class|Message` (the message may itself contain `|`).
    pub fn parse_detail(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '|');
        let (id, class, msg) = (parts.next()?, parts.next()?, parts.next()?);
        Some(Self {
            error_id: id.trim().into(),
            class: class.trim().into(),
            message: msg.into(),
            category: None,
            target: String::new(),
        })
    }

    /// The ErrorRecord for this error raised by `cmdlet`.
    pub fn to_error_record(&self, cmdlet: &str, origin: &ErrorOrigin) -> ErrorRecord {
        let id = if self.error_id.is_empty() {
            self.short_name().to_owned()
        } else {
            self.error_id.clone()
        };
        let prefix = if origin.server.is_empty() && origin.request_id.is_empty() {
            String::new()
        } else {
            format!(
                "[Server={},RequestId={},TimeStamp={}] ",
                origin.server, origin.request_id, origin.timestamp
            )
        };
        ErrorRecord {
            message: self.message.clone(),
            exception_type: self.class.clone(),
            fully_qualified_error_id: format!("{prefix}{id},{}", cmdlet_class(cmdlet)),
            category: category_from_i32(self.category.unwrap_or(0)),
            activity: cmdlet.into(),
            reason: self.short_name().into(),
            target_name: self.target.clone(),
            target_type: String::new(),
            target_object: if self.target.is_empty() {
                Value::Nil
            } else {
                Value::String(self.target.clone())
            },
        }
    }

    /// The REST error body (reference §9.2) for this error.
    pub fn to_rest_body(&self) -> Json {
        let code = match self.category {
            Some(n) if n != 0 => Json::from(n.to_string()),
            _ => Json::from("Client"),
        };
        serde_json::json!({
            "error": {
                "code": "BadRequest",
                "message": "Invalid Operation",
                "details": [{ "code": code, "target": self.target, "message": self.detail_message() }],
                "innererror": {
                    "message": "Invalid Operation",
                    "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                    "stacktrace": "",
                    "internalexception": { "message": self.message, "type": self.class, "stacktrace": "" }
                },
                "adminapi.warnings@odata.type": "#Collection(String)",
                "@adminapi.warnings": []
            }
        })
    }

    /// Reads a REST error body; None when it is not one (e.g. the NUL-filled 403 bodies).
    pub fn from_rest_body(body: &[u8]) -> Option<Self> {
        let json: Json = serde_json::from_slice(body).ok()?;
        let err = json.get("error")?;
        let detail = err.get("details").and_then(|d| d.get(0));
        let get_ci = |v: &Json, key: &str| -> Option<Json> {
            v.as_object()?
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        let mut parsed = detail
            .and_then(|d| d.get("message"))
            .and_then(Json::as_str)
            .filter(|m| !m.is_empty())
            .and_then(|m| Self::parse_detail(m).or_else(|| Some(Self::new("System.Exception", m))));
        if parsed.is_none()
            && let Some(inner) = err
                .get("innererror")
                .and_then(|i| get_ci(i, "internalexception"))
            && let Some(m) = inner.get("message").and_then(Json::as_str)
        {
            let class = inner
                .get("type")
                .and_then(Json::as_str)
                .unwrap_or("System.Exception");
            parsed = Some(Self::new(class, m));
        }
        if parsed.is_none()
            && let Some(m) = err.get("message").and_then(Json::as_str)
        {
            parsed = Some(Self::new("System.Exception", m));
        }
        let mut parsed = parsed?;
        if let Some(d) = detail {
            parsed.category = match d.get("code") {
                Some(Json::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
                Some(Json::String(s)) => s.parse().ok(),
                _ => None,
            };
            parsed.target = d
                .get("target")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .into();
        }
        Some(parsed)
    }
}

/// Exchange's cmdlet class for the FQID tail (`Get-Mailbox` →
/// `Microsoft.Exchange.Management.RecipientTasks.GetMailbox`).
pub fn cmdlet_class(cmdlet: &str) -> String {
    if cmdlet.is_empty() {
        return String::new();
    }
    format!(
        "Microsoft.Exchange.Management.RecipientTasks.{}",
        cmdlet.replace('-', "")
    )
}

/// Eight upper-case hex digits, as in Exchange's error ids.
pub fn short_hash(text: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(text.as_bytes());
    hex::encode_upper(&d[..4])
}

/// ErrorCategory from its number (unknown numbers: NotSpecified).
pub fn category_from_i32(n: i32) -> ErrorCategory {
    use ErrorCategory::*;
    const ALL: [ErrorCategory; 32] = [
        NotSpecified,
        OpenError,
        CloseError,
        DeviceError,
        DeadlockDetected,
        InvalidArgument,
        InvalidData,
        InvalidOperation,
        InvalidResult,
        InvalidType,
        MetadataError,
        NotImplemented,
        NotInstalled,
        ObjectNotFound,
        OperationStopped,
        OperationTimeout,
        SyntaxError,
        ParserError,
        PermissionDenied,
        ResourceBusy,
        ResourceExists,
        ResourceUnavailable,
        ReadError,
        WriteError,
        FromStdErr,
        SecurityError,
        ProtocolError,
        ConnectionError,
        AuthenticationError,
        LimitsExceeded,
        QuotaExceeded,
        NotEnabled,
    ];
    usize::try_from(n)
        .ok()
        .and_then(|i| ALL.get(i).copied())
        .unwrap_or(NotSpecified)
}

/// A record the bridge itself raises (not from Exchange's body): throttled, timed out,
/// unreachable, refused token. `id` is the FQID's first part.
pub fn bridge_record(
    cmdlet: &str,
    id: &str,
    category: ErrorCategory,
    message: String,
) -> ErrorRecord {
    ErrorRecord {
        message,
        exception_type: "System.Management.Automation.RemoteException".into(),
        fully_qualified_error_id: if cmdlet.is_empty() {
            id.into()
        } else {
            format!("{id},{}", cmdlet_class(cmdlet))
        },
        category,
        activity: cmdlet.into(),
        reason: "RemoteException".into(),
        target_name: String::new(),
        target_type: String::new(),
        target_object: Value::Nil,
    }
}

/// PowerShell's ScriptsNotAllowed record (reference psrp-protocol.md §10.1).
pub fn scripts_not_allowed(script: &str) -> ErrorRecord {
    ErrorRecord {
        message: "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode."
            .into(),
        exception_type: "System.Management.Automation.ParseException".into(),
        fully_qualified_error_id: "ScriptsNotAllowed".into(),
        category: ErrorCategory::ParserError,
        activity: String::new(),
        reason: "ParseException".into(),
        target_name: script.into(),
        target_type: "String".into(),
        target_object: Value::String(script.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_live_400_fixture() {
        let body = br#"{"error":{"code":"BadRequest","message":"Invalid Operation","details":[{"code":"Client","target":"","message":"|Microsoft.Exchange.AdminApi.CommandInvocation.AmbiguousParameterSetException|Parameter set cannot be resolved using the specified named parameters."}],"innererror":{"message":"Invalid Operation","type":"Microsoft.Exchange.Admin.OData.Core.ODataServiceException","stacktrace":"","internalexception":{"message":"Parameter set cannot be resolved using the specified named parameters.","type":"Microsoft.Exchange.AdminApi.CommandInvocation.ParameterTransformationException","stacktrace":""}}}}"#;
        let e = ExchangeError::from_rest_body(body).unwrap();
        assert_eq!(e.error_id, "");
        assert_eq!(e.short_name(), "AmbiguousParameterSetException");
        assert_eq!(
            e.message,
            "Parameter set cannot be resolved using the specified named parameters."
        );
        assert!(e.is_terminating());
        let origin = ErrorOrigin {
            server: "AM0PR01MB0001".into(),
            request_id: "r1".into(),
            timestamp: "t".into(),
        };
        let rec = e.to_error_record("Get-Mailbox", &origin);
        assert_eq!(
            rec.fully_qualified_error_id,
            "[Server=AM0PR01MB0001,RequestId=r1,TimeStamp=t] AmbiguousParameterSetException,Microsoft.Exchange.Management.RecipientTasks.GetMailbox"
        );
        assert_eq!(rec.reason, "AmbiguousParameterSetException");
        assert_eq!(rec.activity, "Get-Mailbox");
    }

    #[test]
    fn round_trips_and_falls_back() {
        let e = ExchangeError::not_found("nosuchuser", "AM0PR01MB0001.eurprd01.prod.outlook.com");
        let body = serde_json::to_vec(&e.to_rest_body()).unwrap();
        let back = ExchangeError::from_rest_body(&body).unwrap();
        assert_eq!(
            back,
            ExchangeError {
                category: None,
                ..e.clone()
            },
            "category 0 travels as \"Client\""
        );
        assert!(!back.is_terminating());
        let rec = back.to_error_record("Get-Mailbox", &ErrorOrigin::default());
        assert_eq!(rec.category, ErrorCategory::NotSpecified);
        assert!(rec.fully_qualified_error_id.starts_with(&e.error_id));
        let inner = br#"{"error":{"message":"x","innererror":{"internalException":{"message":"inner text","type":"A.B"}}}}"#;
        assert_eq!(
            ExchangeError::from_rest_body(inner).unwrap().message,
            "inner text"
        );
        let outer = br#"{"error":{"message":"outer text"}}"#;
        assert_eq!(
            ExchangeError::from_rest_body(outer).unwrap().message,
            "outer text"
        );
        assert!(ExchangeError::from_rest_body(b"\0\0\0").is_none());
    }

    #[test]
    fn numeric_detail_code_is_the_category() {
        let body =
            br#"{"error":{"details":[{"code":"13","target":"x","message":"id|A.NotFound|gone"}]}}"#;
        let e = ExchangeError::from_rest_body(body).unwrap();
        let rec = e.to_error_record("Get-Mailbox", &ErrorOrigin::default());
        assert_eq!(rec.category, ErrorCategory::ObjectNotFound);
        assert_eq!(rec.target_name, "x");
        assert_eq!(
            rec.fully_qualified_error_id,
            "id,Microsoft.Exchange.Management.RecipientTasks.GetMailbox"
        );
    }
}
