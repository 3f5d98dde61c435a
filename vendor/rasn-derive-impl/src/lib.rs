#[macro_use]
extern crate quote;

mod asn_type;
mod config;
mod decode;
mod encode;
mod r#enum;
mod ext;
mod tag;

use crate::ext::GenericsExt;
use config::Config;
use syn::{DataStruct, DeriveInput};

const CRATE_NAME: &str = "rasn";

/// PATCH(h323-proxy): whether `attrs` holds `#[rasn(<marker>)]` on its own.
fn has_marker(attrs: &[syn::Attribute], marker: &str) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident(CRATE_NAME)
            && attr
                .meta
                .require_list()
                .is_ok_and(|list| list.tokens.to_string() == marker)
    })
}

/// PATCH(h323-proxy): removes the field marked `#[rasn(unknown_extensions)]`
/// (a `rasn::types::UnknownExtensions` that keeps the PER extension additions
/// the type does not know) and returns its name. It must be the last named
/// field of an extensible (`#[non_exhaustive]`) SEQUENCE. The other derive
/// code then sees only the ASN.1 components, so field counts, metadata and
/// automatic tags are unchanged.
fn take_unknown_extensions_field(
    data: &mut DataStruct,
    config: &Config,
) -> syn::Result<Option<syn::Ident>> {
    let syn::Fields::Named(named) = &mut data.fields else {
        return Ok(None);
    };
    let Some(position) = named
        .named
        .iter()
        .position(|f| has_marker(&f.attrs, "unknown_extensions"))
    else {
        return Ok(None);
    };
    let field = &named.named[position];
    if position + 1 != named.named.len() {
        return Err(syn::Error::new_spanned(
            field,
            "`#[rasn(unknown_extensions)]` must be on the last field",
        ));
    }
    if !config.constraints.extensible || config.set || config.delegate {
        return Err(syn::Error::new_spanned(
            field,
            "`#[rasn(unknown_extensions)]` needs an extensible (`#[non_exhaustive]`) SEQUENCE",
        ));
    }
    let field = named.named.pop().map(syn::punctuated::Pair::into_value);
    Ok(field.and_then(|f| f.ident))
}

/// PATCH(h323-proxy): removes the variant marked `#[rasn(unknown_extension)]`
/// (one field, a `rasn::types::UnknownChoiceExtension` that keeps a PER
/// extension alternative the type does not know) and returns its name. It
/// must be the last variant of an extensible CHOICE without a container tag.
fn take_unknown_extension_variant(
    variants: &mut syn::punctuated::Punctuated<syn::Variant, syn::Token![,]>,
    config: &Config,
) -> syn::Result<Option<syn::Ident>> {
    let Some(position) = variants
        .iter()
        .position(|v| has_marker(&v.attrs, "unknown_extension"))
    else {
        return Ok(None);
    };
    let variant = &variants[position];
    if position + 1 != variants.len() {
        return Err(syn::Error::new_spanned(
            variant,
            "`#[rasn(unknown_extension)]` must be on the last variant",
        ));
    }
    if !config.choice || !config.constraints.extensible || config.tag.is_some() {
        return Err(syn::Error::new_spanned(
            variant,
            "`#[rasn(unknown_extension)]` needs an untagged extensible (`#[non_exhaustive]`) CHOICE",
        ));
    }
    if !matches!(&variant.fields, syn::Fields::Unnamed(f) if f.unnamed.len() == 1) {
        return Err(syn::Error::new_spanned(
            variant,
            "`#[rasn(unknown_extension)]` variant holds one `UnknownChoiceExtension`",
        ));
    }
    Ok(variants.pop().map(|v| v.into_value().ident))
}

