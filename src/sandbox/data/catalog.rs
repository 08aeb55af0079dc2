//! The simulator's own cmdlet list: what simulated Exchange exports, which of those it really
//! runs, their parameters and their output types.
//!
//! Written from Microsoft's cmdlet reference and the object shapes of the references
//! (psrp-protocol.md §11.5, exo-rest-adminapi.md §7), independently of the bridge's catalog,
//! and deliberately smaller: the simulator serves a handful of cmdlets over its tenant data
//! and exports a few dozen more names (as EXOModuleFile's `exportedCmdlets` does) that it
//! answers with a warning instead of running. Unknown parameters of a simulated cmdlet fail
//! with PowerShell's binding error, as Exchange's did.

/// One parameter of a simulated cmdlet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Name as Exchange spells it.
    pub name: &'static str,
    /// A SwitchParameter (present or not; takes no value).
    pub switch: bool,
    /// Position for positional arguments (Identity is 0).
    pub position: Option<u32>,
    /// .NET type, display only (GET_COMMAND_METADATA).
    pub type_name: &'static str,
}

/// One cmdlet the simulator knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdlet {
    /// Canonical name.
    pub name: &'static str,
    /// Parameters (common parameters come on top, see [`COMMON`]).
    pub params: Vec<Param>,
    /// Output type hierarchy, most derived first (empty: no output).
    pub output: &'static [&'static str],
    /// False for names the simulator exports but does not run.
    pub simulated: bool,
}

impl Cmdlet {
    /// The parameter called `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// Verb `Set`, `New`, … : the cmdlet supports -WhatIf/-Confirm.
    pub fn changes_state(&self) -> bool {
        !self.name.starts_with("Get-")
    }
}

/// Common parameters every cmdlet accepts (PowerShell's `CommonParameters`, plus the
/// ShouldProcess pair).
pub const COMMON: &[&str] = &[
    "Verbose",
    "Debug",
    "ErrorAction",
    "WarningAction",
    "InformationAction",
    "ProgressAction",
    "ErrorVariable",
    "WarningVariable",
    "InformationVariable",
    "OutVariable",
    "OutBuffer",
    "PipelineVariable",
    "WhatIf",
    "Confirm",
];

/// `Get-Mailbox`'s objects (psrp-protocol.md §11.5).
pub const MAILBOX: &[&str] = &[
    "Microsoft.Exchange.Data.Directory.Management.Mailbox",
    "Microsoft.Exchange.Data.Directory.Management.MailEnabledOrgPerson",
    "Microsoft.Exchange.Data.Directory.Management.MailEnabledRecipient",
    "Microsoft.Exchange.Data.Directory.ADPresentationObject",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
];

const RECIPIENT: &[&str] = &[
    "Microsoft.Exchange.Data.Directory.Management.ReducedRecipient",
    "Microsoft.Exchange.Data.Directory.ADPresentationObject",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
];

const STATISTICS: &[&str] = &[
    "Microsoft.Exchange.Management.MapiTasks.Presentation.MailboxStatistics",
    "Microsoft.Exchange.Data.Directory.ADPresentationObject",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
];

const ORGANIZATION: &[&str] = &[
    "Microsoft.Exchange.Data.Directory.Management.OrganizationConfig",
    "Microsoft.Exchange.Data.Directory.Management.OrganizationConfigPresentationObject",
    "Microsoft.Exchange.Data.Directory.ADPresentationObject",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
];

const DOMAIN: &[&str] = &[
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.AcceptedDomain",
    "Microsoft.Exchange.Data.Directory.ADConfigurationObject",
    "Microsoft.Exchange.Data.Directory.ADObject",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
];

/// Exchange Online cmdlets the simulator exports by name only: it answers them with a
/// warning and no objects.
const EXPORTED_ONLY: &[&str] = &[
    "Add-DistributionGroupMember",
    "Add-MailboxFolderPermission",
    "Add-MailboxPermission",
    "Add-RecipientPermission",
    "Disable-Mailbox",
    "Enable-Mailbox",
    "Get-CASMailbox",
    "Get-DistributionGroup",
    "Get-DistributionGroupMember",
    "Get-InboxRule",
    "Get-MailContact",
    "Get-MailUser",
    "Get-MailboxAutoReplyConfiguration",
    "Get-MailboxFolderPermission",
    "Get-MailboxFolderStatistics",
    "Get-MailboxPermission",
    "Get-MessageTrace",
    "Get-MobileDevice",
    "Get-RecipientPermission",
    "Get-RetentionPolicy",
    "Get-RoleGroup",
    "Get-RoleGroupMember",
    "Get-TransportRule",
    "Get-UnifiedGroup",
    "Get-User",
    "New-DistributionGroup",
    "New-MailContact",
    "Remove-DistributionGroup",
    "Remove-DistributionGroupMember",
    "Remove-MailContact",
    "Remove-MailboxFolderPermission",
    "Remove-MailboxPermission",
    "Remove-RecipientPermission",
    "Set-CASMailbox",
    "Set-DistributionGroup",
    "Set-MailboxAutoReplyConfiguration",
    "Set-MailboxFolderPermission",
    "Set-User",
];

