//! The review board read model (being written).
