//! Command metadata: which cmdlets exist, their parameters, and what they return.
//!
//! Three consumers need the same facts: the binder (switch or valued, positions, aliases —
//! without them `-X $true` and `-Force $x` are indistinguishable on the wire), the
//! GET_COMMAND_METADATA reply (Import-PSSession builds its proxy functions from it), and the
//! JSON → CLIXML conversion (the REST API sends no type names, so the output type of each
//! `Get-*` cmdlet comes from here, giving scripts the `Deserialized.Microsoft.Exchange…`
//! names RPS gave them).
//!
//! Exchange publishes only the *names* of the cmdlets a caller may run
//! (`EXOModuleFile`'s `exportedCmdlets`, reference exo-rest-adminapi.md §10; whether it also
//! carries parameter metadata is unverified), so the parameters come from the built-in table
//! below, written from Microsoft's published cmdlet reference, and the per-tenant list is
//! the built-in table trimmed to what Exchange exports ([`Catalog::restricted_to`]). A cmdlet
//! Exchange exports that the table does not know is still offered, with only an `Identity`
//! parameter at position 0 plus permissive binding of any other named parameter.
//!
//! The table is compact on purpose: one line per cmdlet, parameter tokens `Name`, `Name@0`
//! (position), `Name!` (switch), `Name?` (Boolean), `Name=Alias1|Alias2`.

use std::sync::Arc;

use crate::remoting::executor::{CommandMetadata, MetadataQuery, ParameterMetadata};
use crate::remoting::wildcard::WildcardPattern;

/// Where a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An Exchange cmdlet: one InvokeCommand per invocation.
    Exchange,
    /// A command the restricted endpoint always had (`Get-FormatData`, `Select-Object`,
    /// `Measure-Object`, …), run in place by the engine in `remoting::local`.
    Local,
}

/// One command of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Name, parameters, ShouldProcess.
    pub metadata: CommandMetadata,
    /// Exchange or local.
    pub kind: Kind,
    /// Output type hierarchy (without `Deserialized.`), most derived first; empty when the
    /// cmdlet returns nothing or its type is unknown.
    pub output_types: Vec<String>,
    /// True when the cmdlet is in the built-in table (false: exported by Exchange only, so
    /// unknown named parameters are passed through rather than refused).
    pub known: bool,
}

impl Entry {
    /// Whether the command has an `Identity` parameter (pipeline input binds to it).
    pub fn takes_identity(&self) -> bool {
        self.metadata
            .parameters
            .iter()
            .any(|p| p.name == "Identity")
    }
}

/// The module name GET_COMMAND_METADATA reports (Import-PSSession's temporary module).
pub const NAMESPACE: &str = "tmp_exo";

const MAILBOX_TYPES: &[&str] = &[
    "Microsoft.Exchange.Data.Directory.Management.Mailbox",
    "Microsoft.Exchange.Data.Directory.Management.MailEnabledOrgPerson",
    "Microsoft.Exchange.Data.Directory.Management.MailEnabledRecipient",
    "Microsoft.Exchange.Data.Directory.ADPresentationObject",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
];
const RECIPIENT_TYPES: &[&str] = &[
    "Microsoft.Exchange.Data.Directory.Management.ReducedRecipient",
    "Microsoft.Exchange.Data.Directory.ADPresentationObject",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
];
const ORG_CONFIG_TYPES: &[&str] = &[
    "Microsoft.Exchange.Data.Directory.Management.OrganizationConfig",
    "Microsoft.Exchange.Data.Directory.Management.OrganizationConfigPresentationObject",
    "Microsoft.Exchange.Data.Directory.ADPresentationObject",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
];
const ACCEPTED_DOMAIN_TYPES: &[&str] = &[
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.AcceptedDomain",
    "Microsoft.Exchange.Data.Directory.ADConfigurationObject",
    "Microsoft.Exchange.Data.Directory.ADObject",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
];

fn presentation(t: &str) -> Vec<String> {
    vec![
        t.to_owned(),
        "Microsoft.Exchange.Data.Directory.ADPresentationObject".into(),
        "Microsoft.Exchange.Data.ConfigurableObject".into(),
        "System.Object".into(),
    ]
}

