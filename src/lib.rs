//! exo-authproxy: modern authentication for unchanged Exchange Online Remote PowerShell scripts.
//!
//! # Layout
//! - `config`: the TOML configuration, typed and validated (DESIGN.md §3).
//! - `onboarding`: the `check`, `token` and `consent-url` commands as library functions.
//! - `secret`: `Secret<T>`, the one type secrets live in.
//! - `token`: Entra ID app-only tokens: credentials, client assertion, cache, claims diagnosis.
//! - `remoting`: the PowerShell remoting endpoint (WS-Man + PSRP + CLIXML), used by the REST
//!   bridge and the sandbox.
//! - `bridge`: `rest` mode: runs remoting pipelines through the REST admin API.
//! - `sandbox`: simulated Entra ID and Exchange Online for `exo-authproxy sandbox` and tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bridge;
pub mod config;
pub mod onboarding;
pub mod remoting;
pub mod sandbox;
pub mod secret;
pub mod token;
