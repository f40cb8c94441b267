//! Raw gRPC for the fuzz: pre-encoded request bytes through tonic's own framing
//! ([`BytesCodec`]), and hand-made frames straight onto the HTTP/2 channel.

use bytes::{Buf, BufMut, Bytes};
use http_body_util::BodyExt;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::transport::Channel;

pub const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// A codec that sends its bytes as the message and hands back the answer's bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

#[derive(Debug)]
pub struct BytesEncoder;

#[derive(Debug)]
pub struct BytesDecoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesEncoder;
    type Decoder = BytesDecoder;
    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }
    fn decoder(&mut self) -> BytesDecoder {
        BytesDecoder
    }
}

/// ModelInfer with `message` as the request's protobuf bytes; the answer's bytes.
pub async fn unary_bytes(channel: Channel, message: Bytes) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("channel not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static(MODEL_INFER);
    grpc.unary(tonic::Request::new(message), path, BytesCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// POSTs `body` (gRPC frames, made by hand) to ModelInfer. The answer's status (from its
/// headers or trailers) and, when OK, its one message's bytes. Err: the call failed
/// below gRPC (the stream was reset or the connection dropped).
pub async fn post_frames(channel: Channel, body: Bytes) -> Result<(Status, Bytes), String> {
    let mut ch = channel;
    std::future::poll_fn(|cx| tonic::codegen::Service::poll_ready(&mut ch, cx))
        .await
        .map_err(|e| format!("channel not ready: {e}"))?;
    let req = http::Request::builder()
        .method("POST")
        .uri(MODEL_INFER)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(body)))
        .map_err(|e| e.to_string())?;
    let resp = tonic::codegen::Service::call(&mut ch, req)
        .await
        .map_err(|e| format!("HTTP/2 call failed: {e}"))?;
    let (parts, body) = resp.into_parts();
    if let Some(s) = Status::from_header_map(&parts.headers) {
        return Ok((s, Bytes::new()));
    }
    let collected = body
        .collect()
        .await
        .map_err(|e| format!("answer body failed: {e}"))?;
    let trailers = collected
        .trailers()
        .cloned()
        .ok_or("an answer with neither grpc-status header nor trailers")?;
    let status = Status::from_header_map(&trailers).ok_or("trailers without grpc-status")?;
    let mut data = collected.to_bytes();
    if data.len() < 5 {
        return Ok((status, Bytes::new()));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    data.advance(5);
    Ok((status, data.slice(..len.min(data.len()))))
}
