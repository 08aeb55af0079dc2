//! Shared test support: the real pypsrp client in a venv under `target/`, and the harness
//! that runs the proxy between its simulators.

#![allow(dead_code)]

pub mod endpoint;
pub mod harness;
pub mod python;
pub mod wire;
