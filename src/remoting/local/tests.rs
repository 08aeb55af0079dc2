//! The engine's stages on their own (the end-to-end tests are tests/it/local_cmdlets.rs).
