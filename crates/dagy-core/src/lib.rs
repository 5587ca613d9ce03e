//! Dagy's core: the FlowSpec contract and every decision the router makes, as pure functions.
//!
//! Nothing here does I/O, needs an async runtime, or knows AWS; the engine, the store, the
//! backends and the functions build on it. The data path starts here:
//!
//! ```
//! use dagy_core::{Flow, PlanRequest, Settings, plan};
//!
//! let flow = Flow::from_json(r#"{
//!     "spec_version": 1, "name": "hello",
//!     "tasks": [{"id": "greet", "handler": "echo", "timeout_seconds": 30}]
//! }"#, None)?;
//! let decision = plan(&flow, &PlanRequest::default(), &Settings::default())?;
//! assert_eq!(decision.tier.as_str(), "micro");
//! assert_eq!(decision.decided_by.as_str(), "rule:default");
//! # Ok::<(), dagy_core::Error>(())
//! ```
//!
//! - [`flow`]: [`FlowSpec`], [`TaskSpec`], [`RetryDelay`] and the [`FlowBuilder`].
//! - [`decode`] and [`validate`]: JSON in, every problem out, a [`Flow`] when there are none.
//! - [`graph`]: the validated DAG: run order, levels, downstream sets, Mermaid.
//! - [`json`]: how deep outputs may nest, and decoding that reads back whatever was stored.
//! - [`tier`]: the six tiers and the six-level resolution.
//! - [`backend`]: backends, their capabilities, registration from the environment.
//! - [`fargate`]: Fargate sizes and the valid cpu/memory combinations.
//! - [`plan`](mod@plan): tier + backend + fit checks: the decision a run records.
//! - [`asl`]: the Step Functions definition of a flow.

pub mod asl;
pub mod backend;
pub mod decode;
pub mod error;
pub mod fargate;
pub mod flow;
pub mod graph;
pub mod json;
pub mod plan;
pub mod positions;
pub mod tier;
pub mod validate;

pub use backend::{BackendKind, Capabilities, EcsSettings, Limit, Settings, StepFunctionsSettings};
pub use error::{Error, Problem, ProblemKind, Refusal};
pub use fargate::FargateSize;
pub use flow::{
    FlowBuilder, FlowSpec, HasDefaults, RetryDelay, TaskBuilder, TaskDefaults, TaskSpec,
};
pub use graph::Flow;
pub use plan::{ExecutionMode, Fallback, Plan, PlanRequest, plan, state_count};
pub use tier::{
    AutoTier, DecidedBy, FlowProfile, RuntimeTier, TierDecision, TierInputs, resolve_tier,
};
pub use validate::{Catalog, HandlerCatalog};
