//! The namespace lab: throw-away hosts joined by veths, used by `cargo xtask
//! run` (through the `h323-lab` binary) and by the privileged tests.

pub mod netns;
