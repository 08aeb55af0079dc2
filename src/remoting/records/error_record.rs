//! ErrorRecord, with every member Windows PowerShell's decoder requires (§9.1).

use crate::remoting::clixml::{Object, Value};
use crate::remoting::executor::{ErrorCategory, ErrorRecord};

impl ErrorCategory {
    /// The enum member name (`ObjectNotFound`), as in `ErrorCategory_Message`.
    pub fn name(self) -> &'static str {
        use ErrorCategory::*;
        match self {
            NotSpecified => "NotSpecified",
            OpenError => "OpenError",
            CloseError => "CloseError",
            DeviceError => "DeviceError",
            DeadlockDetected => "DeadlockDetected",
            InvalidArgument => "InvalidArgument",
            InvalidData => "InvalidData",
            InvalidOperation => "InvalidOperation",
            InvalidResult => "InvalidResult",
            InvalidType => "InvalidType",
            MetadataError => "MetadataError",
            NotImplemented => "NotImplemented",
            NotInstalled => "NotInstalled",
            ObjectNotFound => "ObjectNotFound",
            OperationStopped => "OperationStopped",
            OperationTimeout => "OperationTimeout",
            SyntaxError => "SyntaxError",
            ParserError => "ParserError",
            PermissionDenied => "PermissionDenied",
            ResourceBusy => "ResourceBusy",
            ResourceExists => "ResourceExists",
            ResourceUnavailable => "ResourceUnavailable",
            ReadError => "ReadError",
            WriteError => "WriteError",
            FromStdErr => "FromStdErr",
            SecurityError => "SecurityError",
            ProtocolError => "ProtocolError",
            ConnectionError => "ConnectionError",
            AuthenticationError => "AuthenticationError",
            LimitsExceeded => "LimitsExceeded",
            QuotaExceeded => "QuotaExceeded",
            NotEnabled => "NotEnabled",
        }
    }
}

/// The short name of a .NET type (`…Tasks.ManagementObjectNotFoundException` →
/// `ManagementObjectNotFoundException`).
fn short_type_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

/// The exception's type hierarchy as PowerShell would serialize it.
fn exception_type_names(exception_type: &str) -> Vec<String> {
    const RUNTIME: [&str; 4] = [
        "System.Management.Automation.RuntimeException",
        "System.SystemException",
        "System.Exception",
        "System.Object",
    ];
    let runtime_derived = matches!(
        short_type_name(exception_type),
        "ParseException"
            | "PipelineStoppedException"
            | "RemoteException"
            | "CommandNotFoundException"
            | "ParameterBindingException"
            | "ActionPreferenceStopException"
    ) && exception_type.starts_with("System.Management.Automation.");
    let mut names = vec![exception_type.to_owned()];
    if runtime_derived {
        names.extend(RUNTIME.iter().map(|s| (*s).to_owned()));
    } else if exception_type == "System.Management.Automation.RuntimeException" {
        names.extend(RUNTIME[1..].iter().map(|s| (*s).to_owned()));
    } else if exception_type != "System.Exception" {
        names.push("System.Exception".to_owned());
        names.push("System.Object".to_owned());
    } else {
        names.push("System.Object".to_owned());
    }
    names
}

impl ErrorRecord {
    /// A record with the usual derived fields: activity empty, reason = the exception's short
    /// type name, no target.
    pub fn new(
        message: impl Into<String>,
        exception_type: impl Into<String>,
        fully_qualified_error_id: impl Into<String>,
        category: ErrorCategory,
    ) -> Self {
        let exception_type = exception_type.into();
        Self {
            message: message.into(),
            reason: short_type_name(&exception_type).to_owned(),
            exception_type,
            fully_qualified_error_id: fully_qualified_error_id.into(),
            category,
            activity: String::new(),
            target_name: String::new(),
            target_type: String::new(),
            target_object: Value::Nil,
        }
    }

    /// The record of a stopped pipeline (§9.2).
    pub fn pipeline_stopped() -> Self {
        Self::new(
            "The pipeline has been stopped.",
            "System.Management.Automation.PipelineStoppedException",
            "PipelineStopped",
            ErrorCategory::OperationStopped,
        )
    }

