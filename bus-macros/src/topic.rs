//! The expansion of `#[derive(Topic)]`.

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Data, DeriveInput, Ident, LitStr, Path, parse_quote};

use crate::attr::TopicAttrs;
use crate::fingerprint::fingerprint;

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    if let Data::Union(data) = &input.data {
        return Err(syn::Error::new(
            data.union_token.span,
            "a topic must be a struct or an enum; unions cannot be serialized",
        ));
    }
    let attrs = TopicAttrs::parse(&input.attrs)?;
    let name = match &attrs.name {
        Some(lit) => {
            bus_core::validate_topic_name(&lit.value())
                .map_err(|e| syn::Error::new(lit.span(), format!("invalid topic name: {e}")))?;
            lit.clone()
        }
        None => LitStr::new(&snake_case(&input.ident), input.ident.span()),
    };
    let krate = match attrs.krate {
        Some(path) => path,
        None => default_crate_path(),
    };
    let fingerprint = fingerprint(input);
    let reliable = attrs.reliable.map(|r| quote!(const RELIABLE: bool = #r;));
    let encoding = attrs.named_encoding.map(|named| {
        let variant = if named {
            quote!(Named)
        } else {
            quote!(Compact)
        };
        quote!(const ENCODING: #krate::Encoding = #krate::Encoding::#variant;)
    });

    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    // A generic topic is a topic for those parameters that make it serializable and sendable;
    // a plain one gets no extra clause, so a missing Serialize is reported against the trait.
    let mut where_clause = where_clause.cloned();
    if !input.generics.params.is_empty() {
        let de: Path = parse_quote!(#krate::__private::serde::de::DeserializeOwned);
        let ser: Path = parse_quote!(#krate::__private::serde::Serialize);
        where_clause
            .get_or_insert_with(|| parse_quote!(where))
            .predicates
            .push(parse_quote!(#ident #ty_generics: #ser + #de + ::core::marker::Send + 'static));
    }

    Ok(quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #krate::Topic for #ident #ty_generics #where_clause {
                const NAME: &'static str = #name;
                const FINGERPRINT: u64 = #fingerprint;
                #reliable
                #encoding
            }
        };
    })
}

/// `::bus_actors` if the crate using the derive depends on it, else `::bus_core`.
pub(crate) fn default_crate_path() -> Path {
    for package in ["bus-actors", "bus-core"] {
        match crate_name(package) {
            Ok(FoundCrate::Itself) => return parse_quote!(crate),
            Ok(FoundCrate::Name(name)) => {
                let ident = Ident::new(&name, Span::call_site());
                return parse_quote!(::#ident);
            }
            Err(_) => {}
        }
    }
    parse_quote!(::bus_core)
}

/// `BoilerTemperature` → `boiler_temperature`, `HTTPStatus` → `http_status`.
fn snake_case(ident: &Ident) -> String {
    let name = ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(char::is_uppercase) && next.is_some_and(|n| n.is_lowercase()));
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_snake_case() {
        for (ident, name) in [
            ("Temperature", "temperature"),
            ("BoilerTemperature", "boiler_temperature"),
            ("HTTPStatus", "http_status"),
            ("Sensor2Reading", "sensor2_reading"),
            ("snake_already", "snake_already"),
        ] {
            let ident = Ident::new(ident, Span::call_site());
            assert_eq!(snake_case(&ident), name);
        }
    }
}
