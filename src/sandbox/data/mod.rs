//! The simulated Exchange Online's tenant data and cmdlets.
//!
//! One deterministic in-memory data set per tenant id (mailboxes — as many as configured,
//! e.g. 10,000 for paging tests — recipients, organization config, accepted domains), made
//! on first use from the tenant id and organization alone, so every run and both upstream
//! modes see the same objects. Both simulated endpoints run their commands here: the RPS
//! endpoint (`rps/`, winrm mode) and the REST admin API (`adminapi.rs`, rest mode) — which
//! is what makes the compatibility test (same script, same objects through either mode)
//! meaningful. State changes (`Set-Mailbox`) are visible to later `Get-*`s of either.
//!
//! Cmdlets take REST-style parameters (a JSON object, reference exo-rest-adminapi.md §5);
//! the RPS side binds its CLIXML arguments and converts them itself first (`rps/`).
//! Nothing here comes from the proxy's `bridge`: the cmdlet list (`catalog`), the errors
//! (`error`), the wildcard matching (`wildcard`) and the JSON encoding (`object`) are the
//! simulator's own, written from the references, so the simulator can disagree with the
//! bridge where the bridge is wrong. Results are [`Item`]s (cheap `Arc` snapshots) that become
//! [`ExObject`]s only when a page is written, so paging 10,000 mailboxes stays linear.
//! Errors and warnings use Exchange's own texts.
//!
//! Layout: `tenant` holds the store (one [`Tenant`] per directory id, made on first use, its
//! state behind an `RwLock`) and `mailbox` the state it is generated from; `cmdlets` runs
//! commands against that state (with `filter` for `-Filter`), `object` shapes the results as
//! Exchange serializes them, and `knobs` holds what tests set and read while the simulator
//! runs. `catalog` lists the cmdlets and their parameters, `error` the errors they raise,
//! `wildcard` matches `-Identity 'a*'`, `-like` and command names in bounded time.

pub mod catalog;
mod cmdlets;
pub mod error;
mod filter;
mod knobs;
mod mailbox;
mod object;
mod tenant;
#[cfg(test)]
mod tests;
pub mod wildcard;

pub use cmdlets::{Item, Outcome};
pub use error::CmdletError;
pub use knobs::{Knobs, SeenRequest, Stats, load};
pub use mailbox::{Mailbox, OrgConfig};
pub use object::{ExObject, Prop, exchange_datetime};
pub use tenant::{ExchangeData, Tenant};

/// The warning a `Get-*` cmdlet writes when it stops at its default ResultSize
/// (exo-rest-adminapi.md §6).
pub const MORE_RESULTS: &str = "There are more results available than are currently displayed. To view them, \
                                increase the value for the ResultSize parameter.";
