//! One inference call on a node: validate it (a text model's text becomes tokens), run
//! the model's hooks around it, queue it, and build the answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use tracing::info_span;
use troupe_proto::inference::infer_parameter::ParameterChoice;
use troupe_proto::inference::{self as pb};

use crate::convert;
use crate::error::NodeError;
use crate::hooks::{CallCtx, HookedModel};
use crate::model::LoadedModel;
use crate::registry::Registry;

/// Request parameter that crashes a replica (only with --enable-fault-injection).
pub const FAULT_PARAM: &str = "troupe.fault";
/// Response parameter of text models: how many of the call's texts were truncated.
pub const TRUNCATED_PARAM: &str = "truncated";

/// A validated call, ready to queue.
struct Prepared {
    /// What the backend runs (a text model's tokens).
    inputs: Vec<troupe_backends::Tensor>,
    rows: usize,
    fault: bool,
    deadline: Option<Instant>,
    /// A text model's tokenizing of the call.
    text: Option<crate::pipeline::Encoded>,
}

/// One call to `model` (looked up once, by `model_infer`), with the model's hooks
/// around it.
pub(super) async fn infer(
    registry: &Registry,
    mut req: Request<pb::ModelInferRequest>,
    model: Result<Arc<LoadedModel>, NodeError>,
    trace_id: &str,
) -> Result<Response<pb::ModelInferResponse>, Status> {
    let deadline = troupe_proto::request_deadline(&req);
    // Taken out of the request, not copied: no allocation on the call path.
    let caller = req.extensions_mut().remove::<troupe_proto::auth::Caller>();
    let caller = caller.as_ref().map_or("anonymous", |c| c.0.as_str());
    let mut req = req.into_inner();
    let model = model?;
    // A recorded call needs an id to join its ground truth to: one is made if the
    // client sent none (the answer carries it). Version 7: time-ordered, so the store's
    // index of ids grows at its end instead of rewriting a random page per call.
    if req.id.is_empty() && model.hooks.records() {
        req.id = uuid::Uuid::now_v7().to_string();
    }
    let started = Instant::now();
    // The hooks see the model through its `HookedModel` face.
    let hooked_model: Arc<dyn HookedModel> = model.clone();
    let mut ctx = CallCtx {
        model: &hooked_model,
        request: &req,
        inputs: &[],
        rows: 1,
        trace_id,
        caller,
        deadline,
        started,
    };
    let prepared = prepare(registry, &req, &model, deadline);
    let Prepared {
        inputs,
        rows,
        fault,
        deadline,
        text,
    } = match prepared {
        Ok(p) => p,
        Err(e) => {
            model.hooks.finished(&ctx, Err(&e));
            return Err(e.into());
        }
    };
    ctx.deadline = deadline;
    ctx.rows = rows;
    let hooked = model.hooks.wanted(&ctx);
    let keep = hooked || model.hooks.observes();
    // Tensors share their bytes: keeping a copy for the hooks copies no data.
    let kept: Vec<troupe_backends::Tensor>;
    if keep {
        kept = inputs.clone();
        ctx.inputs = &kept;
    }
    let mut result = run(&model, &ctx, inputs, fault, hooked).await;
    if let Ok(resp) = &mut result {
        model.hooks.annotate(&ctx, resp);
    }
    model.hooks.finished(&ctx, result.as_ref());
    if let (Ok(resp), Some(t)) = (&mut result, text) {
        // How many of the call's texts were cut to the model's max_length.
        resp.parameters.insert(
            TRUNCATED_PARAM.into(),
            pb::InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(t.truncated as i64)),
            },
        );
    }
    Ok(Response::new(result?))
}

/// Validates a call: its inputs, rows, fault flag and deadline; a text model's text
/// becomes its tokens here.
fn prepare(
    registry: &Registry,
    req: &pb::ModelInferRequest,
    model: &LoadedModel,
    deadline: Option<Instant>,
) -> Result<Prepared, NodeError> {
    let mut fault = false;
    if let Some(p) = req.parameters.get(FAULT_PARAM) {
        if !registry.opts.fault_injection {
            return Err(NodeError::FailedPrecondition(format!(
                "parameter '{FAULT_PARAM}' needs a node started with --enable-fault-injection"
            )));
        }
        fault =
            matches!(&p.parameter_choice, Some(ParameterChoice::StringParam(s)) if s == "crash");
    }
    // KServe/Triton clients may also send a `timeout` parameter in microseconds.
    let timeout_us = req
        .parameters
        .get("timeout")
        .and_then(|p| match p.parameter_choice {
            Some(ParameterChoice::Int64Param(us)) if us > 0 => Some(us as u64),
            Some(ParameterChoice::Uint64Param(us)) if us > 0 => Some(us),
            _ => None,
        });
    let deadline =
        match timeout_us.and_then(|us| Instant::now().checked_add(Duration::from_micros(us))) {
            Some(d) => Some(deadline.map_or(d, |g| g.min(d))),
            None => deadline,
        };
    let sig = &model.def.signature;
    let inputs =
        convert::request_inputs(&model.def.name, req, sig, registry.opts.max_tensor_bytes)?;
    let rows = if sig.max_batch_size > 0 {
        inputs.first().map(|t| t.shape[0]).unwrap_or(1)
    } else {
        1
    };
    let (inputs, text) = match (&model.pipeline, inputs.first()) {
        (Some(p), Some(text)) => {
            let started = Instant::now();
            let span = troupe_telemetry::child_span(|| {
                info_span!(
                    "tokenize",
                    rows = rows as i64,
                    tokens = tracing::field::Empty
                )
            });
            let (tokens, encoded) = span.in_scope(|| p.encode(text))?;
            span.record("tokens", encoded.tokens as i64);
            model
                .metrics
                .tokenize
                .observe(started.elapsed().as_secs_f64());
            (tokens, Some(encoded))
        }
        _ => (inputs, None),
    };
    Ok(Prepared {
        inputs,
        rows,
        fault,
        deadline,
        text,
    })
}

/// Hooks before, the model, hooks after (explanations add outputs).
async fn run(
    model: &LoadedModel,
    ctx: &CallCtx<'_>,
    inputs: Vec<troupe_backends::Tensor>,
    fault: bool,
    hooked: bool,
) -> Result<pb::ModelInferResponse, NodeError> {
    if hooked {
        model.hooks.before(ctx).await?;
    }
    // Traced calls get queue_wait, batch and backend spans from the queue and replica.
    let outputs = model.infer(inputs, ctx.rows, ctx.deadline, fault).await?;
    let extra = if hooked {
        model.hooks.after(ctx, &outputs).await?
    } else {
        Vec::new()
    };
    let mut resp = convert::response(
        ctx.request,
        &model.def.version,
        &model.def.signature,
        outputs,
    )?;
    convert::append_outputs(&mut resp, extra);
    Ok(resp)
}
