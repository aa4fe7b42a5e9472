//! Derive macros for the bus.

#![forbid(unsafe_code)]
