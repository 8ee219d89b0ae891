//! Principals (being written).
