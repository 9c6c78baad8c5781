//! Shared helpers for the conformance suite (see tests/).
