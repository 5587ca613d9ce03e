//! `#[dagy::task]`: the seed's `@task(...)` decorator in Rust. Use it through the `dagy` crate,
//! whose documentation has the examples; this crate only expands the attribute.
//!
//! The function stays callable as `name::run(...)`; `name` itself becomes a unit struct that
//! implements `dagy::Task`, so `registry.add(name)` registers it and
//! `FlowBuilder::task_of(id, &name, ...)` starts a task from its options.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    Expr, ExprArray, ExprLit, FnArg, ItemFn, Lit, LitStr, ReturnType, Type, parse_macro_input,
};

/// The tier names, in order (the seed's six).
const TIERS: [&str; 6] = ["nano", "micro", "small", "medium", "large", "xlarge"];
/// The most seconds a delay or timeout may be (validation's limit: a year).
const MAX_SECONDS: f64 = 365.0 * 86_400.0;

/// Makes a function a Dagy task handler. See `dagy::task` for the documentation.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    let mut options = Options::default();
    let parser = syn::meta::parser(|meta| options.parse(meta));
    parse_macro_input!(attr with parser);
    match expand(options, function) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// The attribute's options, as tokens of `TaskDefaults` fields.
#[derive(Default)]
struct Options {
    name: Option<LitStr>,
    fields: Vec<Tokens>,
    seen: Vec<String>,
}

