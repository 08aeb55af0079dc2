//! The cmdlets the simulated Exchange runs, with REST-style (JSON) parameters.
//!
//! Parameter names are checked against the simulator's own cmdlet list (`catalog`), so an
//! unknown parameter fails with Exchange's own binding error in both modes; errors and
//! warnings use Exchange's texts.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use super::filter::Filter;
use super::mailbox::base_domain;
use super::tenant::State;
use super::wildcard::{has_wildcards, matches as wildcard_match};
use super::{CmdletError, ExObject, MORE_RESULTS, Mailbox, OrgConfig, Tenant, catalog};

/// What a cmdlet returned, as cheap snapshots.
#[derive(Debug, Clone)]
pub enum Item {
    /// Get-Mailbox
    Mailbox(Arc<Mailbox>),
    /// Get-Recipient
    Recipient(Arc<Mailbox>),
    /// Get-MailboxStatistics
    Statistics(Arc<Mailbox>),
    /// Get-OrganizationConfig
    Organization(OrgConfig),
    /// Get-AcceptedDomain: (domain, default, initial)
    Domain(String, bool, bool),
}

/// A cmdlet's result.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Output objects, in order.
    pub items: Vec<Item>,
    /// Warnings (after the objects).
    pub warnings: Vec<String>,
}

/// Now, truncated to 100 ns (DateTime precision on both wires).
fn now() -> DateTime<FixedOffset> {
    let n = Utc::now();
    let ns = n.timestamp_subsec_nanos() / 100 * 100;
    n.with_nanosecond_trunc(ns).fixed_offset()
}

trait Trunc {
    fn with_nanosecond_trunc(self, ns: u32) -> Self;
}
impl Trunc for DateTime<Utc> {
    fn with_nanosecond_trunc(self, ns: u32) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(ns).unwrap_or(self)
    }
}

fn binding_error(message: String) -> CmdletError {
    CmdletError::binding(message)
}

struct Params<'a>(&'a Map<String, Json>);

impl<'a> Params<'a> {
    fn get(&self, name: &str) -> Option<&'a Json> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    fn str(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|v| match v {
            Json::Null => None,
            Json::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
    }
    fn bool(&self, name: &str) -> Result<Option<bool>, CmdletError> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(Json::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Json::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(binding_error(format!(
                "Cannot process argument transformation on parameter '{name}'. Cannot convert value \"{}\" to type \
                 \"System.Boolean\". Boolean parameters accept only Boolean values and numbers, such as $True, \
                 $False, 1 or 0.",
                other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned)
            ))),
        }
    }
    fn switch(&self, name: &str) -> bool {
        matches!(self.bool(name), Ok(Some(true)))
    }
}