const IDENTITY_FILTERS: &str = "Identity@0 ResultSize Filter Anr OrganizationalUnit SortBy \
    RecipientTypeDetails";

/// (name, parameter tokens, output type; "" none, "mailbox"/"recipient"/… a table above or a
/// full type name).
const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "Get-Mailbox",
        "Identity@0 ResultSize Filter Anr OrganizationalUnit SortBy RecipientTypeDetails \
         Properties Archive! GroupMailbox! InactiveMailboxOnly! IncludeInactiveMailbox! \
         Migration! PublicFolder! SoftDeletedMailbox! MailboxPlan",
        "mailbox",
    ),
    (
        "Set-Mailbox",
        "Identity@0 Alias DisplayName Name CustomAttribute1 CustomAttribute2 CustomAttribute3 \
         CustomAttribute4 CustomAttribute5 CustomAttribute6 CustomAttribute7 CustomAttribute8 \
         CustomAttribute9 CustomAttribute10 CustomAttribute11 CustomAttribute12 CustomAttribute13 \
         CustomAttribute14 CustomAttribute15 EmailAddresses ExtensionCustomAttribute1 \
         ForwardingAddress ForwardingSmtpAddress DeliverToMailboxAndForward? \
         HiddenFromAddressListsEnabled? LitigationHoldEnabled? LitigationHoldDuration \
         ProhibitSendQuota ProhibitSendReceiveQuota IssueWarningQuota RetainDeletedItemsFor \
         MaxSendSize MaxReceiveSize Languages GrantSendOnBehalfTo AuditEnabled? Type Office \
         WindowsEmailAddress PrimarySmtpAddress MessageCopyForSentAsEnabled? Force! \
         RemoveDelayHoldApplied! ApplyMandatoryProperties!",
        "",
    ),
    (
        "Enable-Mailbox",
        "Identity@0 Archive! AutoExpandingArchive!",
        "mailbox",
    ),
    (
        "Disable-Mailbox",
        "Identity@0 Archive! PermanentlyDisable!",
        "",
    ),
    ("Get-Recipient", IDENTITY_FILTERS, "recipient"),
    (
        "Get-User",
        IDENTITY_FILTERS,
        "Microsoft.Exchange.Data.Directory.Management.User",
    ),
    (
        "Set-User",
        "Identity@0 City Company Department DisplayName Office Phone Title Manager",
        "",
    ),
    (
        "Get-MailUser",
        IDENTITY_FILTERS,
        "Microsoft.Exchange.Data.Directory.Management.MailUser",
    ),
    (
        "Get-MailContact",
        IDENTITY_FILTERS,
        "Microsoft.Exchange.Data.Directory.Management.MailContact",
    ),
    (
        "New-MailContact",
        "Name@0 ExternalEmailAddress DisplayName Alias FirstName LastName",
        "Microsoft.Exchange.Data.Directory.Management.MailContact",
    ),
    ("Remove-MailContact", "Identity@0", ""),
    (
        "Get-CASMailbox",
        IDENTITY_FILTERS,
        "Microsoft.Exchange.Data.Directory.Management.CASMailbox",
    ),
    (
        "Set-CASMailbox",
        "Identity@0 ActiveSyncEnabled? OWAEnabled? PopEnabled? ImapEnabled? MAPIEnabled? \
         EwsEnabled? SmtpClientAuthenticationDisabled?",
        "",
    ),
    (
        "Get-MailboxStatistics",
        "Identity@0 Archive! IncludeMoveHistory! IncludeMoveReport! IncludeSoftDeletedRecipients!",
        "Microsoft.Exchange.Management.MapiTasks.Presentation.MailboxStatistics",
    ),
    (
        "Get-MailboxFolderStatistics",
        "Identity@0 FolderScope Archive! IncludeOldestAndNewestItems! ResultSize",
        "Microsoft.Exchange.Management.Tasks.MailboxFolderConfiguration",
    ),
    (
        "Get-MailboxPermission",
        "Identity@0 User Owner! ResultSize",
        "Microsoft.Exchange.Management.RecipientTasks.MailboxAcePresentationObject",
    ),
    (
        "Add-MailboxPermission",
        "Identity@0 User AccessRights InheritanceType AutoMapping? Deny! Owner",
        "Microsoft.Exchange.Management.RecipientTasks.MailboxAcePresentationObject",
    ),
    (
        "Remove-MailboxPermission",
        "Identity@0 User AccessRights InheritanceType Deny! ResetDefault!",
        "",
    ),
    (
        "Get-RecipientPermission",
        "Identity@0 Trustee AccessRights ResultSize",
        "Microsoft.Exchange.Management.RecipientTasks.RecipientPermission",
    ),
    (
        "Add-RecipientPermission",
        "Identity@0 Trustee AccessRights",
        "Microsoft.Exchange.Management.RecipientTasks.RecipientPermission",
    ),
    (
        "Remove-RecipientPermission",
        "Identity@0 Trustee AccessRights",
        "",
    ),
    (
        "Get-MailboxFolderPermission",
        "Identity@0 User",
        "Microsoft.Exchange.Management.StoreTasks.MailboxFolderPermission",
    ),
    (
        "Add-MailboxFolderPermission",
        "Identity@0 User AccessRights SharingPermissionFlags SendNotificationToUser?",
        "Microsoft.Exchange.Management.StoreTasks.MailboxFolderPermission",
    ),
    (
        "Set-MailboxFolderPermission",
        "Identity@0 User AccessRights SharingPermissionFlags",
        "",
    ),
    (
        "Remove-MailboxFolderPermission",
        "Identity@0 User Force!",
        "",
    ),
    (
        "Get-MailboxAutoReplyConfiguration",
        "Identity@0",
        "Microsoft.Exchange.InfoWorker.Common.OOF.MailboxAutoReplyConfiguration",
    ),
    (
        "Set-MailboxAutoReplyConfiguration",
        "Identity@0 AutoReplyState InternalMessage ExternalMessage ExternalAudience StartTime EndTime",
        "",
    ),
    (
        "Get-DistributionGroup",
        IDENTITY_FILTERS,
        "Microsoft.Exchange.Data.Directory.Management.DistributionGroup",
    ),
    (
        "New-DistributionGroup",
        "Name@0 DisplayName Alias PrimarySmtpAddress Members ManagedBy Type Notes",
        "Microsoft.Exchange.Data.Directory.Management.DistributionGroup",
    ),
    (
        "Set-DistributionGroup",
        "Identity@0 DisplayName ManagedBy HiddenFromAddressListsEnabled? RequireSenderAuthenticationEnabled? EmailAddresses BypassSecurityGroupManagerCheck!",
        "",
    ),
    (
        "Remove-DistributionGroup",
        "Identity@0 BypassSecurityGroupManagerCheck!",
        "",
    ),
    (
        "Get-DistributionGroupMember",
        "Identity@0 ResultSize",
        "recipient",
    ),
    (
        "Add-DistributionGroupMember",
        "Identity@0 Member BypassSecurityGroupManagerCheck!",
        "",
    ),
    (
        "Remove-DistributionGroupMember",
        "Identity@0 Member BypassSecurityGroupManagerCheck!",
        "",
    ),
    (
        "Get-UnifiedGroup",
        "Identity@0 ResultSize Filter Anr IncludeAllProperties! IncludeSoftDeletedGroups!",
        "Microsoft.Exchange.Data.Directory.Management.UnifiedGroup",
    ),
    ("Get-OrganizationConfig", "Identity@0", "orgconfig"),
    (
        "Set-OrganizationConfig",
        "AuditDisabled? OAuth2ClientProfileEnabled? CustomerLockboxEnabled? \
         SmtpActionableMessagesEnabled? FocusedInboxOn? DefaultPublicFolderAgeLimit",
        "",
    ),
    (
        "Get-AcceptedDomain",
        "Identity@0 ResultSize",
        "accepteddomain",
    ),
    (
        "Get-RetentionPolicy",
        "Identity@0",
        "Microsoft.Exchange.Data.Directory.SystemConfiguration.RetentionPolicy",
    ),
    (
        "Get-TransportRule",
        "Identity@0 State ResultSize",
        "Microsoft.Exchange.MessagingPolicies.Rules.Tasks.Rule",
    ),
    (
        "Get-InboxRule",
        "Identity@0 Mailbox IncludeHidden! SweepRules!",
        "Microsoft.Exchange.Management.Common.InboxRule",
    ),
    (
        "Get-MobileDevice",
        "Identity@0 Mailbox ResultSize ActiveSync! OWAforDevices!",
        "Microsoft.Exchange.Data.Directory.SystemConfiguration.MobileDevice",
    ),
    (
        "Get-MessageTrace",
        "MessageTraceId RecipientAddress SenderAddress StartDate EndDate Status PageSize Page",
        "Microsoft.Exchange.Management.FfoReporting.MessageTrace",
    ),
    (
        "Get-RoleGroup",
        "Identity@0 ResultSize Filter",
        "Microsoft.Exchange.Data.Directory.Management.RoleGroup",
    ),
    ("Get-RoleGroupMember", "Identity@0 ResultSize", "recipient"),
];

