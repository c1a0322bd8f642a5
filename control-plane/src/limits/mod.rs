//! Quotas (SPEC §4): window math and the usage API.

pub mod usage;
pub mod windows;
