//! The HTTP/2 settings a node and a router serve with, in one place.
//!
//! The largest DATA frame a peer may send them is 1 MiB, not HTTP/2's default of 16 KiB:
//! an image-sized tensor (602 KB for 3×224×224 FP32) then arrives in one frame instead of
//! 37, each of which costs the connection task a wake-up and a window update. Measured
//! with `MODEL=wide scripts/bench_ab_load.sh` (docs/benchmarks.md): 1.5–1.75× the calls/s
//! for such requests at concurrency 1, 8 and 32, and no change for small ones. The flow
//! control windows (1 MiB per stream and per connection) stay hyper's: larger ones
//! changed nothing measurable.

/// The largest HTTP/2 frame a Troupe server accepts (what it advertises in SETTINGS).
pub const MAX_FRAME_SIZE: u32 = 1 << 20;

/// A tonic server builder with Troupe's HTTP/2 settings.
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder().max_frame_size(Some(MAX_FRAME_SIZE))
}
