//! The ErrorRecords the simulated RPS runspace writes (psrp-protocol.md §9.1, §10.1, §11.6).
//!
//! Exchange's cmdlet errors carry its FullyQualifiedErrorId form
//! `[Server=…,RequestId=…,TimeStamp=…] [FailureCategory=Cmdlet-<Exception>] <id>,<cmdlet class>`;
//! PowerShell's own failures (script text in a NoLanguage runspace, an unknown command, a
//! binding error, an input object nothing takes) carry PowerShell's ids and texts.

use super::super::data::CmdletError;
use super::super::data::error::category;
use crate::remoting::clixml::Value;
use crate::remoting::executor::{ErrorCategory, ErrorRecord};

fn category_of(n: i32) -> ErrorCategory {
    match n {
        category::INVALID_ARGUMENT => ErrorCategory::InvalidArgument,
        category::INVALID_DATA => ErrorCategory::InvalidData,
        category::OBJECT_NOT_FOUND => ErrorCategory::ObjectNotFound,
        category::PARSER_ERROR => ErrorCategory::ParserError,
        _ => ErrorCategory::NotSpecified,
    }
}

/// The .NET class of an Exchange cmdlet, as FQIDs end (`Get-Mailbox` →
/// `Microsoft.Exchange.Management.RecipientTasks.GetMailbox`, psrp-protocol.md §11.6).
fn cmdlet_class(cmdlet: &str) -> String {
    format!(
        "Microsoft.Exchange.Management.RecipientTasks.{}",
        cmdlet.replace('-', "")
    )
}

/// An Exchange cmdlet's error, as RPS wrote it on `server`.
pub fn exchange(e: &CmdletError, cmdlet: &str, server: &str) -> ErrorRecord {
    if e.is_terminating() {
        return powershell(e, cmdlet);
    }
    let host = server.split('.').next().unwrap_or_default();
    let stamp = chrono::Utc::now().format("%-m/%-d/%Y %-I:%M:%S %p");
    let id = if e.error_id.is_empty() {
        e.short_name()
    } else {
        &e.error_id
    };
    ErrorRecord {
        message: e.message.clone(),
        exception_type: e.class.clone(),
        fully_qualified_error_id: format!(
            "[Server={host},RequestId={},TimeStamp={stamp}] [FailureCategory=Cmdlet-{}] {id},{}",
            uuid::Uuid::new_v4(),
            e.short_name(),
            cmdlet_class(cmdlet)
        ),
        category: category_of(e.category),
        activity: cmdlet.to_owned(),
        reason: e.short_name().to_owned(),
        target_name: e.target.clone(),
        target_type: String::new(),
        target_object: if e.target.is_empty() {
            Value::Nil
        } else {
            Value::String(e.target.clone())
        },
    }
}

/// A failure PowerShell itself raised while preparing or binding `cmdlet`.
pub fn powershell(e: &CmdletError, cmdlet: &str) -> ErrorRecord {
    let id = match e.short_name() {
        "CommandNotFoundException" => "CommandNotFoundException".to_owned(),
        "ParameterBindingException" if e.message.starts_with("A parameter cannot be found") => {
            format!("NamedParameterNotFound,{cmdlet}")
        }
        _ => format!("ParameterBindingFailed,{cmdlet}"),
    };
    ErrorRecord {
        message: e.message.clone(),
        exception_type: e.class.clone(),
        fully_qualified_error_id: id,
        category: category_of(e.category),
        activity: if e.short_name() == "CommandNotFoundException" {
            String::new()
        } else {
            cmdlet.to_owned()
        },
        reason: e.short_name().to_owned(),
        target_name: e.target.clone(),
        target_type: if e.target.is_empty() {
            String::new()
        } else {
            "String".to_owned()
        },
        target_object: if e.target.is_empty() {
            Value::Nil
        } else {
            Value::String(e.target.clone())
        },
    }
}

/// Script text in the NoLanguage runspace (psrp-protocol.md §10.1).
pub fn scripts_not_allowed(script: &str) -> ErrorRecord {
    ErrorRecord {
        message: "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode."
            .to_owned(),
        exception_type: "System.Management.Automation.ParseException".to_owned(),
        fully_qualified_error_id: "ScriptsNotAllowed".to_owned(),
        category: ErrorCategory::ParserError,
        activity: String::new(),
        reason: "ParseException".to_owned(),
        target_name: script.to_owned(),
        target_type: "String".to_owned(),
        target_object: Value::String(script.to_owned()),
    }
}

/// A piped object no parameter of `cmdlet` takes.
pub fn input_not_bound(cmdlet: &str, input: &Value) -> ErrorRecord {
    ErrorRecord {
        message: "The input object cannot be bound to any parameters for the command either because the command \
                  does not take pipeline input or the input and its properties do not match any of the parameters \
                  that take pipeline input."
            .to_owned(),
        exception_type: "System.Management.Automation.ParameterBindingException".to_owned(),
        fully_qualified_error_id: format!("InputObjectNotBound,{}", cmdlet_class(cmdlet)),
        category: ErrorCategory::InvalidArgument,
        activity: cmdlet.to_owned(),
        reason: "ParameterBindingException".to_owned(),
        target_name: super::binding::text_of(input).unwrap_or_default(),
        target_type: String::new(),
        target_object: input.clone(),
    }
}

/// `-WarningAction Stop` met a warning.
pub fn warning_stop(cmdlet: &str, text: &str) -> ErrorRecord {
    ErrorRecord {
        message: format!(
            "The running command stopped because the preference variable \"WarningPreference\" or common \
             parameter is set to Stop: {text}"
        ),
        exception_type: "System.Management.Automation.ActionPreferenceStopException".to_owned(),
        fully_qualified_error_id: format!("ActionPreferenceStop,{}", cmdlet_class(cmdlet)),
        category: ErrorCategory::OperationStopped,
        activity: cmdlet.to_owned(),
        reason: "ActionPreferenceStopException".to_owned(),
        target_name: String::new(),
        target_type: String::new(),
        target_object: Value::Nil,
    }
}
