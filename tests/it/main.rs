//! One integration-test binary; one module per topic (STYLE.md §2.12).

mod abuse;
mod admin;
mod architecture;
mod bridge;
mod cli;
mod compat;
mod config;
mod config_env;
mod hostile_upstream;
mod lifecycle;
mod local_cmdlets;
mod login;
mod modes;
mod proxy;
mod remoting;
mod rest_table;
mod sandbox;
mod support;
mod token;