/// Security & Compliance's common cmdlets (`/compliance/powershell-liveid/`), written from
/// Microsoft's cmdlet reference; same token syntax as [`BUILTIN`]. The endpoint's own list
/// (EXOModuleFile on the regional host) trims and extends it per tenant like Exchange's.
const COMPLIANCE_BUILTIN: &[(&str, &str, &str)] = &[
    (
        "Get-RetentionCompliancePolicy",
        "Identity@0 DistributionDetail! ErrorPolicyOnly! ExcludeTeamsPolicy! IncludeTestModeResults! \
         RetryDistribution! TeamsPolicyOnly! PriorityCleanup!",
        "Microsoft.Office.CompliancePolicy.Tasks.PsRetentionCompliancePolicy",
    ),
    (
        "New-RetentionCompliancePolicy",
        "Name@0 Comment Enabled? ExchangeLocation ExchangeLocationException SharePointLocation \
         SharePointLocationException OneDriveLocation OneDriveLocationException ModernGroupLocation \
         PublicFolderLocation SkypeLocation TeamsChannelLocation TeamsChatLocation RestrictiveRetention? \
         Applications Force!",
        "Microsoft.Office.CompliancePolicy.Tasks.PsRetentionCompliancePolicy",
    ),
    (
        "Set-RetentionCompliancePolicy",
        "Identity@0 Comment Enabled? AddExchangeLocation RemoveExchangeLocation AddSharePointLocation \
         RemoveSharePointLocation AddOneDriveLocation RemoveOneDriveLocation AddModernGroupLocation \
         RemoveModernGroupLocation RestrictiveRetention? RetryDistribution! Force!",
        "",
    ),
    (
        "Remove-RetentionCompliancePolicy",
        "Identity@0 ForceDeletion! Force!",
        "",
    ),
    (
        "Get-RetentionComplianceRule",
        "Identity@0 Policy IncludeExecutionRuleGuids? IncludeExecutionRuleInformation?",
        "Microsoft.Office.CompliancePolicy.Tasks.PsRetentionComplianceRule",
    ),
    (
        "New-RetentionComplianceRule",
        "Name@0 Policy Comment RetentionDuration RetentionComplianceAction ExpirationDateOption \
         RetentionDurationDisplayHint ContentMatchQuery ApplyComplianceTag PublishComplianceTag \
         ExcludedItemClasses Force!",
        "Microsoft.Office.CompliancePolicy.Tasks.PsRetentionComplianceRule",
    ),
    (
        "Set-RetentionComplianceRule",
        "Identity@0 Comment RetentionDuration RetentionComplianceAction ExpirationDateOption \
         ContentMatchQuery ApplyComplianceTag PublishComplianceTag Force!",
        "",
    ),
    ("Remove-RetentionComplianceRule", "Identity@0 Force!", ""),
    (
        "Get-DlpCompliancePolicy",
        "Identity@0 DisplayName DistributionDetail! ForceValidate? IncludeExtendedProperties? \
         IncludeRulesMetadata? IsSimulationPolicy? SummaryDistributionDetail!",
        "Microsoft.Office.CompliancePolicy.Tasks.PsDlpCompliancePolicy",
    ),
    (
        "Get-DlpComplianceRule",
        "Identity@0 Policy IncludeExecutionRuleGuids? IncludeExecutionRuleInformation?",
        "Microsoft.Office.CompliancePolicy.Tasks.PsDlpComplianceRule",
    ),
    (
        "Get-Label",
        "Identity@0 IncludeDetailedLabelActions? SkipValidations!",
        "Microsoft.Office.CompliancePolicy.Tasks.PsLabel",
    ),
    (
        "Get-LabelPolicy",
        "Identity@0 ForceValidate? IncludeTestModeResults?",
        "Microsoft.Office.CompliancePolicy.Tasks.PsLabelPolicy",
    ),
    (
        "Get-ComplianceTag",
        "Identity@0 IncludingLabelState!",
        "Microsoft.Office.CompliancePolicy.Tasks.PsComplianceTag",
    ),
    (
        "Get-RoleGroup",
        "Identity@0 ResultSize Filter ShowPartnerLinked!",
        "Microsoft.Exchange.Data.Directory.Management.RoleGroup",
    ),
    ("Get-RoleGroupMember", "Identity@0 ResultSize", "recipient"),
    (
        "Add-RoleGroupMember",
        "Identity@0 Member BypassSecurityGroupManagerCheck!",
        "",
    ),
    (
        "Get-ComplianceCase",
        "Identity@0 CaseType RecentOnly!",
        "Microsoft.Office.ComplianceCase.Tasks.PsComplianceCase",
    ),
    (
        "Get-ComplianceSearch",
        "Identity@0 Case ResultSize",
        "Microsoft.Office.ComplianceSearch.Tasks.PsComplianceSearch",
    ),
    (
        "New-ComplianceSearch",
        "Name@0 Case ContentMatchQuery Description ExchangeLocation ExchangeLocationExclusion \
         SharePointLocation PublicFolderLocation AllowNotFoundExchangeLocationsEnabled? Language Force!",
        "",
    ),
    (
        "Start-ComplianceSearch",
        "Identity@0 RetryOnError! Force!",
        "",
    ),
    (
        "Get-ComplianceSearchAction",
        "Identity@0 Case Details! IncludeCredential! ResultSize",
        "",
    ),
    (
        "New-ComplianceSearchAction",
        "SearchName@0 Purge! PurgeType Export! Preview! Report! Format Scope Force!",
        "",
    ),
    (
        "Get-CaseHoldPolicy",
        "Identity@0 Case DistributionDetail!",
        "",
    ),
    (
        "New-CaseHoldPolicy",
        "Name@0 Case Comment Enabled? ExchangeLocation SharePointLocation PublicFolderLocation Force!",
        "",
    ),
    (
        "Set-CaseHoldPolicy",
        "Identity@0 Comment Enabled? AddExchangeLocation RemoveExchangeLocation Force!",
        "",
    ),
    ("Invoke-HoldRemovalAction", "Identity@0 Action Force!", ""),
    (
        "Invoke-ComplianceSecurityFilterAction",
        "Action@0 FilterName Force!",
        "",
    ),
];

