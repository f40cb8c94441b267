//! Digests of model files: an artifact's sha256, and a folder's manifest digest (what
//! a signature covers with `covers = "folder"`, see [`crate::signing`]).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The manifest digest of a folder: the sha256 of one line `<sha256>  <path>\n` per file
/// (paths relative to `dir`, `/`-separated, byte-sorted; `*.sig` files left out), which
/// is what `find . -type f ! -name '*.sig' -printf '%P\n' | LC_ALL=C sort | xargs -d '\n'
/// sha256sum | sha256sum` prints inside `dir`.
pub fn manifest(dir: &Path) -> Result<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for e in entries {
            let e = e.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let path = e.path();
            let kind = e
                .file_type()
                .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() && path.extension().is_none_or(|x| x != "sig") {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(rel.join("/"));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for f in &files {
        h.update(format!("{}  {f}\n", sha256_file(&dir.join(f))?).as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_what_sha256sum_gives() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b.txt"), "b").unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("model.sig"), "{}").unwrap();
        let line = |s: &str, p: &str| format!("{}  {p}\n", hex::encode(Sha256::digest(s)));
        let want = hex::encode(Sha256::digest(
            format!("{}{}", line("b", "b.txt"), line("a", "sub/a.txt")).as_bytes(),
        ));
        assert_eq!(manifest(dir.path()).unwrap(), want);
    }
}
