//! One integration-test binary; one module per topic (STYLE.md §2.12).

mod support;
mod bridge;
