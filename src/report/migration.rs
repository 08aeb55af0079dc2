//! How each thing a script did through the proxy moves to ExchangeOnlineManagement v3: the
//! mapping data, in one place, with its sources, and the verdict rules.
//!
//! Sources (also in `docs/report.md`):
//! - Microsoft Learn, "About the Exchange Online PowerShell module": every cmdlet runs over
//!   REST since module 3.0.0 (Security & Compliance: 3.2.0), so after
//!   `Connect-ExchangeOnline -CertificateThumbprint … -AppId … -Organization …` the RPS
//!   cmdlets a script used exist as they were; `Invoke-Command` does not work in REST
//!   connections ("Workarounds for Invoke-Command scenarios in REST API connections").
//! - Microsoft Learn, the `Get-EXO*` cmdlet pages: the nine faster cmdlets below, their
//!   `-PropertySets`/`-Properties` model, their smaller default property set and their
//!   `-ResultSize` default of 1000.
//!
//! Verdicts (per local user, i.e. per script):
//! - *ready to move*: only the connection lines change (`New-PSSession` + `Import-PSSession`
//!   → `Connect-ExchangeOnline`); every command ran one cmdlet at a time.
//! - *move with these changes*: as above, plus the listed rewrites (pipelines sent with
//!   `Invoke-Command` run on the client instead; proxy-run helpers such as `Select-Object`
//!   inside `Invoke-Command` move to the client).
//! - *keep on the proxy for now*: its commands fail through the proxy too (more than
//!   [`FAILING_SHARE`] of them), or it ran cmdlets Microsoft does not support app-only; fix
//!   that first, then move.

/// A `Get-*` cmdlet with a faster `Get-EXO*` counterpart, and what bites when switching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExoAlternative {
    /// The RPS cmdlet.
    pub cmdlet: &'static str,
    /// The REST-optimised cmdlet of the module.
    pub exo: &'static str,
    /// The differences that break scripts.
    pub differences: &'static str,
}

const EXO_DIFFERENCES: &str = "returns a smaller default property set: name the properties \
     you read with -Properties or -PropertySets; -ResultSize defaults to 1000 (pass -ResultSize \
     Unlimited for all); -Filter takes OPATH strings only";

/// The faster `Get-EXO*` cmdlets (ExchangeOnlineManagement v3).
pub const EXO_ALTERNATIVES: &[ExoAlternative] = &[
    ExoAlternative {
        cmdlet: "Get-Mailbox",
        exo: "Get-EXOMailbox",
        differences: EXO_DIFFERENCES,
    },
    ExoAlternative {
        cmdlet: "Get-MailboxStatistics",
        exo: "Get-EXOMailboxStatistics",
        differences: "takes -Identity, -ExchangeGuid or -UserPrincipalName; -PropertySets for \
             the counts and sizes beyond the default set",
    },
    ExoAlternative {
        cmdlet: "Get-Recipient",
        exo: "Get-EXORecipient",
        differences: EXO_DIFFERENCES,
    },
    ExoAlternative {
        cmdlet: "Get-CASMailbox",
        exo: "Get-EXOCASMailbox",
        differences: EXO_DIFFERENCES,
    },
    ExoAlternative {
        cmdlet: "Get-MailboxPermission",
        exo: "Get-EXOMailboxPermission",
        differences: "needs -Identity (no tenant-wide listing without it); output property \
             names are the same",
    },
    ExoAlternative {
        cmdlet: "Get-RecipientPermission",
        exo: "Get-EXORecipientPermission",
        differences: "-ResultSize defaults to 1000",
    },
    ExoAlternative {
        cmdlet: "Get-MailboxFolderStatistics",
        exo: "Get-EXOMailboxFolderStatistics",
        differences: "-FolderScope and -IncludeOldestAndNewestItems as before; -ResultSize \
             defaults to 1000",
    },
    ExoAlternative {
        cmdlet: "Get-MailboxFolderPermission",
        exo: "Get-EXOMailboxFolderPermission",
        differences: "-Identity takes mailbox:\\folder as before",
    },
    ExoAlternative {
        cmdlet: "Get-MobileDeviceStatistics",
        exo: "Get-EXOMobileDeviceStatistics",
        differences: "-Mailbox or -Identity; -ActiveSync/-OWAforDevices filters as before",
    },
];

