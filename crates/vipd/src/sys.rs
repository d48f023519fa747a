//! The one module where `unsafe` is allowed. Each block carries a SAFETY
//! comment. Keep it small: prefer a safe wrapper from `nix` or `socket2`.
#![allow(unsafe_code)]
