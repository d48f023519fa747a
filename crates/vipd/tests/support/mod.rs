//! Setup shared by the root tests that build hosts out of namespaces.
//! Each test file compiles it as its own module and uses a part of it, so
//! what one file does not call is not dead code.
#![allow(dead_code)]

pub mod mesh;