/// Cmdlets Microsoft does not support with app-only authentication (Security & Compliance
/// eDiscovery searches need a delegated, search-only session).
pub const NOT_APP_ONLY: &[&str] = &[
    "New-ComplianceSearch",
    "Start-ComplianceSearch",
    "New-ComplianceSearchAction",
    "Get-ComplianceSearchAction",
    "Remove-ComplianceSearchAction",
    "New-CaseHoldPolicy",
    "Set-CaseHoldPolicy",
    "New-CaseHoldRule",
    "Set-CaseHoldRule",
];

/// Cmdlets the proxy runs itself (they become client-side when the script moves).
pub const RUN_BY_THE_PROXY: &[&str] = &[
    "Select-Object",
    "Measure-Object",
    "Out-Default",
    "Out-Null",
    "Out-String",
    "Get-FormatData",
    "Get-Command",
    "Exit-PSSession",
];

/// Share of failed commands above which a script is kept on the proxy until fixed.
pub const FAILING_SHARE: f64 = 0.2;

/// The faster counterpart of `cmdlet`, if any (case-insensitive).
pub fn exo_alternative(cmdlet: &str) -> Option<&'static ExoAlternative> {
    EXO_ALTERNATIVES
        .iter()
        .find(|a| a.cmdlet.eq_ignore_ascii_case(cmdlet))
}

/// Whether Microsoft supports `cmdlet` app-only.
pub fn supported_app_only(cmdlet: &str) -> bool {
    !NOT_APP_ONLY.iter().any(|c| c.eq_ignore_ascii_case(cmdlet))
}

/// Whether the proxy runs `cmdlet` itself.
pub fn run_by_the_proxy(cmdlet: &str) -> bool {
    RUN_BY_THE_PROXY
        .iter()
        .any(|c| c.eq_ignore_ascii_case(cmdlet))
}

/// A script's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Only the connection lines change.
    Ready,
    /// The listed rewrites are needed.
    MoveWithChanges,
    /// Fix the listed problems first.
    Keep,
}

impl Verdict {
    /// As the report prints it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ready => "ready to move",
            Self::MoveWithChanges => "move with these changes",
            Self::Keep => "keep on the proxy for now",
        }
    }
}

/// The connection change every script needs (the proxy's lines → the module's).
pub const CONNECT_CHANGE: &str = "replace New-PSSession -ConnectionUri https://<proxy>/powershell-liveid/ -Credential … \
     and Import-PSSession with Connect-ExchangeOnline -CertificateThumbprint <thumbprint> -AppId <app id> \
     -Organization <tenant>.onmicrosoft.com (the same app registration the proxy uses)";

/// The change for pipelines sent with `Invoke-Command`.
pub const INVOKE_COMMAND_CHANGE: &str = "Invoke-Command does not work in REST connections: run \
     the pipeline's cmdlets directly (Get-X | Set-X runs on the client after Connect-ExchangeOnline)";

/// The change for proxy-run helpers inside `Invoke-Command`.
pub const LOCAL_HELPER_CHANGE: &str = "Select-Object/Measure-Object sent inside Invoke-Command \
     run on the client after the move: pipe to them locally";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_case_insensitive() {
        assert_eq!(
            exo_alternative("get-mailbox").unwrap().exo,
            "Get-EXOMailbox"
        );
        assert!(exo_alternative("Set-Mailbox").is_none());
        assert!(!supported_app_only("new-compliancesearch"));
        assert!(run_by_the_proxy("select-object"));
        assert_eq!(EXO_ALTERNATIVES.len(), 9);
    }
}
