//! Exchange objects as the service serializes them: typed properties in Exchange's order.
//!
//! A cmdlet's [`Item`]s become [`ExObject`]s only here, when a page is written; both wires
//! start from the same object (CLIXML for RPS, annotated JSON for REST), so the two modes
//! cannot drift apart property by property.

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use super::mailbox::seeded_uuid;
use super::{Item, Mailbox, Tenant, catalog};

/// A DateTime as Exchange writes it in JSON (exo-rest-adminapi.md §7.2): seven fractional
/// digits; local-kind values with their offset (`+00:00`), the `…UTC` properties with `Z`.
pub fn exchange_datetime(d: &DateTime<FixedOffset>, utc: bool) -> String {
    let ticks = d.timestamp_subsec_nanos() / 100;
    if utc {
        let u = d.with_timezone(&Utc);
        format!("{}.{ticks:07}Z", u.format("%Y-%m-%dT%H:%M:%S"))
    } else {
        format!(
            "{}.{ticks:07}{}",
            d.format("%Y-%m-%dT%H:%M:%S"),
            d.format("%:z")
        )
    }
}

/// One property value of an Exchange object, typed as Exchange's serializer typed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prop {
    /// null
    Null,
    /// A string (also enums, sizes, TimeSpans, linked identities).
    Str(String),
    /// Boolean.
    Bool(bool),
    /// Int16.
    I16(i16),
    /// Int32.
    I32(i32),
    /// Int64.
    I64(i64),
    /// Guid.
    Guid(Uuid),
    /// DateTime; `utc` for the `…UTC` properties (sent with `Z`).
    Date(DateTime<FixedOffset>, bool),
    /// Multi-valued string property.
    Multi(Vec<String>),
}

impl Prop {
    pub(super) fn text(&self) -> String {
        match self {
            Prop::Null => String::new(),
            Prop::Str(s) => s.clone(),
            Prop::Bool(b) => {
                if *b {
                    "True".into()
                } else {
                    "False".into()
                }
            }
            Prop::I16(n) => n.to_string(),
            Prop::I32(n) => n.to_string(),
            Prop::I64(n) => n.to_string(),
            Prop::Guid(g) => g.to_string(),
            Prop::Date(d, utc) => exchange_datetime(d, *utc),
            Prop::Multi(v) => v.join(" "),
        }
    }
}

/// An Exchange object as the service produced it: type hierarchy and ordered properties.
#[derive(Debug, Clone, PartialEq)]
pub struct ExObject {
    /// Most derived first (no `Deserialized.`).
    pub type_names: Vec<String>,
    /// Properties in Exchange's order.
    pub props: Vec<(String, Prop)>,
}

impl ExObject {
    /// A property by name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Prop> {
        self.props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The REST JSON form with annotations (reference exo-rest-adminapi.md §7.2).
    pub fn to_json(&self) -> Map<String, Json> {
        let mut m = Map::new();
        for (k, v) in &self.props {
            match v {
                Prop::Null => {
                    m.insert(k.clone(), Json::Null);
                }
                Prop::Str(s) => {
                    m.insert(k.clone(), Json::from(s.as_str()));
                }
                Prop::Bool(b) => {
                    m.insert(k.clone(), Json::Bool(*b));
                }
                Prop::I16(n) => {
                    m.insert(format!("{k}@data.type"), "System.Int16".into());
                    m.insert(format!("{k}@odata.type"), "#Int16".into());
                    m.insert(k.clone(), Json::from(*n));
                }
                Prop::I32(n) => {
                    m.insert(format!("{k}@data.type"), "System.Int32".into());
                    m.insert(k.clone(), Json::from(*n));
                }
                Prop::I64(n) => {
                    m.insert(format!("{k}@data.type"), "System.Int64".into());
                    m.insert(format!("{k}@odata.type"), "#Int64".into());
                    m.insert(k.clone(), Json::from(*n));
                }
                Prop::Guid(g) => {
                    m.insert(format!("{k}@data.type"), "System.Guid".into());
                    m.insert(format!("{k}@odata.type"), "#Guid".into());
                    m.insert(k.clone(), Json::from(g.to_string()));
                }
                Prop::Date(d, utc) => {
                    m.insert(format!("{k}@data.type"), "System.DateTime".into());
                    m.insert(k.clone(), Json::from(exchange_datetime(d, *utc)));
                }
                Prop::Multi(v) => {
                    m.insert(format!("{k}@odata.type"), "#Collection(String)".into());
                    m.insert(k.clone(), Json::from(v.clone()));
                }
            }
        }
        m
    }
}

