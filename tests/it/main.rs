//! One integration-test binary; one module per topic (STYLE.md §2.12).

mod abuse;
mod admin;
mod architecture;
mod audit_report;
mod bad_input;
mod bridge;
mod cli;
mod compat;
mod compliance;
mod config;
mod config_env;
mod deploy;
mod docs;
mod faults;
mod hostile_upstream;
mod lifecycle;
mod local_cmdlets;
mod login;
mod modes;
mod proxy;
#[cfg(unix)] // SIGHUP and the kubelet's symlinks
mod reload;
mod remoting;
mod rest_table;
mod sandbox;
mod secrets;
mod support;
mod token;