    /// What Exchange's NoLanguage endpoint answered to script text (§10.1).
    pub fn scripts_not_allowed(script: &str) -> Self {
        Self {
            target_name: script.to_owned(),
            target_type: "String".to_owned(),
            target_object: Value::from(script),
            ..Self::new(
                "The syntax is not supported by this runspace. This can occur if the runspace \
                 is in no-language mode.",
                "System.Management.Automation.ParseException",
                "ScriptsNotAllowed",
                ErrorCategory::ParserError,
            )
        }
    }

    /// PowerShell's error for a command the runspace does not have.
    pub fn command_not_found(name: &str) -> Self {
        Self {
            target_name: name.to_owned(),
            target_type: "String".to_owned(),
            target_object: Value::from(name),
            ..Self::new(
                format!(
                    "The term '{name}' is not recognized as the name of a cmdlet, function, \
                     script file, or operable program. Check the spelling of the name, or if a \
                     path was included, verify that the path is correct and try again."
                ),
                "System.Management.Automation.CommandNotFoundException",
                "CommandNotFoundException",
                ErrorCategory::ObjectNotFound,
            )
        }
    }

    /// Why a pool is Broken when a client starts the SecureString key exchange (PUBLIC_KEY):
    /// this endpoint runs over TLS and does no session-key exchange (reference §5.4), so the
    /// client learns at once instead of waiting three minutes for ENCRYPTED_SESSION_KEY.
    pub fn secure_strings_unsupported() -> Self {
        Self::new(
            "This endpoint does not support SecureString values (the connection is already \
             protected by TLS, and no session key is exchanged). Pass the value as a plain \
             string instead of ConvertTo-SecureString or a PSCredential.",
            "System.Management.Automation.PSNotSupportedException",
            "SecureStringNotSupported",
            ErrorCategory::NotImplemented,
        )
    }

    /// `ErrorCategory_Message`: `{Category}: ({TargetName}:{TargetType}) [{Activity}], {Reason}`.
    pub fn category_message(&self) -> String {
        format!(
            "{}: ({}:{}) [{}], {}",
            self.category.name(),
            self.target_name,
            self.target_type,
            self.activity,
            self.reason
        )
    }
}

/// The ErrorRecord object with every member Windows PowerShell requires (§9.1), for use
/// inside PIPELINE_STATE / RUNSPACEPOOL_STATE (`ExceptionAsErrorRecord`).
pub fn error_record_object(e: &ErrorRecord) -> Object {
    let hresult = if short_type_name(&e.exception_type) == "PipelineStoppedException" {
        -2_146_233_087
    } else {
        -2_146_233_088
    };
    let exception = Object::new(exception_type_names(&e.exception_type))
        .with_to_string(format!("{}: {}", e.exception_type, e.message))
        .with_adapted("Message", e.message.as_str())
        .with_adapted("Data", Value::Nil)
        .with_adapted("InnerException", Value::Nil)
        .with_adapted("TargetSite", Value::Nil)
        .with_adapted("StackTrace", Value::Nil)
        .with_adapted("HelpLink", Value::Nil)
        .with_adapted("Source", Value::Nil)
        .with_adapted("HResult", Value::I32(hresult));
    Object::new(["System.Management.Automation.ErrorRecord", "System.Object"])
        .with_to_string(e.message.as_str())
        .with_property("Exception", exception)
        .with_property("TargetObject", e.target_object.clone())
        .with_property("FullyQualifiedErrorId", e.fully_qualified_error_id.as_str())
        .with_property("InvocationInfo", Value::Nil)
        .with_property("ErrorCategory_Category", Value::I32(e.category as i32))
        .with_property("ErrorCategory_Activity", e.activity.as_str())
        .with_property("ErrorCategory_Reason", e.reason.as_str())
        .with_property("ErrorCategory_TargetName", e.target_name.as_str())
        .with_property("ErrorCategory_TargetType", e.target_type.as_str())
        .with_property("ErrorCategory_Message", e.category_message())
        .with_property("SerializeExtendedInfo", false)
}

/// An ERROR_RECORD message body (non-terminating error): the record plus
/// `writeErrorStream = true` (§11.7).
pub fn error_record(e: &ErrorRecord) -> Value {
    error_record_object(e)
        .with_property("writeErrorStream", true)
        .into_value()
}
