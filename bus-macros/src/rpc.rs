//! The expansion of `#[derive(Rpc)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Attribute, Data, DeriveInput, LitInt, LitStr, Path, Type};

use crate::attr::{Errors, set_once};
use crate::fingerprint::rpc_fingerprint;
use crate::topic::default_crate_path;

const RPC: &str = "rpc";
const PROCEDURE: &str = "procedure";
const REPLY: &str = "reply";
const CRATE: &str = "crate";

/// Procedures the bus keeps for itself (as `bus_core::rpc::RESERVED_PROCEDURES`).
const FIRST_RESERVED: u16 = *bus_core::rpc::RESERVED_PROCEDURES.start();

#[derive(Default)]
struct RpcAttrs {
    procedure: Option<LitInt>,
    reply: Option<Type>,
    krate: Option<Path>,
}

impl RpcAttrs {
    fn parse(attrs: &[Attribute]) -> syn::Result<RpcAttrs> {
        let mut out = RpcAttrs::default();
        let mut errors = Errors::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident(RPC)) {
            let parsed = attr.parse_nested_meta(|meta| {
                let path = &meta.path;
                if path.is_ident(PROCEDURE) {
                    let lit: LitInt = meta.value()?.parse()?;
                    set_once(&mut out.procedure, lit, (RPC, PROCEDURE), path, &mut errors);
                } else if path.is_ident(REPLY) {
                    let ty: Type = meta.value()?.parse()?;
                    set_once(&mut out.reply, ty, (RPC, REPLY), path, &mut errors);
                } else if path.is_ident(CRATE) {
                    let lit: LitStr = meta.value()?.parse()?;
                    let krate: Path = lit.parse()?;
                    set_once(&mut out.krate, krate, (RPC, CRATE), path, &mut errors);
                } else {
                    let key = path
                        .get_ident()
                        .map_or_else(|| "?".to_owned(), ToString::to_string);
                    return Err(meta.error(format!(
                        "unknown rpc attribute `{key}`; expected one of `procedure`, `reply`, `crate`"
                    )));
                }
                Ok(())
            });
            if let Err(e) = parsed {
                errors.push(e);
            }
        }
        errors.into_result(out)
    }
}

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    if let Data::Union(data) = &input.data {
        return Err(syn::Error::new(
            data.union_token.span,
            "a request must be a struct or an enum; unions cannot be serialized",
        ));
    }
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "a request cannot be generic: its procedure number names one type",
        ));
    }
    let attrs = RpcAttrs::parse(&input.attrs)?;
    let missing = |key: &str, example: &str| {
        syn::Error::new_spanned(
            &input.ident,
            format!("missing `#[rpc({key} = ...)]`, for example `#[rpc({example})]`"),
        )
    };
    let procedure_lit = attrs
        .procedure
        .ok_or_else(|| missing(PROCEDURE, "procedure = 400, reply = String"))?;
    let procedure: u16 = procedure_lit.base10_parse().map_err(|_| {
        syn::Error::new(
            procedure_lit.span(),
            "a procedure is a number from 0 to 65535",
        )
    })?;
    if procedure >= FIRST_RESERVED {
        return Err(syn::Error::new(
            procedure_lit.span(),
            format!(
                "procedures {FIRST_RESERVED:#06x} to 0xffff are the bus's own; choose one below {FIRST_RESERVED:#06x}"
            ),
        ));
    }
    let reply = attrs
        .reply
        .ok_or_else(|| missing(REPLY, "procedure = 400, reply = String"))?;
    let krate = attrs.krate.unwrap_or_else(default_crate_path);
    let fingerprint = rpc_fingerprint(input, &reply);
    let ident = &input.ident;
    Ok(quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #krate::Rpc for #ident {
                const PROCEDURE: u16 = #procedure;
                const FINGERPRINT: u64 = #fingerprint;
                type Reply = #reply;
            }
        };
    })
}
