//! Test grid harness (being written).
