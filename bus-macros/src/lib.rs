//! Derive macros for the bus.
//!
//! `#[derive(Topic)]` implements `Topic` for a serde type: its name, its schema fingerprint and
//! its defaults. `#[derive(Rpc)]` implements `Rpc` for a request type (see [`derive@Rpc`]). Use it through `bus-actors` (which re-exports it), or with `bus-core` directly.
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
mod rpc;
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

/// Derives `Rpc` for a request type: the procedure it is served under and its reply type.
///
/// ```
/// use bus_core::Rpc as _;
/// use bus_macros::Rpc;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize, Serialize, Rpc)]
/// #[rpc(procedure = 12, reply = Vec<u32>)]
/// struct Primes { below: u32 }
///
/// assert_eq!(Primes::PROCEDURE, 12);
/// ```
///
/// | attribute | meaning |
/// |---|---|
/// | `procedure = N` | required: its number, below the bus's own range (`0xff00` and up) |
/// | `reply = Type` | required: what it answers (serde, `Send`, `'static`) |
/// | `crate = "path"` | as for `Topic` |
#[proc_macro_derive(Rpc, attributes(rpc))]
pub fn derive_rpc(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    rpc::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
