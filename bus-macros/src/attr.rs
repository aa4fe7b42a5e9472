//! Parsing of `#[topic(...)]` and `#[rpc(...)]`.

use syn::spanned::Spanned;
use syn::{Attribute, LitStr, Path};

const TOPIC: &str = "topic";
const NAME: &str = "name";
const RELIABLE: &str = "reliable";
const ENCODING: &str = "encoding";
const CRATE: &str = "crate";

/// What `#[topic(...)]` said.
#[derive(Default)]
pub(crate) struct TopicAttrs {
    pub(crate) name: Option<LitStr>,
    pub(crate) reliable: Option<bool>,
    pub(crate) named_encoding: Option<bool>,
    pub(crate) krate: Option<Path>,
}

/// Collects every error instead of stopping at the first, so one build shows them all.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn into_result<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }
}

/// Sets `slot` to `value`, or records an error if `key` of attribute `kind` was given before.
pub(crate) fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    (kind, key): (&str, &str),
    span: &impl Spanned,
    errors: &mut Errors,
) {
    if slot.is_some() {
        errors.push(syn::Error::new(
            span.span(),
            format!("duplicate {kind} attribute `{key}`"),
        ));
    } else {
        *slot = Some(value);
    }
}

impl TopicAttrs {
    pub(crate) fn parse(attrs: &[Attribute]) -> syn::Result<TopicAttrs> {
        let mut out = TopicAttrs::default();
        let mut errors = Errors::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident(TOPIC)) {
            let parsed = attr.parse_nested_meta(|meta| {
                let path = &meta.path;
                if path.is_ident(NAME) {
                    let lit: LitStr = meta.value()?.parse()?;
                    set_once(&mut out.name, lit, (TOPIC, NAME), path, &mut errors);
                } else if path.is_ident(RELIABLE) {
                    set_once(&mut out.reliable, true, (TOPIC, RELIABLE), path, &mut errors);
                } else if path.is_ident(ENCODING) {
                    let lit: LitStr = meta.value()?.parse()?;
                    let named = match lit.value().as_str() {
                        "compact" => false,
                        "named" => true,
                        other => {
                            return Err(syn::Error::new(
                                lit.span(),
                                format!(
                                    "unknown encoding `{other}`; expected \"compact\" or \"named\""
                                ),
                            ));
                        }
                    };
                    set_once(&mut out.named_encoding, named, (TOPIC, ENCODING), path, &mut errors);
                } else if path.is_ident(CRATE) {
                    let lit: LitStr = meta.value()?.parse()?;
                    let krate: Path = lit.parse()?;
                    set_once(&mut out.krate, krate, (TOPIC, CRATE), path, &mut errors);
                } else {
                    let key = path
                        .get_ident()
                        .map_or_else(|| "?".to_owned(), ToString::to_string);
                    return Err(meta.error(format!(
                        "unknown topic attribute `{key}`; expected one of `name`, `reliable`, `encoding`, `crate`"
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
