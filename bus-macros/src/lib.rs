//! Derive macros for the bus.
//!
//! `#[derive(Topic)]` implements `Topic` for a serde type: its name, its schema fingerprint and
//! its defaults. Use it through `bus-actors` (which re-exports it), or with `bus-core` directly.
//!
//! ```
//! use bus_core::Topic as _;
//! use bus_macros::Topic;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Deserialize, Serialize, Topic)]
//! #[topic(name = "plant/boiler/temperature", reliable)]
//! struct Temperature { sensor: u32, celsius: f64 }
//!
//! assert_eq!(Temperature::NAME, "plant/boiler/temperature");
//! ```
//!
//! Attributes, all optional, each at most once:
//!
//! | attribute | meaning |
//! |---|---|
//! | `name = "a/b/c"` | the topic's name, checked at compile time; default: the type's name in snake case |
//! | `reliable` | publish reliably by default |
//! | `encoding = "compact"` or `"named"` | structs as MessagePack arrays (default) or maps |
//! | `crate = "path"` | where `Topic` lives, if neither `bus_actors` nor `bus_core` is a dependency by that name |

#![forbid(unsafe_code)]

mod attr;
mod fingerprint;
mod topic;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `Topic`. See the [crate documentation](crate).
#[proc_macro_derive(Topic, attributes(topic))]
pub fn derive_topic(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    topic::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
