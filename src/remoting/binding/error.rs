//! [`BindingError`]: why the arguments could not be bound, in PowerShell's own words.
//!
//! Separate because the texts and the `ErrorRecord` they become are PowerShell's contract
//! with scripts, and change for different reasons than the binding rules do.

use crate::remoting::clixml::Value;
use crate::remoting::executor::{ErrorCategory, ErrorRecord};

/// Why the arguments could not be bound. `Display` is PowerShell's own text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// No parameter, alias or prefix matches.
    #[error("A parameter cannot be found that matches parameter name '{name}'.")]
    NamedParameterNotFound {
        /// The command.
        command: String,
        /// The name as the client spelled it (without dash and colon).
        name: String,
    },
    /// A prefix matches several parameters.
    #[error(
        "Parameter cannot be processed because the parameter name '{name}' is ambiguous. \
         Possible matches include: {}.", candidates.iter().map(|c| format!("-{c}")).collect::<Vec<_>>().join(" ")
    )]
    AmbiguousParameter {
        /// The command.
        command: String,
        /// The prefix as sent.
        name: String,
        /// The parameters it could mean.
        candidates: Vec<String>,
    },
    /// A valued parameter token with nothing after it.
    #[error(
        "Missing an argument for parameter '{parameter}'. Specify a parameter of type \
         '{parameter_type}' and try again."
    )]
    MissingArgument {
        /// The command.
        command: String,
        /// The canonical parameter name.
        parameter: String,
        /// Its type (display).
        parameter_type: String,
    },
    /// A positional value no positional parameter is left for.
    #[error("A positional parameter cannot be found that accepts argument '{argument}'.")]
    PositionalParameterNotFound {
        /// The command.
        command: String,
        /// The argument's text.
        argument: String,
    },
    /// The same parameter twice.
    #[error(
        "Cannot bind parameter because parameter '{parameter}' is specified more than once. To \
         provide multiple values to parameters that can accept multiple values, use the array \
         syntax. For example, \"-parameter value1,value2,value3\"."
    )]
    ParameterAlreadyBound {
        /// The command.
        command: String,
        /// The canonical parameter name.
        parameter: String,
    },
    /// A value that does not convert to the parameter's type (switches, ActionPreference).
    #[error(
        "Cannot bind parameter '{parameter}'. Cannot convert value \"{value}\" to type \
         \"{parameter_type}\".{hint}"
    )]
    CannotConvertArgument {
        /// The command.
        command: String,
        /// The canonical parameter name.
        parameter: String,
        /// The value's text.
        value: String,
        /// The target type.
        parameter_type: String,
        /// What would have been accepted (leading space), or empty.
        hint: String,
    },
}

impl BindingError {
    /// PowerShell's error id (first part of FullyQualifiedErrorId).
    pub fn error_id(&self) -> &'static str {
        match self {
            Self::NamedParameterNotFound { .. } => "NamedParameterNotFound",
            Self::AmbiguousParameter { .. } => "AmbiguousParameter",
            Self::MissingArgument { .. } => "MissingArgument",
            Self::PositionalParameterNotFound { .. } => "PositionalParameterNotFound",
            Self::ParameterAlreadyBound { .. } => "ParameterAlreadyBound",
            Self::CannotConvertArgument { .. } => "CannotConvertArgumentNoMessage",
        }
    }

    fn command(&self) -> &str {
        match self {
            Self::NamedParameterNotFound { command, .. }
            | Self::AmbiguousParameter { command, .. }
            | Self::MissingArgument { command, .. }
            | Self::PositionalParameterNotFound { command, .. }
            | Self::ParameterAlreadyBound { command, .. }
            | Self::CannotConvertArgument { command, .. } => command,
        }
    }

    /// The ErrorRecord PowerShell would have produced (a terminating ParameterBindingException).
    pub fn to_error_record(&self) -> ErrorRecord {
        let command = self.command().to_owned();
        let target_name = match self {
            Self::NamedParameterNotFound { .. } | Self::AmbiguousParameter { .. } => String::new(),
            Self::PositionalParameterNotFound { argument, .. } => argument.clone(),
            _ => String::new(),
        };
        ErrorRecord {
            message: self.to_string(),
            exception_type: "System.Management.Automation.ParameterBindingException".into(),
            fully_qualified_error_id: format!("{},{}", self.error_id(), command),
            category: ErrorCategory::InvalidArgument,
            activity: command,
            reason: "ParameterBindingException".into(),
            target_name,
            target_type: String::new(),
            target_object: Value::Nil,
        }
    }
}
