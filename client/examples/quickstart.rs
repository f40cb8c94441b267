//! Calls the example MLP on each backend through a running node and prints the answers.
//!
//! `cargo run -p troupe-client --example quickstart -- 127.0.0.1:8001`

use troupe_client::{Client, InputTensor};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8001".into());
    let mut client = Client::connect(&addr).await?;
    println!("server ready: {}", client.server_ready().await?);
    // Two rows of 16 features.
    let x: Vec<f32> = (0..32).map(|i| ((i as f32) - 16.0) / 8.0).collect();
    let mut answers = Vec::new();
    for model in ["mlp_onnx", "mlp_torch", "mlp_candle"] {
        let t = std::time::Instant::now();
        let out = client
            .infer(model, vec![InputTensor::f32("input", vec![2, 16], &x)])
            .await?;
        let y = out.f32("output")?;
        println!(
            "{model:>11} -> {:?} ({:.2} ms)",
            y.iter().map(|v| format!("{v:.5}")).collect::<Vec<_>>(),
            t.elapsed().as_secs_f64() * 1e3
        );
        answers.push(y);
    }
    let diff = answers[1..]
        .iter()
        .flat_map(|a| a.iter().zip(&answers[0]).map(|(p, q)| (p - q).abs()))
        .fold(0.0f32, f32::max);
    println!("largest difference between backends: {diff:.2e}");
    match client
        .infer(
            "mlp_onnx",
            vec![InputTensor::f32("input", vec![1, 15], &[0.0; 15])],
        )
        .await
    {
        Err(e) => println!("a bad call is refused clearly: {e}"),
        Ok(_) => println!("unexpected: a bad call was accepted"),
    }
    Ok(())
}