pub fn decode_derive_inner(input: DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let config = Config::from_attributes(&input)?;
    let name = &input.ident;
    let mut generics = input.generics;
    let crate_root = &config.crate_root;
    generics.add_trait_bounds(crate_root, quote::format_ident!("Decode"));

    match input.data {
        // Unit structs are treated as ASN.1 NULL values.
        syn::Data::Struct(DataStruct {
            fields: syn::Fields::Unit,
            ..
        }) => Ok(quote! {
            impl #crate_root::Decode for #name {
                fn decode_with_tag_and_constraints<D: #crate_root::Decoder>(
                    decoder: &mut D,
                    tag: #crate_root::types::Tag,
                    _: &#crate_root::prelude::Constraints,
                ) -> Result<Self, D::Error> {
                    decoder.decode_null(tag).map(|_| #name)
                }
            }
        }),
        syn::Data::Struct(mut v) => {
            let unknown = take_unknown_extensions_field(&mut v, &config)?;
            decode::derive_struct_impl(name, generics, v, &config, unknown)
        }
        syn::Data::Enum(syn::DataEnum { mut variants, .. }) => {
            let unknown_variant = take_unknown_extension_variant(&mut variants, &config)?;
            r#enum::Enum {
                name,
                generics: &generics,
                variants: &variants,
                config: &config,
                unknown_variant,
            }
            .impl_decode()
        }
        _ => Err(syn::Error::new(
            name.span(),
            "Union types are not supported.",
        )),
    }
}

pub fn encode_derive_inner(input: DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let config = Config::from_attributes(&input)?;
    let name = &input.ident;
    let mut generics = input.generics;
    let crate_root = &config.crate_root;
    generics.add_trait_bounds(crate_root, quote::format_ident!("Encode"));

    Ok(match input.data {
        // Unit structs are treated as ASN.1 NULL values.
        syn::Data::Struct(DataStruct {
            fields: syn::Fields::Unit,
            ..
        }) => quote! {
            impl #crate_root::Encode for #name {
                fn encode_with_tag_and_constraints<'encoder, E: #crate_root::Encoder<'encoder>>(
                    &self,
                    encoder: &mut E,
                    tag: #crate_root::types::Tag,
                    constraints: &#crate_root::prelude::Constraints,
                    identifier: #crate_root::types::Identifier,
                ) -> Result<(), E::Error> {
                    encoder.encode_null(tag, identifier).map(drop)
                }
            }
        },
        syn::Data::Struct(mut v) => {
            let unknown = take_unknown_extensions_field(&mut v, &config)?;
            encode::derive_struct_impl(name, generics, v, &config, unknown)?
        }
        syn::Data::Enum(syn::DataEnum { mut variants, .. }) => {
            let unknown_variant = take_unknown_extension_variant(&mut variants, &config)?;
            r#enum::Enum {
                name,
                generics: &generics,
                variants: &variants,
                config: &config,
                unknown_variant,
            }
            .impl_encode()?
        }
        _ => {
            return Err(syn::Error::new(
                name.span(),
                "Union types are not supported.",
            ));
        }
    })
}

pub fn asn_type_derive_inner(input: DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let config = Config::from_attributes(&input)?;
    let name = &input.ident;
    let mut generics = input.generics;
    let crate_root = &config.crate_root;
    for param in &mut generics.params {
        if let syn::GenericParam::Type(type_param) = param {
            type_param
                .bounds
                .push(syn::parse_quote!(#crate_root::AsnType));
        }
    }

    Ok(match input.data {
        syn::Data::Struct(mut v) => {
            take_unknown_extensions_field(&mut v, &config)?;
            asn_type::derive_struct_impl(name, generics, v, &config)?
        }
        syn::Data::Enum(syn::DataEnum { mut variants, .. }) => {
            let unknown_variant = take_unknown_extension_variant(&mut variants, &config)?;
            r#enum::Enum {
                name,
                generics: &generics,
                variants: &variants,
                config: &config,
                unknown_variant,
            }
            .impl_asntype()?
        }
        _ => {
            return Err(syn::Error::new(
                name.span(),
                "Union types are not supported.",
            ));
        }
    })
}