/// S&C cmdlets that do not run with an app-only token (scc-rest-adminapi.md §1, §5), with
/// the reason: refused before anything is sent, so the script sees why and what to do
/// instead rather than an obscure upstream failure.
const COMPLIANCE_APP_ONLY_UNSUPPORTED: &[&str] = &[
    "New-ComplianceSearch",
    "Start-ComplianceSearch",
    "Get-ComplianceSearchAction",
    "New-ComplianceSearchAction",
    "Remove-ComplianceSearchAction",
    "Invoke-HoldRemovalAction",
    "Invoke-ComplianceSecurityFilterAction",
    "Invoke-ComplianceSearchActionStep",
    "Get-CaseHoldPolicy",
    "New-CaseHoldPolicy",
    "Set-CaseHoldPolicy",
    "Remove-CaseHoldPolicy",
];

/// The S&C cmdlets refused up front (README lists exactly these; a test compares).
pub fn compliance_refused_cmdlets() -> &'static [&'static str] {
    COMPLIANCE_APP_ONLY_UNSUPPORTED
}

/// Why `cmdlet` cannot run on the S&C endpoint with the proxy's app-only token, and what to
/// do instead; None when it may be sent.
pub fn compliance_refusal(cmdlet: &str) -> Option<String> {
    let name = COMPLIANCE_APP_ONLY_UNSUPPORTED
        .iter()
        .find(|c| c.eq_ignore_ascii_case(cmdlet))?;
    Some(format!(
        "{name} is an eDiscovery cmdlet that Security & Compliance does not run with an app-only \
         token (it needs a delegated \"search-only\" session: Connect-IPPSSession \
         -EnableSearchOnlySession, signed in as a user with the eDiscovery Manager role), so the \
         proxy did not send it. Run it interactively with Connect-IPPSSession \
         -EnableSearchOnlySession, or use the Microsoft Graph eDiscovery API \
         (/security/cases/ediscoveryCases) from an app with eDiscovery.ReadWrite.All."
    ))
}

