//! One integration-test binary; one module per topic (STYLE.md §2.12).

mod admin;
mod bridge;
mod cli;
mod config;
mod hostile_upstream;
mod login;
mod proxy;
mod remoting;
mod sandbox;
mod support;
mod token;
