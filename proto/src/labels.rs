//! The words a person reads for the wire's enums (CLI tables, dashboards).

use crate::troupe as tpb;

/// A `ModelState` as shown: READY, PENDING, ...
pub fn state_name(s: i32) -> &'static str {
    match tpb::ModelState::try_from(s) {
        Ok(tpb::ModelState::Pending) => "PENDING",
        Ok(tpb::ModelState::Loading) => "LOADING",
        Ok(tpb::ModelState::Ready) => "READY",
        Ok(tpb::ModelState::Unavailable) => "UNAVAILABLE",
        Ok(tpb::ModelState::Failed) => "FAILED",
        _ => "UNKNOWN",
    }
}

/// A `BackendKind` as shown: torch, onnx, candle.
pub fn backend_name(b: i32) -> &'static str {
    match tpb::BackendKind::try_from(b) {
        Ok(tpb::BackendKind::Torch) => "torch",
        Ok(tpb::BackendKind::Onnx) => "onnx",
        Ok(tpb::BackendKind::Candle) => "candle",
        _ => "?",
    }
}