impl Tenant {
    /// The object for one item (`Get-*` output), as Exchange serialized it.
    pub fn object(&self, item: &Item) -> ExObject {
        let types = |cmdlet: &str| {
            catalog::lookup(cmdlet)
                .map(|c| c.output.iter().map(|t| (*t).to_owned()).collect())
                .unwrap_or_default()
        };
        match item {
            Item::Mailbox(m) => ExObject {
                type_names: types("Get-Mailbox"),
                props: self.mailbox_props(m),
            },
            Item::Recipient(m) => ExObject {
                type_names: types("Get-Recipient"),
                props: self.recipient_props(m),
            },
            Item::Statistics(m) => ExObject {
                type_names: types("Get-MailboxStatistics"),
                props: vec![
                    ("DisplayName".into(), Prop::Str(m.display_name.clone())),
                    ("MailboxGuid".into(), Prop::Guid(m.exchange_guid)),
                    ("ItemCount".into(), Prop::I32(m.item_count)),
                    ("DeletedItemCount".into(), Prop::I32(m.item_count / 10)),
                    (
                        "TotalItemSize".into(),
                        Prop::Str(size_text(i64::from(m.item_count) * 75_000)),
                    ),
                    (
                        "LastLogonTime".into(),
                        if m.item_count % 3 == 0 {
                            Prop::Null
                        } else {
                            Prop::Date(m.changed, false)
                        },
                    ),
                    ("Identity".into(), Prop::Str(m.exchange_guid.to_string())),
                    ("IsValid".into(), Prop::Bool(true)),
                ],
            },
            Item::Organization(o) => {
                let name = self.organization.clone();
                ExObject {
                    type_names: types("Get-OrganizationConfig"),
                    props: vec![
                        ("Name".into(), Prop::Str(name.clone())),
                        (
                            "DisplayName".into(),
                            Prop::Str(name.split('.').next().unwrap_or_default().to_owned()),
                        ),
                        ("Identity".into(), Prop::Str(name.clone())),
                        (
                            "Guid".into(),
                            Prop::Guid(seeded_uuid(&format!("{}/org", self.tenant_id))),
                        ),
                        ("IsDehydrated".into(), Prop::Bool(false)),
                        ("AuditDisabled".into(), Prop::Bool(o.audit_disabled)),
                        (
                            "OAuth2ClientProfileEnabled".into(),
                            Prop::Bool(o.oauth2_client_profile),
                        ),
                        ("FocusedInboxOn".into(), Prop::Bool(o.focused_inbox)),
                        ("DefaultPublicFolderAgeLimit".into(), Prop::Null),
                        ("WhenChanged".into(), Prop::Date(o.changed, false)),
                        ("WhenChangedUTC".into(), Prop::Date(o.changed, true)),
                        ("IsValid".into(), Prop::Bool(true)),
                        ("ObjectState".into(), Prop::Str("Unchanged".into())),
                    ],
                }
            }
            Item::Domain(d, default, initial) => ExObject {
                type_names: types("Get-AcceptedDomain"),
                props: vec![
                    ("DomainName".into(), Prop::Str(d.clone())),
                    ("DomainType".into(), Prop::Str("Authoritative".into())),
                    ("Default".into(), Prop::Bool(*default)),
                    ("InitialDomain".into(), Prop::Bool(*initial)),
                    ("Name".into(), Prop::Str(d.clone())),
                    ("Identity".into(), Prop::Str(d.clone())),
                    (
                        "Guid".into(),
                        Prop::Guid(seeded_uuid(&format!("{}/domain/{d}", self.tenant_id))),
                    ),
                    ("IsValid".into(), Prop::Bool(true)),
                ],
            },
        }
    }

    fn dn(&self, name: &str) -> String {
        format!(
            "CN={name},OU={},OU=Microsoft Exchange Hosted Organizations,DC=EURPR01A001,DC=prod,DC=outlook,DC=com",
            self.organization
        )
    }

