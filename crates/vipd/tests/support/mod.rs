//! Setup shared by the root tests that build hosts out of namespaces.

pub mod mesh;
