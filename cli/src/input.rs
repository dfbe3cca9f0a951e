//! Reading bundles and payloads from files or standard input.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use anyhow::Context;

/// A readable source: a file, or standard input for `-` or no path.
pub fn open(path: Option<&Path>) -> anyhow::Result<(Box<dyn Read>, String)> {
    match path {
        None => Ok((Box::new(io::stdin().lock()), "<stdin>".to_string())),
        Some(p) if p == Path::new("-") => Ok((Box::new(io::stdin().lock()), "<stdin>".to_string())),
        Some(p) => {
            let file = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            Ok((Box::new(file), p.display().to_string()))
        }
    }
}

/// Reads all of a source, refusing more than `limit` bytes.
pub fn read_all(reader: &mut dyn Read, name: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    reader.take(limit + 1).read_to_end(&mut data).with_context(|| format!("cannot read {name}"))?;
    if data.len() as u64 > limit {
        anyhow::bail!("{name} is larger than {limit} bytes; raise --max-size if this is intended");
    }
    Ok(data)
}