impl Options {
    fn parse(&mut self, meta: syn::meta::ParseNestedMeta) -> syn::Result<()> {
        let Some(key) = meta.path.get_ident().map(ToString::to_string) else {
            return Err(meta.error(unknown_option("this")));
        };
        if self.seen.contains(&key) {
            return Err(meta.error(format!("`{key}` is given twice; give it once")));
        }
        self.seen.push(key.clone());
        let value: Expr = meta.value()?.parse()?;
        let tokens = match key.as_str() {
            "name" => {
                self.name = Some(string(&value, "name")?);
                return Ok(());
            }
            "runtime_tier" => tier_tokens(&value)?,
            "retries" => {
                let retries = integer(&value, "retries", u64::from(u32::MAX))? as u32;
                quote! { #retries }
            }
            "memory_mb" => {
                let mb = integer(&value, "memory_mb", u64::MAX)?;
                if mb == 0 {
                    return Err(syn::Error::new(value.span(), "memory_mb must be > 0"));
                }
                quote! { #mb }
            }
            "retry_delay_seconds" => delay_tokens(&value)?,
            "retry_jitter_factor" => {
                let f = number(&value, "retry_jitter_factor", 1.0)?;
                quote! { #f }
            }
            "timeout_seconds" => {
                let t = number(&value, "timeout_seconds", MAX_SECONDS)?;
                if t == 0.0 {
                    return Err(syn::Error::new(value.span(), "timeout_seconds must be > 0"));
                }
                quote! { #t }
            }
            _ => return Err(meta.error(unknown_option(&key))),
        };
        let field = format_ident!("{key}");
        self.fields
            .push(quote! { #field: ::core::option::Option::Some(#tokens), });
        Ok(())
    }
}

/// `runtime_tier = "large"` as a `RuntimeTier`, checked against the six tier names.
fn tier_tokens(value: &Expr) -> syn::Result<Tokens> {
    let tier = string(value, "runtime_tier")?;
    let tier_name = tier.value();
    let Some(index) = TIERS.iter().position(|t| *t == tier_name) else {
        return Err(syn::Error::new(
            tier.span(),
            format!(
                "runtime_tier \"{tier_name}\" is not a tier; use one of: {}",
                TIERS.join(", ")
            ),
        ));
    };
    Ok(quote! { ::dagy::RuntimeTier::ALL[#index] })
}

/// `retry_delay_seconds = 1.5` or `= [1, 5]` as a `RetryDelay`.
fn delay_tokens(value: &Expr) -> syn::Result<Tokens> {
    let Expr::Array(ExprArray { elems, .. }) = value else {
        let s = number(value, "retry_delay_seconds", MAX_SECONDS)?;
        return Ok(quote! { ::dagy::RetryDelay::Fixed(#s) });
    };
    if elems.is_empty() {
        return Err(syn::Error::new(
            value.span(),
            "retry_delay_seconds is an empty list; give at least one delay or a number",
        ));
    }
    let list = elems
        .iter()
        .map(|e| number(e, "retry_delay_seconds", MAX_SECONDS))
        .collect::<syn::Result<Vec<f64>>>()?;
    Ok(quote! { ::dagy::RetryDelay::PerAttempt(::std::vec![#(#list),*]) })
}

fn unknown_option(key: &str) -> String {
    format!(
        "`{key}` is not a task option; the options are: name, runtime_tier, retries, \
         retry_delay_seconds, retry_jitter_factor, timeout_seconds, memory_mb"
    )
}

fn string(value: &Expr, key: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        _ => Err(syn::Error::new(
            value.span(),
            format!("{key} takes a string, like {key} = \"...\""),
        )),
    }
}

fn integer(value: &Expr, key: &str, max: u64) -> syn::Result<u64> {
    let error = || {
        syn::Error::new(
            value.span(),
            format!("{key} takes a whole number from 0 to {max}"),
        )
    };
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i
            .base10_parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(error),
        _ => Err(error()),
    }
}

fn number(value: &Expr, key: &str, max: f64) -> syn::Result<f64> {
    let parsed = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<f64>().ok(),
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => f.base10_parse::<f64>().ok(),
        _ => None,
    };
    parsed
        .filter(|n| n.is_finite() && (0.0..=max).contains(n))
        .ok_or_else(|| {
            syn::Error::new(
                value.span(),
                format!("{key} takes a number from 0 to {max}"),
            )
        })
}

/// Refuses what no task function can be, saying what to change.
fn check_signature(sig: &syn::Signature) -> syn::Result<()> {
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a task function cannot be generic: name concrete types for its arguments and output",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            "a task function cannot be variadic",
        ));
    }
    if sig.constness.is_some() || sig.unsafety.is_some() || sig.abi.is_some() {
        return Err(syn::Error::new(
            sig.fn_token.span,
            "a task is a plain `fn` or `async fn` (not const, unsafe or extern)",
        ));
    }
    if let ReturnType::Default = sig.output {
        return Err(syn::Error::new(
            sig.ident.span(),
            "a task returns a Result: add `-> Result<YourOutput, dagy::TaskError>` (the output \
             is any serde::Serialize)",
        ));
    }
    Ok(())
}

/// One statement per argument taking it from the task's input, and the names it binds.
fn extractors(sig: &syn::Signature) -> syn::Result<(Vec<Tokens>, Vec<syn::Ident>)> {
    let mut extract = Vec::new();
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(typed) = input else {
            return Err(syn::Error::new(
                input.span(),
                "a task is a free function: remove `self`",
            ));
        };
        let ty = &*typed.ty;
        if let Type::Reference(r) = ty {
            return Err(syn::Error::new(
                r.span(),
                "take the argument by value (`args: Args`, `ctx: dagy::TaskContext`): a task's \
                 arguments are built for each attempt",
            ));
        }
        if let Type::ImplTrait(t) = ty {
            return Err(syn::Error::new(
                t.span(),
                "name the argument's type: `impl Trait` arguments cannot be taken from a task's input",
            ));
        }
        let var = format_ident!("__dagy_arg{i}");
        extract.push(quote_spanned! {ty.span()=>
            let #var = <#ty as ::dagy::task::FromTaskInput>::from_input(&__dagy_ctx, &__dagy_input).await?;
        });
        args.push(var);
    }
    Ok((extract, args))
}

fn expand(options: Options, function: ItemFn) -> syn::Result<Tokens> {
    let sig = &function.sig;
    check_signature(sig)?;
    let (extract, args) = extractors(sig)?;

    let ident = &sig.ident;
    let vis = &function.vis;
    let name = options
        .name
        .unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()));
    let fields = &options.fields;
    let docs: Vec<_> = function
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let other_attrs: Vec<_> = function
        .attrs
        .iter()
        .filter(|a| !a.path().is_ident("doc"))
        .collect();
    let block = &function.block;
    let mut run_sig = sig.clone();
    run_sig.ident = syn::Ident::new("run", Span::call_site());
    let output_span = match &sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    let call = if sig.asyncness.is_some() {
        quote! { #ident::run(#(#args),*).await }
    } else {
        quote! { ::dagy::task::run_blocking(move || #ident::run(#(#args),*)).await? }
    };
    let convert = quote_spanned! {output_span=> ::dagy::task::IntoTaskOutput::into_output(#call) };
    Ok(quote! {
        #(#docs)*
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #ident;

        impl #ident {
            /// The task's function itself, for calling it directly (in a unit test, say).
            #(#other_attrs)*
            #vis #run_sig #block
        }

        impl ::dagy::HasDefaults for #ident {
            fn defaults(&self) -> ::dagy::TaskDefaults {
                ::dagy::TaskDefaults {
                    #(#fields)*
                    ..::dagy::TaskDefaults::named(#name)
                }
            }
        }

        impl ::dagy::Task for #ident {
            fn register(self, registry: &mut ::dagy::HandlerRegistry) {
                registry.register(
                    #name,
                    |__dagy_ctx: ::dagy::TaskContext, __dagy_input: ::dagy::serde_json::Value| async move {
                        #(#extract)*
                        #convert
                    },
                );
            }
        }
    })
}
