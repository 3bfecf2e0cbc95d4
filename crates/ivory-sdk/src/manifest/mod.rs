//! The connector manifest (`manifest.json`): types, strict validation, JSON Schema.