fn valued(name: &'static str) -> Param {
    let type_name = match name {
        "ResultSize" => "Microsoft.Exchange.Data.Unlimited`1[System.UInt32]",
        "EmailAddresses" => "Microsoft.Exchange.Data.ProxyAddressCollection",
        "Languages" | "RecipientTypeDetails" | "RecipientType" => "System.String[]",
        _ => "System.String",
    };
    Param {
        name,
        switch: false,
        position: None,
        type_name,
    }
}

fn boolean(name: &'static str) -> Param {
    Param {
        type_name: "System.Boolean",
        ..valued(name)
    }
}

fn switch(name: &'static str) -> Param {
    Param {
        name,
        switch: true,
        position: None,
        type_name: "System.Management.Automation.SwitchParameter",
    }
}

fn identity() -> Param {
    Param {
        position: Some(0),
        ..valued("Identity")
    }
}

const CUSTOM_ATTRIBUTES: [&str; 15] = [
    "CustomAttribute1",
    "CustomAttribute2",
    "CustomAttribute3",
    "CustomAttribute4",
    "CustomAttribute5",
    "CustomAttribute6",
    "CustomAttribute7",
    "CustomAttribute8",
    "CustomAttribute9",
    "CustomAttribute10",
    "CustomAttribute11",
    "CustomAttribute12",
    "CustomAttribute13",
    "CustomAttribute14",
    "CustomAttribute15",
];

fn simulated() -> Vec<Cmdlet> {
    let recipient_filters = || {
        vec![
            identity(),
            valued("Anr"),
            valued("Filter"),
            valued("OrganizationalUnit"),
            valued("RecipientTypeDetails"),
            valued("ResultSize"),
            valued("SortBy"),
            valued("Properties"),
        ]
    };
    let mut get_mailbox = recipient_filters();
    get_mailbox.extend([
        switch("Archive"),
        switch("GroupMailbox"),
        switch("InactiveMailboxOnly"),
        switch("IncludeInactiveMailbox"),
        valued("MailboxPlan"),
        switch("Migration"),
        switch("PublicFolder"),
        switch("SoftDeletedMailbox"),
    ]);
    let mut get_recipient = recipient_filters();
    get_recipient.push(valued("RecipientType"));
    let mut set_mailbox = vec![
        identity(),
        valued("Alias"),
        valued("DisplayName"),
        valued("Name"),
        valued("EmailAddresses"),
        valued("ForwardingAddress"),
        valued("ForwardingSmtpAddress"),
        boolean("DeliverToMailboxAndForward"),
        boolean("HiddenFromAddressListsEnabled"),
        boolean("LitigationHoldEnabled"),
        valued("LitigationHoldDuration"),
        valued("ProhibitSendQuota"),
        valued("ProhibitSendReceiveQuota"),
        valued("IssueWarningQuota"),
        valued("RetainDeletedItemsFor"),
        valued("Languages"),
        valued("Type"),
        switch("Force"),
    ];
    set_mailbox.extend(CUSTOM_ATTRIBUTES.iter().map(|n| valued(n)));
    vec![
        Cmdlet {
            name: "Get-Mailbox",
            params: get_mailbox,
            output: MAILBOX,
            simulated: true,
        },
        Cmdlet {
            name: "Get-Recipient",
            params: get_recipient,
            output: RECIPIENT,
            simulated: true,
        },
        Cmdlet {
            name: "Get-MailboxStatistics",
            params: vec![
                identity(),
                switch("Archive"),
                switch("IncludeMoveHistory"),
                switch("IncludeMoveReport"),
                switch("IncludeSoftDeletedRecipients"),
            ],
            output: STATISTICS,
            simulated: true,
        },
        Cmdlet {
            name: "Set-Mailbox",
            params: set_mailbox,
            output: &[],
            simulated: true,
        },
        Cmdlet {
            name: "Get-OrganizationConfig",
            params: vec![identity()],
            output: ORGANIZATION,
            simulated: true,
        },
        Cmdlet {
            name: "Set-OrganizationConfig",
            params: vec![
                boolean("AuditDisabled"),
                boolean("OAuth2ClientProfileEnabled"),
                boolean("FocusedInboxOn"),
                boolean("CustomerLockboxEnabled"),
                boolean("SmtpActionableMessagesEnabled"),
                valued("DefaultPublicFolderAgeLimit"),
            ],
            output: &[],
            simulated: true,
        },
        Cmdlet {
            name: "Get-AcceptedDomain",
            params: vec![identity(), valued("ResultSize")],
            output: DOMAIN,
            simulated: true,
        },
    ]
}

/// Every cmdlet the simulator knows, simulated ones first.
pub fn cmdlets() -> &'static [Cmdlet] {
    static ALL: std::sync::OnceLock<Vec<Cmdlet>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = simulated();
        all.extend(EXPORTED_ONLY.iter().map(|name| Cmdlet {
            name,
            params: vec![identity()],
            output: &[],
            simulated: false,
        }));
        all
    })
}

/// The cmdlet called `name` (case-insensitive).
pub fn lookup(name: &str) -> Option<&'static Cmdlet> {
    cmdlets()
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name.trim()))
}

/// Whether `name` is a common parameter.
pub fn is_common(name: &str) -> bool {
    COMMON.iter().any(|c| c.eq_ignore_ascii_case(name))
}
