//! Opening the runspace pool and answering runspace-count requests (§4–§5.3).

use super::error_record::error_record_object;
use super::{
    POWERSHELL_VERSION, PROTOCOL_VERSION, PS_VERSION, RecordError, SERIALIZATION_VERSION, body,
    required, version_at_least, wrong,
};
use crate::remoting::clixml::{Object, Value};
use crate::remoting::executor::ErrorRecord;

/// `System.Management.Automation.PSPrimitiveDictionary`.
const PRIMITIVE_DICTIONARY: [&str; 3] = [
    "System.Management.Automation.PSPrimitiveDictionary",
    "System.Collections.Hashtable",
    "System.Object",
];

/// SESSION_CAPABILITY, either side's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCapability {
    /// `protocolversion`, e.g. `2.3`.
    pub protocol_version: String,
    /// `PSVersion`, e.g. `2.0`.
    pub ps_version: String,
    /// `SerializationVersion`, e.g. `1.1.0.1`.
    pub serialization_version: String,
}

impl SessionCapability {
    /// This server's capability (2.3 / 2.0 / 1.1.0.1, like Windows).
    pub fn server() -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION.to_owned(),
            ps_version: PS_VERSION.to_owned(),
            serialization_version: SERIALIZATION_VERSION.to_owned(),
        }
    }

    /// Reads a client's SESSION_CAPABILITY (the `TimeZone` blob Windows adds is ignored).
    ///
    /// # Errors
    /// [`RecordError`] when `protocolversion` is missing or not a version.
    pub fn parse(value: &Value) -> Result<Self, RecordError> {
        const M: &str = "SESSION_CAPABILITY";
        let obj = body(M, value)?;
        let text = |member: &'static str, required_member: bool| -> Result<String, RecordError> {
            match obj.property(member) {
                Some(v) => v
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| wrong(M, member, "a Version", v)),
                None if required_member => Err(RecordError::Missing { message: M, member }),
                None => Ok(String::new()),
            }
        };
        Ok(Self {
            protocol_version: text("protocolversion", true)?,
            ps_version: text("PSVersion", false)?,
            serialization_version: text("SerializationVersion", false)?,
        })
    }

    /// Whether the peer speaks at least protocol `minimum` (e.g. `2.3` for INFORMATION_RECORD).
    pub fn protocol_at_least(&self, minimum: &str) -> bool {
        version_at_least(&self.protocol_version, minimum)
    }

    /// The message body.
    pub fn to_value(&self) -> Value {
        Object::default()
            .with_property(
                "protocolversion",
                Value::Version(self.protocol_version.clone()),
            )
            .with_property("PSVersion", Value::Version(self.ps_version.clone()))
            .with_property(
                "SerializationVersion",
                Value::Version(self.serialization_version.clone()),
            )
            .into_value()
    }
}

/// What the server needs from INIT_RUNSPACEPOOL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRunspacePool {
    /// `MinRunspaces`.
    pub min_runspaces: i32,
    /// `MaxRunspaces`.
    pub max_runspaces: i32,
}

impl InitRunspacePool {
    /// Reads INIT_RUNSPACEPOOL (HostInfo, ApartmentState, ApplicationArguments are ignored).
    /// Missing counts default to 1 (what every client sends).
    ///
    /// # Errors
    /// [`RecordError`] when the body is not an object or a count is not an integer.
    pub fn parse(value: &Value) -> Result<Self, RecordError> {
        const M: &str = "INIT_RUNSPACEPOOL";
        let obj = body(M, value)?;
        let count = |member: &'static str| match obj.property(member) {
            None => Ok(1),
            Some(v) => v.as_i32().ok_or_else(|| wrong(M, member, "an I32", v)),
        };
        Ok(Self {
            min_runspaces: count("MinRunspaces")?,
            max_runspaces: count("MaxRunspaces")?,
        })
    }
}

