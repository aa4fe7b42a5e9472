//! The book's chapters as doctests: every Rust sample in them compiles and runs with `cargo test`.

#[cfg(doctest)]
#[doc = include_str!("src/wire-format.md")]
struct WireFormat;

#[cfg(doctest)]
#[doc = include_str!("src/testing.md")]
struct Testing;

#[cfg(doctest)]
#[doc = include_str!("src/topics.md")]
struct Topics;

#[cfg(doctest)]
#[doc = include_str!("src/getting-started.md")]
struct GettingStarted;

#[cfg(doctest)]
#[doc = include_str!("src/reliable.md")]
struct Reliable;

#[cfg(doctest)]
#[doc = include_str!("src/rpc.md")]
struct Rpc;

#[cfg(doctest)]
#[doc = include_str!("src/architecture.md")]
struct Architecture;

#[cfg(doctest)]
#[doc = include_str!("src/cli.md")]
struct Cli;