/// A restricted built-in (reference psrp-protocol.md §10.1), run by the pipeline runner with
/// the engine in `remoting::local` and the parameters declared there (one definition for
/// both modes).
///
/// # Panics
/// When `name` is not one of `remoting::local`'s commands (a programming error).
pub fn local_entry(name: &str) -> Entry {
    let mut metadata = crate::remoting::local::metadata(name)
        .unwrap_or_else(|| panic!("{name} is a local command"));
    metadata.namespace = NAMESPACE.into();
    Entry {
        metadata,
        kind: Kind::Local,
        output_types: Vec::new(),
        known: true,
    }
}

fn output_types(spec: &str) -> Vec<String> {
    let table = match spec {
        "" => return Vec::new(),
        "mailbox" => MAILBOX_TYPES,
        "recipient" => RECIPIENT_TYPES,
        "orgconfig" => ORG_CONFIG_TYPES,
        "accepteddomain" => ACCEPTED_DOMAIN_TYPES,
        other => return presentation(other),
    };
    table.iter().map(|t| (*t).to_owned()).collect()
}

fn identity_type(cmdlet: &str) -> String {
    let noun = cmdlet.split_once('-').map_or(cmdlet, |(_, n)| n);
    let base = match noun {
        "Mailbox"
        | "MailboxStatistics"
        | "MailboxPermission"
        | "CASMailbox"
        | "MailboxAutoReplyConfiguration" => "Mailbox",
        "MailboxFolderPermission" | "MailboxFolderStatistics" => "MailboxFolder",
        "DistributionGroupMember" | "DistributionGroup" => "DistributionGroup",
        other => other,
    };
    format!("Microsoft.Exchange.Configuration.Tasks.{base}IdParameter")
}

