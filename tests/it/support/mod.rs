//! Shared test support: the real pypsrp client in a venv under `target/`.

#![allow(dead_code)]

pub mod python;
pub mod endpoint;
