//! # Ivory Connector SDK
//!
//! The contract third parties build certified Ivorycom integrations against.
#![doc = "See ARCHITECTURE.md for the map of the workspace."]

pub mod manifest;
pub mod webhook;