fn parse_parameters(cmdlet: &str, tokens: &str) -> Vec<ParameterMetadata> {
    tokens
        .split_whitespace()
        .map(|tok| {
            let (tok, aliases) = match tok.split_once('=') {
                Some((t, a)) => (t, a.split('|').map(str::to_owned).collect()),
                None => (tok, Vec::new()),
            };
            let (tok, position) = match tok.split_once('@') {
                Some((t, p)) => (t, p.parse().ok()),
                None => (tok, None),
            };
            let (name, kind) = match tok.chars().last() {
                Some('!') => (&tok[..tok.len() - 1], '!'),
                Some('?') => (&tok[..tok.len() - 1], '?'),
                _ => (tok, ' '),
            };
            let parameter_type = match (kind, name) {
                ('!', _) => "System.Management.Automation.SwitchParameter".to_owned(),
                ('?', _) => "System.Boolean".to_owned(),
                (_, "Identity") => identity_type(cmdlet),
                (_, "ResultSize") => {
                    "Microsoft.Exchange.Data.Unlimited`1[System.UInt32]".to_owned()
                }
                (_, "EmailAddresses") => {
                    "Microsoft.Exchange.Data.ProxyAddressCollection".to_owned()
                }
                (_, "StartDate" | "EndDate" | "StartTime" | "EndTime") => {
                    "System.DateTime".to_owned()
                }
                (_, "First" | "Last" | "Skip" | "PageSize" | "Page") => "System.Int32".to_owned(),
                (_, "Property" | "TypeName" | "AccessRights" | "Members" | "Languages") => {
                    "System.String[]".to_owned()
                }
                _ => "System.String".to_owned(),
            };
            ParameterMetadata {
                name: name.to_owned(),
                parameter_type,
                aliases,
                is_switch: kind == '!',
                position,
            }
        })
        .collect()
}