/// APPLICATION_PRIVATE_DATA: a `PSPrimitiveDictionary` with `PSVersionTable` (Windows
/// PowerShell 5.1, §4.3) and `ImplicitRemoting = @{ Hash = hash }` (Import-PSSession copies
/// it into generated modules; keep it stable).
pub fn application_private_data(implicit_remoting_hash: &str) -> Value {
    let version = |v: &str| Value::Version(v.to_owned());
    let compatible = Value::list(
        ["System.Version[]", "System.Array", "System.Object"],
        ["1.0", "2.0", "3.0", "4.0", "5.0", POWERSHELL_VERSION].map(version),
    );
    let version_table = Value::dictionary(
        PRIMITIVE_DICTIONARY,
        [
            ("PSVersion", version(POWERSHELL_VERSION)),
            ("PSEdition", Value::from("Desktop")),
            ("PSCompatibleVersions", compatible),
            ("CLRVersion", version("4.0.30319.42000")),
            ("BuildVersion", version("10.0.17763.6414")),
            ("WSManStackVersion", version("3.0")),
            ("PSRemotingProtocolVersion", version(PROTOCOL_VERSION)),
            ("SerializationVersion", version(SERIALIZATION_VERSION)),
        ],
    );
    let implicit = Value::dictionary(
        PRIMITIVE_DICTIONARY,
        [("Hash", Value::from(implicit_remoting_hash))],
    );
    let data = Value::dictionary(
        PRIMITIVE_DICTIONARY,
        [
            ("PSVersionTable", version_table),
            ("ImplicitRemoting", implicit),
        ],
    );
    Object::default()
        .with_property("ApplicationPrivateData", data)
        .into_value()
}

/// `RunspacePoolState` values (§5.1).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum RunspacePoolState {
    BeforeOpen = 0,
    Opening = 1,
    Opened = 2,
    Closed = 3,
    Closing = 4,
    Broken = 5,
    NegotiationSent = 6,
    NegotiationSucceeded = 7,
    Connecting = 8,
    Disconnected = 9,
}

/// RUNSPACEPOOL_STATE; `error` (for Broken) becomes `ExceptionAsErrorRecord`.
pub fn runspace_pool_state(state: RunspacePoolState, error: Option<&ErrorRecord>) -> Value {
    let mut obj = Object::default().with_property("RunspaceState", Value::I32(state as i32));
    if let Some(e) = error {
        obj.push_property(
            "ExceptionAsErrorRecord",
            error_record_object(e).into_value(),
        );
    }
    obj.into_value()
}

// ---------------------------------------------------------------------------------------
// Runspace counts (§5.3)
// ---------------------------------------------------------------------------------------

/// SET_MAX_RUNSPACES / SET_MIN_RUNSPACES / GET_AVAILABLE_RUNSPACES / RESET_RUNSPACE_STATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunspaceRequest {
    /// `ci`: the call id to echo.
    pub call_id: i64,
    /// `MaxRunspaces` or `MinRunspaces`, when present.
    pub count: Option<i32>,
}

impl RunspaceRequest {
    /// Reads any of the four runspace-count requests.
    ///
    /// # Errors
    /// [`RecordError`] when `ci` is missing or not an integer.
    pub fn parse(value: &Value) -> Result<Self, RecordError> {
        const M: &str = "runspace request";
        let obj = body(M, value)?;
        let ci = required(M, obj, "ci")?;
        let call_id = ci.as_i64().ok_or_else(|| wrong(M, "ci", "an I64", ci))?;
        let count = obj
            .property("MaxRunspaces")
            .or_else(|| obj.property("MinRunspaces"))
            .and_then(Value::as_i32);
        Ok(Self { call_id, count })
    }
}

/// RUNSPACE_AVAILABILITY answering SET_MAX/SET_MIN/RESET: `SetMinMaxRunspacesResponse` = `ok`.
pub fn runspace_availability(call_id: i64, ok: bool) -> Value {
    Object::default()
        .with_property("SetMinMaxRunspacesResponse", ok)
        .with_property("ci", Value::I64(call_id))
        .into_value()
}

/// RUNSPACE_AVAILABILITY answering GET_AVAILABLE_RUNSPACES: the count as I64.
pub fn runspace_availability_count(call_id: i64, available: i64) -> Value {
    Object::default()
        .with_property("SetMinMaxRunspacesResponse", Value::I64(available))
        .with_property("ci", Value::I64(call_id))
        .into_value()
}
