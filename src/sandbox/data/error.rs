//! The errors the simulated cmdlets raise, as Exchange words and classes them.
//!
//! A [`CmdletError`] holds what Exchange says about a failure (error id, exception class,
//! message, category, target). The two wires render it differently and each renders it here
//! or next to its endpoint: the REST admin API as the OData error body of
//! exo-rest-adminapi.md §9.2 ([`CmdletError::rest_body`]), RPS as an ErrorRecord with
//! Exchange's FullyQualifiedErrorId form (psrp-protocol.md §9.1, `rps/record.rs`). Written
//! from those references, apart from the proxy's own reading of them in `bridge::errors`.

use serde_json::Value as Json;

/// The exception class of "couldn't be found" (psrp-protocol.md §11.6).
pub const NOT_FOUND_CLASS: &str =
    "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException";

/// The error id Exchange printed for "couldn't be found" (the FQID's hash in
/// psrp-protocol.md §11.6).
pub const NOT_FOUND_ID: &str = "9F7D1B5C";

/// ErrorCategory numbers the simulator uses (psrp-protocol.md §9.1).
pub mod category {
    /// NotSpecified
    pub const NOT_SPECIFIED: i32 = 0;
    /// InvalidArgument
    pub const INVALID_ARGUMENT: i32 = 5;
    /// InvalidData
    pub const INVALID_DATA: i32 = 6;
    /// ObjectNotFound
    pub const OBJECT_NOT_FOUND: i32 = 13;
    /// ParserError
    pub const PARSER_ERROR: i32 = 17;
}

/// One error a simulated cmdlet raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdletError {
    /// Error id (first `|` field of `details[0].message`); may be empty.
    pub error_id: String,
    /// Exception class full name.
    pub class: String,
    /// Exchange's message.
    pub message: String,
    /// ErrorCategory number.
    pub category: i32,
    /// Target name (`details[0].target`).
    pub target: String,
}

impl CmdletError {
    /// An error of `class` with no id, category NotSpecified.
    pub fn new(class: &str, message: impl Into<String>) -> Self {
        Self {
            error_id: String::new(),
            class: class.to_owned(),
            message: message.into(),
            category: category::NOT_SPECIFIED,
            target: String::new(),
        }
    }

    /// "The operation couldn't be performed because object '…' couldn't be found on '…'."
    pub fn not_found(identity: &str, server: &str) -> Self {
        Self {
            error_id: NOT_FOUND_ID.to_owned(),
            ..Self::new(
                NOT_FOUND_CLASS,
                format!(
                    "The operation couldn't be performed because object '{identity}' couldn't be found on '{server}'."
                ),
            )
        }
    }

    /// PowerShell's CommandNotFoundException (psrp-protocol.md §10.1).
    pub fn command_not_found(name: &str) -> Self {
        Self {
            error_id: "CommandNotFoundException".to_owned(),
            category: category::OBJECT_NOT_FOUND,
            target: name.to_owned(),
            ..Self::new(
                "System.Management.Automation.CommandNotFoundException",
                format!(
                    "The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable \
                     program. Check the spelling of the name, or if a path was included, verify that the path is \
                     correct and try again."
                ),
            )
        }
    }

    /// A parameter binding failure (unknown parameter, bad value, missing mandatory).
    pub fn binding(message: impl Into<String>) -> Self {
        Self {
            category: category::INVALID_ARGUMENT,
            ..Self::new(
                "System.Management.Automation.ParameterBindingException",
                message,
            )
        }
    }

    /// The exception's short name (`ManagementObjectNotFoundException`).
    pub fn short_name(&self) -> &str {
        self.class.rsplit('.').next().unwrap_or(&self.class)
    }

    /// Whether the error stops the pipeline whatever `-ErrorAction` says: PowerShell fails a
    /// pipeline whose command cannot be found or bound; Exchange's own cmdlet errors
    /// (not found, validation) were non-terminating (psrp-protocol.md §6.5).
    pub fn is_terminating(&self) -> bool {
        matches!(
            self.short_name(),
            "ParameterBindingException" | "CommandNotFoundException"
        )
    }

    /// The REST error body (exo-rest-adminapi.md §9.2): `details[0].message` is
    /// `ErrorId|Class|Message`, `details[0].code` the category number or `"Client"`.
    pub fn rest_body(&self) -> Json {
        let code = if self.category == category::NOT_SPECIFIED {
            Json::from("Client")
        } else {
            Json::from(self.category.to_string())
        };
        serde_json::json!({
            "error": {
                "code": "BadRequest",
                "message": "Invalid Operation",
                "details": [{
                    "code": code,
                    "target": self.target,
                    "message": format!("{}|{}|{}", self.error_id, self.class, self.message),
                }],
                "innererror": {
                    "message": "Invalid Operation",
                    "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                    "stacktrace": "",
                    "internalexception": {
                        "message": self.message,
                        "type": self.class,
                        "stacktrace": "",
                    },
                },
                "adminapi.warnings@odata.type": "#Collection(String)",
                "@adminapi.warnings": [],
            }
        })
    }
}