fn supports_should_process(name: &str) -> bool {
    ["Set-", "New-", "Remove-", "Enable-", "Disable-", "Add-"]
        .iter()
        .any(|v| name.len() > v.len() && name[..v.len()].eq_ignore_ascii_case(v))
}

fn entry(name: &str, tokens: &str, output: &str, kind: Kind, known: bool) -> Entry {
    Entry {
        metadata: CommandMetadata {
            name: name.to_owned(),
            namespace: NAMESPACE.into(),
            command_type: 8,
            resolved_command_name: None,
            parameters: parse_parameters(name, tokens),
            supports_should_process: kind == Kind::Exchange && supports_should_process(name),
        },
        kind,
        output_types: output_types(output),
        known,
    }
}

/// A set of commands (built-in, or trimmed to what a tenant's Exchange exports).
#[derive(Debug, Clone)]
pub struct Catalog {
    entries: Arc<Vec<Entry>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Catalog {
    /// The built-in table: common Exchange Online cmdlets plus the restricted built-ins.
    pub fn builtin() -> Self {
        let mut entries: Vec<Entry> = BUILTIN
            .iter()
            .map(|(n, t, o)| entry(n, t, o, Kind::Exchange, true))
            .collect();
        entries.extend(crate::remoting::local::names().map(local_entry));
        Self {
            entries: Arc::new(entries),
        }
    }

    /// The built-in table of the Security & Compliance endpoint plus the restricted
    /// built-ins.
    pub fn compliance() -> Self {
        let mut entries: Vec<Entry> = COMPLIANCE_BUILTIN
            .iter()
            .map(|(n, t, o)| entry(n, t, o, Kind::Exchange, true))
            .collect();
        entries.extend(crate::remoting::local::names().map(local_entry));
        Self {
            entries: Arc::new(entries),
        }
    }

    /// The built-in table for `audience`'s endpoint.
    pub fn builtin_for(audience: crate::token::Audience) -> Self {
        match audience {
            crate::token::Audience::Exchange => Self::builtin(),
            crate::token::Audience::Compliance => Self::compliance(),
        }
    }

    /// This catalog trimmed to the cmdlets Exchange exports for a caller (`exportedCmdlets`),
    /// adding exported cmdlets the table does not know (Identity at position 0 only). Local
    /// built-ins are always kept.
    pub fn restricted_to(&self, exported: &[String]) -> Self {
        let mut entries: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| {
                e.kind == Kind::Local
                    // Refused with the reason rather than "not recognized".
                    || compliance_refusal(&e.metadata.name).is_some()
                    || exported
                        .iter()
                        .any(|x| x.eq_ignore_ascii_case(&e.metadata.name))
            })
            .cloned()
            .collect();
        for name in exported {
            let name = name.trim();
            if name.is_empty()
                || entries
                    .iter()
                    .any(|e| e.metadata.name.eq_ignore_ascii_case(name))
            {
                continue;
            }
            let ident = if name.starts_with("Get-") || supports_should_process(name) {
                "Identity@0"
            } else {
                ""
            };
            entries.push(entry(name, ident, "", Kind::Exchange, false));
        }
        Self {
            entries: Arc::new(entries),
        }
    }

