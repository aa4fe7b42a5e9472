//! The schema fingerprint: a stable hash of a type's shape, as written.
//!
//! The type is rendered into a canonical text, for example
//! `bus-schema-v1 struct Temperature{sensor:u32,celsius:f64}`, and hashed with 64-bit FNV-1a.
//! The text keeps the type's name, its generic parameters, and each field's name and type, plus
//! every `#[serde(...)]` attribute (they change the encoding too); it leaves out doc comments,
//! other attributes and visibility, which do not. Tokens are rendered by our own walker rather
//! than by the compiler's pretty-printer, so the text, and the hash, do not depend on the
//! toolchain.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Attribute, Data, DeriveInput, Fields};

const SCHEME: &str = "bus-schema-v1";

/// The fingerprint of `input`.
pub(crate) fn fingerprint(input: &DeriveInput) -> u64 {
    bus_core::fnv1a64(canonical(input).as_bytes())
}

/// The fingerprint of request type `input` and the type of its reply, as written.
pub(crate) fn rpc_fingerprint(input: &DeriveInput, reply: &syn::Type) -> u64 {
    let mut text = canonical(input);
    let mut out = Text::default();
    out.word("reply");
    out.tokens(reply.to_token_stream());
    text.push_str(&out.0);
    bus_core::fnv1a64(text.as_bytes())
}

/// The canonical text that [`fingerprint`] hashes.
pub(crate) fn canonical(input: &DeriveInput) -> String {
    let mut out = Text::default();
    out.word(SCHEME);
    serde_attrs(&mut out, &input.attrs);
    out.word(match input.data {
        Data::Struct(_) => "struct",
        Data::Enum(_) => "enum",
        Data::Union(_) => "union",
    });
    out.word(&input.ident.to_string());
    if !input.generics.params.is_empty() {
        out.tokens(input.generics.to_token_stream());
    }
    match &input.data {
        Data::Struct(data) => fields(&mut out, &data.fields),
        Data::Enum(data) => {
            out.punct('{');
            for (i, variant) in data.variants.iter().enumerate() {
                if i > 0 {
                    out.punct(',');
                }
                serde_attrs(&mut out, &variant.attrs);
                out.word(&variant.ident.to_string());
                fields(&mut out, &variant.fields);
            }
            out.punct('}');
        }
        Data::Union(_) => {}
    }
    out.0
}

fn fields(out: &mut Text, fields: &Fields) {
    let (open, close) = match fields {
        Fields::Named(_) => ('{', '}'),
        Fields::Unnamed(_) => ('(', ')'),
        Fields::Unit => return,
    };
    out.punct(open);
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.punct(',');
        }
        serde_attrs(out, &field.attrs);
        if let Some(ident) = &field.ident {
            out.word(&ident.to_string());
            out.punct(':');
        }
        out.tokens(field.ty.to_token_stream());
    }
    out.punct(close);
}

fn serde_attrs(out: &mut Text, attrs: &[Attribute]) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        out.punct('#');
        out.tokens(attr.meta.to_token_stream());
    }
}

/// Canonical text: words separated by one space only where two words meet, punctuation bare.
#[derive(Default)]
struct Text(String);

impl Text {
    fn word(&mut self, word: &str) {
        if self
            .0
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            self.0.push(' ');
        }
        self.0.push_str(word);
    }

    fn punct(&mut self, c: char) {
        self.0.push(c);
    }

    fn tokens(&mut self, tokens: TokenStream) {
        for tree in tokens {
            match tree {
                TokenTree::Ident(ident) => self.word(&ident.to_string()),
                TokenTree::Literal(lit) => self.word(&lit.to_string()),
                TokenTree::Punct(p) => self.punct(p.as_char()),
                TokenTree::Group(group) => {
                    let (open, close) = match group.delimiter() {
                        Delimiter::Parenthesis => (Some('('), Some(')')),
                        Delimiter::Brace => (Some('{'), Some('}')),
                        Delimiter::Bracket => (Some('['), Some(']')),
                        Delimiter::None => (None, None),
                    };
                    if let Some(c) = open {
                        self.punct(c);
                    }
                    self.tokens(group.stream());
                    if let Some(c) = close {
                        self.punct(c);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(src: &str) -> String {
        canonical(&syn::parse_str(src).unwrap())
    }

    #[test]
    fn canonical_text_of_each_shape() {
        assert_eq!(
            text(
                "/// Docs are left out.\n#[derive(Clone)] pub struct Temperature { pub sensor: u32, celsius: f64 }"
            ),
            "bus-schema-v1 struct Temperature{sensor:u32,celsius:f64}"
        );
        assert_eq!(
            text("struct Pair(u32, Vec<String>);"),
            "bus-schema-v1 struct Pair(u32,Vec<String>)"
        );
        assert_eq!(text("struct Tick;"), "bus-schema-v1 struct Tick");
        assert_eq!(
            text("enum Command { Start, Set(f64), Move { x: i32, y: i32 } }"),
            "bus-schema-v1 enum Command{Start,Set(f64),Move{x:i32,y:i32}}"
        );
        assert_eq!(
            text("struct Wrapper<T: Clone> { value: Option<T> }"),
            "bus-schema-v1 struct Wrapper<T:Clone>{value:Option<T>}"
        );
        assert_eq!(
            text("#[serde(deny_unknown_fields)] struct A { #[serde(rename = \"b\")] a: [u8; 4] }"),
            "bus-schema-v1#serde(deny_unknown_fields)struct A{#serde(rename=\"b\")a:[u8;4]}"
        );
    }

    #[test]
    fn spacing_as_written_does_not_matter() {
        assert_eq!(
            text("struct A { a : Vec < u8 > , b: & 'static str }"),
            text("struct A{a:Vec<u8>,b:&'static str}")
        );
    }
}
