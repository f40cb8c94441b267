//! `troupe sign`: a detached ed25519 signature of a model's artifact (or its whole
//! version folder), in the file the node checks at load (`troupe_proto::signing`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use troupe_client::troupe_proto::{digest, signing};

use crate::failure::Failure;

#[derive(Args, Debug)]
pub(crate) struct SignArgs {
    /// The artifact (model.onnx, model.pt, model.safetensors), or with --folder the
    /// version folder.
    path: PathBuf,
    /// The private key: PKCS#8 PEM (`openssl genpkey -algorithm ed25519 -out key.pem`).
    #[arg(long)]
    key: PathBuf,
    /// Sign the whole folder's manifest (every file but *.sig) instead of one file.
    #[arg(long)]
    folder: bool,
    /// Where the signature goes (default: <artifact>.sig, or <folder>/model.sig with
    /// --folder).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub(crate) fn run(args: SignArgs) -> Result<(), Failure> {
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("cannot read {}", args.key.display()))?;
    let key = signing::parse_private_key(&pem).map_err(anyhow::Error::msg)?;
    let (covers, d, default_out) = if args.folder {
        (
            signing::Covers::Folder,
            digest::manifest(&args.path).map_err(anyhow::Error::msg)?,
            args.path.join("model.sig"),
        )
    } else {
        (
            signing::Covers::Artifact,
            digest::sha256_file(&args.path).map_err(anyhow::Error::msg)?,
            signing::default_signature_path(&args.path),
        )
    };
    let sig = signing::sign(&key, covers, &d);
    let out = args.output.unwrap_or(default_out);
    let text = serde_json::to_string_pretty(&sig).unwrap_or_default();
    std::fs::write(&out, text + "\n").with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("signed {} digest {d} -> {}", covers.as_str(), out.display());
    eprintln!("public key (for [signing] public_key, or a --trust-file):");
    println!(
        "{}",
        signing::public_key_pem(&key.verifying_key()).trim_end()
    );
    Ok(())
}