    /// The command called `name` (case-insensitive).
    pub fn lookup(&self, name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.metadata.name.eq_ignore_ascii_case(name))
    }

    /// Every command.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// GET_COMMAND_METADATA: the commands matching the query's wildcard names and
    /// CommandTypes (all ours are cmdlets, flag 8; a namespace filter must name
    /// [`NAMESPACE`]).
    pub fn query(&self, query: &MetadataQuery) -> Vec<CommandMetadata> {
        if query.command_types & 8 == 0 {
            return Vec::new();
        }
        // An invalid pattern matches nothing here; the endpoint reports it to the client.
        let compile = |patterns: &[String]| -> Vec<WildcardPattern> {
            patterns
                .iter()
                .filter_map(|p| WildcardPattern::new(p).ok())
                .collect()
        };
        if let Some(ns) = &query.namespace
            && !ns.is_empty()
            && !compile(ns).iter().any(|n| n.is_match(NAMESPACE))
        {
            return Vec::new();
        }
        let patterns = if query.names.is_empty() {
            compile(&["*".to_owned()])
        } else {
            compile(&query.names)
        };
        self.entries
            .iter()
            .filter(|e| patterns.iter().any(|p| p.is_match(&e.metadata.name)))
            .map(|e| e.metadata.clone())
            .collect()
    }
}

/// PowerShell wildcard match: [`WildcardPattern`] compiled for one text (an invalid pattern
/// matches nothing).
///
/// Kept only for the sandbox's simulator, which imports it until its rewrite gives it its own
/// matcher; the proxy's code uses [`WildcardPattern`] directly.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    WildcardPattern::new(pattern).is_ok_and(|p| p.is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_identity_at_zero_switches_and_should_process() {
        let c = Catalog::builtin();
        let gm = c.lookup("get-mailbox").unwrap();
        let id = gm
            .metadata
            .parameters
            .iter()
            .find(|p| p.name == "Identity")
            .unwrap();
        assert_eq!(id.position, Some(0));
        assert_eq!(
            id.parameter_type,
            "Microsoft.Exchange.Configuration.Tasks.MailboxIdParameter"
        );
        assert!(
            gm.metadata
                .parameters
                .iter()
                .any(|p| p.name == "Archive" && p.is_switch)
        );
        assert!(!gm.metadata.supports_should_process);
        assert_eq!(
            gm.output_types[0],
            "Microsoft.Exchange.Data.Directory.Management.Mailbox"
        );
        let sm = c.lookup("Set-Mailbox").unwrap();
        assert!(sm.metadata.supports_should_process);
        let hidden = sm
            .metadata
            .parameters
            .iter()
            .find(|p| p.name == "HiddenFromAddressListsEnabled")
            .unwrap();
        assert!(!hidden.is_switch);
        assert_eq!(hidden.parameter_type, "System.Boolean");
        assert_eq!(c.lookup("Select-Object").unwrap().kind, Kind::Local);
    }

    #[test]
    fn query_matches_wildcards_and_types() {
        let c = Catalog::builtin();
        let q = |names: &[&str], types| MetadataQuery {
            names: names.iter().map(|s| (*s).into()).collect(),
            command_types: types,
            namespace: None,
        };
        let all = c.query(&q(&["*"], 511));
        assert_eq!(all.len(), c.entries().len());
        let gets = c.query(&q(&["get-mailbox*"], 399));
        let names: Vec<_> = gets.iter().map(|m| m.name.as_str()).collect();
        assert!(
            names.contains(&"Get-Mailbox") && names.contains(&"Get-MailboxStatistics"),
            "{names:?}"
        );
        assert!(!names.contains(&"Set-Mailbox"));
        assert!(c.query(&q(&["*"], 1)).is_empty(), "aliases only");
        assert_eq!(c.query(&q(&["Get-Recipient", "Get-User"], 8)).len(), 2);
    }

    #[test]
    fn restricted_to_exported_keeps_known_adds_unknown_keeps_local() {
        let c = Catalog::builtin().restricted_to(&["Get-Mailbox".into(), "Get-Frobnicator".into()]);
        assert!(c.lookup("Get-Mailbox").unwrap().known);
        assert!(c.lookup("Set-Mailbox").is_none());
        let f = c.lookup("get-frobnicator").unwrap();
        assert!(!f.known);
        assert_eq!(f.metadata.parameters[0].position, Some(0));
        assert!(c.lookup("Get-FormatData").is_some());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "Get-Mailbox"));
        assert!(wildcard_match("get-*box", "Get-Mailbox"));
        assert!(wildcard_match("Get-Mailbo?", "Get-Mailbox"));
        assert!(wildcard_match("[gs]et-mailbox", "Set-Mailbox"));
        assert!(!wildcard_match("Get-M", "Get-Mailbox"));
    }
}
