//! Sans-IO protocol cores. See the crate description.