    pub(super) fn mailbox_props(&self, m: &Mailbox) -> Vec<(String, Prop)> {
        let s = |v: &str| Prop::Str(v.to_owned());
        let mut p = vec![
            ("Name".into(), s(&m.name)),
            ("Identity".into(), s(&m.name)),
            ("Id".into(), s(&m.name)),
            ("Alias".into(), s(&m.name)),
            ("DisplayName".into(), s(&m.display_name)),
            ("UserPrincipalName".into(), s(&m.upn)),
            ("PrimarySmtpAddress".into(), s(&m.primary_smtp)),
            ("WindowsEmailAddress".into(), s(&m.primary_smtp)),
            (
                "EmailAddresses".into(),
                Prop::Multi(m.email_addresses.clone()),
            ),
            ("RecipientType".into(), s("UserMailbox")),
            ("RecipientTypeDetails".into(), s(&m.recipient_type_details)),
            ("Guid".into(), Prop::Guid(m.guid)),
            ("ExchangeGuid".into(), Prop::Guid(m.exchange_guid)),
            (
                "ExternalDirectoryObjectId".into(),
                s(&m.external_id.to_string()),
            ),
            ("DistinguishedName".into(), s(&self.dn(&m.name))),
            ("OrganizationId".into(), s(&self.organization)),
            ("HiddenFromAddressListsEnabled".into(), Prop::Bool(m.hidden)),
            (
                "LitigationHoldEnabled".into(),
                Prop::Bool(m.litigation_hold),
            ),
            (
                "LitigationHoldDate".into(),
                m.litigation_hold_date
                    .map_or(Prop::Null, |d| Prop::Date(d, false)),
            ),
            ("LitigationHoldDuration".into(), s("Unlimited")),
            (
                "ForwardingSmtpAddress".into(),
                m.forwarding_smtp.as_deref().map_or(Prop::Null, s),
            ),
            (
                "DeliverToMailboxAndForward".into(),
                Prop::Bool(m.deliver_and_forward),
            ),
        ];
        for (i, c) in m.custom.iter().enumerate() {
            p.push((format!("CustomAttribute{}", i + 1), s(c)));
        }
        p.extend([
            ("ProhibitSendQuota".into(), s(&m.prohibit_send_quota)),
            (
                "RetainDeletedItemsFor".into(),
                s(&m.retain_deleted_items_for),
            ),
            ("RecipientLimits".into(), s("500")),
            ("PitrCopyIntervalInSeconds".into(), Prop::I16(0)),
            ("RecipientSoftDeletedStatus".into(), Prop::I32(0)),
            ("ArchiveQuota".into(), s("100 GB (107,374,182,400 bytes)")),
            ("Languages".into(), Prop::Multi(m.languages.clone())),
            ("WhenCreated".into(), Prop::Date(m.created, false)),
            ("WhenCreatedUTC".into(), Prop::Date(m.created, true)),
            ("WhenChanged".into(), Prop::Date(m.changed, false)),
            ("WhenChangedUTC".into(), Prop::Date(m.changed, true)),
            ("IsValid".into(), Prop::Bool(true)),
            ("ObjectState".into(), s("Unchanged")),
        ]);
        p
    }

    fn recipient_props(&self, m: &Mailbox) -> Vec<(String, Prop)> {
        let s = |v: &str| Prop::Str(v.to_owned());
        vec![
            ("Name".into(), s(&m.name)),
            ("Identity".into(), s(&m.name)),
            ("Alias".into(), s(&m.name)),
            ("DisplayName".into(), s(&m.display_name)),
            ("PrimarySmtpAddress".into(), s(&m.primary_smtp)),
            (
                "EmailAddresses".into(),
                Prop::Multi(m.email_addresses.clone()),
            ),
            ("RecipientType".into(), s("UserMailbox")),
            ("RecipientTypeDetails".into(), s(&m.recipient_type_details)),
            ("Guid".into(), Prop::Guid(m.guid)),
            (
                "ExternalDirectoryObjectId".into(),
                s(&m.external_id.to_string()),
            ),
            ("HiddenFromAddressListsEnabled".into(), Prop::Bool(m.hidden)),
            ("WhenCreated".into(), Prop::Date(m.created, false)),
            ("WhenChanged".into(), Prop::Date(m.changed, false)),
            ("IsValid".into(), Prop::Bool(true)),
        ]
    }
}

fn size_text(bytes: i64) -> String {
    let mut grouped = String::new();
    let digits = bytes.to_string();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{:.2} MB ({grouped} bytes)", bytes as f64 / 1_048_576.0)
}