fn strings(v: &Json) -> Vec<String> {
    match v {
        Json::Array(a) => a.iter().flat_map(strings).collect(),
        Json::String(s) => vec![s.clone()],
        Json::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

impl Tenant {
    fn matches_identity(m: &Mailbox, id: &str) -> bool {
        let id = id.trim();
        let bare = id.split_once(':').map_or(id, |(p, rest)| {
            if p.eq_ignore_ascii_case("smtp") {
                rest
            } else {
                id
            }
        });
        if has_wildcards(id) {
            return [&m.name, &m.display_name, &m.primary_smtp]
                .iter()
                .any(|v| wildcard_match(id, v));
        }
        m.name.eq_ignore_ascii_case(id)
            || m.display_name.eq_ignore_ascii_case(id)
            || m.upn.eq_ignore_ascii_case(bare)
            || m.primary_smtp.eq_ignore_ascii_case(bare)
            || m.email_addresses.iter().any(|a| {
                a.split_once(':')
                    .is_some_and(|(_, x)| x.eq_ignore_ascii_case(bare))
            })
            || id
                .parse::<Uuid>()
                .is_ok_and(|g| g == m.guid || g == m.exchange_guid || g == m.external_id)
    }

    fn find(&self, state: &State, id: &str) -> Result<(usize, Arc<Mailbox>), CmdletError> {
        state
            .mailboxes
            .iter()
            .enumerate()
            .find(|(_, m)| Self::matches_identity(m, id))
            .map(|(i, m)| (i, m.clone()))
            .ok_or_else(|| CmdletError::not_found(id, &self.server))
    }

    fn check_parameters(
        &self,
        cmdlet: &str,
        params: &Map<String, Json>,
    ) -> Result<(), CmdletError> {
        let Some(entry) = catalog::lookup(cmdlet) else {
            return Err(CmdletError::command_not_found(cmdlet));
        };
        if !entry.simulated {
            return Ok(());
        }
        for key in params.keys().filter(|k| !k.contains('@')) {
            let known = entry.param(key).is_some() || catalog::is_common(key);
            if !known {
                return Err(binding_error(format!(
                    "A parameter cannot be found that matches parameter name '{key}'."
                )));
            }
        }
        Ok(())
    }

    /// Runs one cmdlet with REST-style parameters.
    ///
    /// # Errors
    /// [`CmdletError`] with Exchange's text: unknown identity, bad parameter, unknown cmdlet.
    pub fn invoke(&self, cmdlet: &str, params: &Map<String, Json>) -> Result<Outcome, CmdletError> {
        self.check_parameters(cmdlet, params)?;
        let p = Params(params);
        let canonical = catalog::lookup(cmdlet).map_or("", |c| c.name);
        match canonical {
            "Get-Mailbox" => self.get_mailboxes(&p, Item::Mailbox),
            "Get-Recipient" => self.get_mailboxes(&p, Item::Recipient),
            "Get-MailboxStatistics" => {
                let id = p.str("Identity").ok_or_else(|| {
                    binding_error(
                        "Cannot process command because of one or more missing mandatory parameters: Identity.".into(),
                    )
                })?;
                let state = self.read();
                let (_, m) = self.find(&state, &id)?;
                Ok(Outcome {
                    items: vec![Item::Statistics(m)],
                    warnings: vec![],
                })
            }
            "Set-Mailbox" => self.set_mailbox(&p),
            "Get-OrganizationConfig" => Ok(Outcome {
                items: vec![Item::Organization(self.read().org.clone())],
                warnings: vec![],
            }),
            "Set-OrganizationConfig" => {
                if p.switch("WhatIf") {
                    return Ok(Outcome::default());
                }
                let mut state = self.write();
                let before = state.org.clone();
                if let Some(b) = p.bool("AuditDisabled")? {
                    state.org.audit_disabled = b;
                }
                if let Some(b) = p.bool("OAuth2ClientProfileEnabled")? {
                    state.org.oauth2_client_profile = b;
                }
                if let Some(b) = p.bool("FocusedInboxOn")? {
                    state.org.focused_inbox = b;
                }
                if state.org == before {
                    return Ok(Outcome {
                        items: vec![],
                        warnings: vec![format!(
                            "The command completed successfully but no settings of '{}' have been modified.",
                            self.organization
                        )],
                    });
                }
                state.org.changed = now();
                Ok(Outcome::default())
            }
            "Get-AcceptedDomain" => {
                let domains = [
                    (base_domain(&self.organization), true, false),
                    (self.organization.clone(), false, true),
                ];
                let id = p.str("Identity");
                let items: Vec<Item> = domains
                    .into_iter()
                    .filter(|(d, _, _)| id.as_deref().is_none_or(|i| wildcard_match(i, d)))
                    .map(|(d, a, b)| Item::Domain(d, a, b))
                    .collect();
                if let Some(i) = id
                    && items.is_empty()
                {
                    return Err(CmdletError::not_found(&i, &self.server));
                }
                Ok(Outcome {
                    items,
                    warnings: vec![],
                })
            }
            other => Ok(Outcome {
                items: vec![],
                warnings: vec![format!(
                    "The simulated Exchange Online does not implement '{other}'; it ran nothing and returned no objects."
                )],
            }),
        }
    }

    fn get_mailboxes(
        &self,
        p: &Params<'_>,
        wrap: fn(Arc<Mailbox>) -> Item,
    ) -> Result<Outcome, CmdletError> {
        let limit: Option<usize> = match p.get("ResultSize") {
            None => Some(1000),
            Some(Json::String(s)) if s.eq_ignore_ascii_case("Unlimited") => None,
            Some(Json::Number(n)) if n.as_u64().is_some() => n.as_u64().map(|n| n as usize),
            Some(Json::String(s)) if s.parse::<usize>().is_ok() => s.parse().ok(),
            Some(other) => {
                return Err(binding_error(format!(
                    "Cannot process argument transformation on parameter 'ResultSize'. Cannot convert value \"{}\" \
                     to type \"Microsoft.Exchange.Data.Unlimited`1[System.UInt32]\".",
                    other
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_owned)
                )));
            }
        };
        let filter = p.str("Filter").map(|f| Filter::parse(&f)).transpose()?;
        let anr = p.str("Anr");
        let types: Option<Vec<String>> = p.get("RecipientTypeDetails").map(strings);
        let state = self.read();
        let mut all: Vec<Arc<Mailbox>> = if let Some(id) = p.str("Identity") {
            if has_wildcards(&id) {
                state
                    .mailboxes
                    .iter()
                    .filter(|m| Self::matches_identity(m, &id))
                    .cloned()
                    .collect()
            } else {
                vec![self.find(&state, &id)?.1]
            }
        } else {
            state.mailboxes.clone()
        };
        drop(state);
        if let Some(a) = anr {
            let a = a.to_ascii_lowercase();
            all.retain(|m| {
                [&m.name, &m.display_name, &m.primary_smtp]
                    .iter()
                    .any(|v| v.to_ascii_lowercase().starts_with(&a))
            });
        }
        if let Some(t) = types {
            all.retain(|m| {
                t.iter()
                    .any(|t| t.eq_ignore_ascii_case(&m.recipient_type_details))
            });
        }
        if let Some(f) = filter {
            all.retain(|m| {
                f.matches(&ExObject {
                    type_names: vec![],
                    props: self.mailbox_props(m),
                })
            });
        }
        let mut warnings = Vec::new();
        if let Some(n) = limit
            && all.len() > n
        {
            all.truncate(n);
            warnings.push(MORE_RESULTS.to_owned());
        }
        Ok(Outcome {
            items: all.into_iter().map(wrap).collect(),
            warnings,
        })
    }

    fn set_mailbox(&self, p: &Params<'_>) -> Result<Outcome, CmdletError> {
        let id = p.str("Identity").ok_or_else(|| {
            binding_error("Cannot process command because of one or more missing mandatory parameters: Identity.".into())
        })?;
        let mut state = self.write();
        let (index, current) = self.find(&state, &id)?;
        let mut m = (*current).clone();
        for i in 1..=15 {
            if let Some(v) = p.get(&format!("CustomAttribute{i}")) {
                m.custom[i - 1] = strings(v).join(" ");
            }
        }
        if let Some(v) = p.str("DisplayName") {
            m.display_name = v;
        }
        if let Some(b) = p.bool("HiddenFromAddressListsEnabled")? {
            m.hidden = b;
        }
        if let Some(b) = p.bool("DeliverToMailboxAndForward")? {
            m.deliver_and_forward = b;
        }
        if let Some(b) = p.bool("LitigationHoldEnabled")? {
            if b && !m.litigation_hold {
                m.litigation_hold_date = Some(now());
            }
            if !b {
                m.litigation_hold_date = None;
            }
            m.litigation_hold = b;
        }
        if let Some(v) = p.get("ForwardingSmtpAddress") {
            m.forwarding_smtp = match v {
                Json::Null => None,
                other => strings(other).first().map(|a| {
                    if a.contains(':') {
                        a.clone()
                    } else {
                        format!("smtp:{a}")
                    }
                }),
            };
        }
        if let Some(v) = p.str("ProhibitSendQuota") {
            m.prohibit_send_quota = v;
        }
        if let Some(v) = p.str("RetainDeletedItemsFor") {
            m.retain_deleted_items_for = v;
        }
        if let Some(v) = p.get("Languages") {
            m.languages = strings(v);
        }
        if let Some(v) = p.get("EmailAddresses") {
            let norm = |a: &str| {
                if a.contains(':') {
                    a.to_owned()
                } else {
                    format!("smtp:{a}")
                }
            };
            match v {
                Json::Object(h) => {
                    let h = Params(h);
                    for a in h.get("Add").map(strings).unwrap_or_default() {
                        let a = norm(&a);
                        if !m.email_addresses.iter().any(|x| x.eq_ignore_ascii_case(&a)) {
                            m.email_addresses.push(a);
                        }
                    }
                    for r in h.get("Remove").map(strings).unwrap_or_default() {
                        let r = norm(&r);
                        m.email_addresses.retain(|x| !x.eq_ignore_ascii_case(&r));
                    }
                }
                other => m.email_addresses = strings(other).iter().map(|a| norm(a)).collect(),
            }
        }
        if p.switch("WhatIf") {
            return Ok(Outcome::default());
        }
        if m == *current {
            return Ok(Outcome {
                items: vec![],
                warnings: vec![format!(
                    "The command completed successfully but no settings of '{}' have been modified.",
                    m.name
                )],
            });
        }
        m.changed = now();
        state.mailboxes[index] = Arc::new(m);
        Ok(Outcome::default())
    }
}
