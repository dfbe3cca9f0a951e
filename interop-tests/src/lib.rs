//! Shared helpers for the interoperability tests: a codec-neutral view of a bundle's fields,
//! so that what one implementation encodes can be compared with what another decodes.

use std::path::PathBuf;

pub mod dtnd;

use bpa::Bundle;

/// One canonical block as every codec can describe it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlockFields {
    pub number: u64,
    pub block_type: u64,
    pub flags: u64,
    pub crc_type: u64,
    /// Block-type-specific data, as encoded on the wire.
    pub data: Vec<u8>,
}

/// The fields of a bundle that every codec exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFields {
    pub destination: String,
    pub source: String,
    pub report_to: String,
    pub creation_time: u64,
    pub sequence: u64,
    pub lifetime_ms: u64,
    pub flags: u64,
    pub primary_crc_type: u64,
    pub fragment: Option<(u64, u64)>,
    /// Every canonical block including the payload, ordered by block number.
    pub blocks: Vec<BlockFields>,
}

impl BundleFields {
    /// The fields of one of our bundles.
    pub fn of(bundle: &Bundle) -> BundleFields {
        let p = bundle.primary();
        let mut blocks: Vec<BlockFields> = bundle
            .blocks()
            .iter()
            .map(|b| BlockFields {
                number: b.number,
                block_type: b.block_type,
                flags: b.flags.0,
                crc_type: b.crc_type.code(),
                data: b.data.to_vec(),
            })
            .collect();
        blocks.sort();
        BundleFields {
            destination: p.destination.to_string(),
            source: p.source.to_string(),
            report_to: p.report_to.to_string(),
            creation_time: p.creation.time,
            sequence: p.creation.sequence,
            lifetime_ms: p.lifetime,
            flags: p.flags.0,
            primary_crc_type: p.crc_type.code(),
            fragment: p.fragment.map(|f| (f.offset, f.total_adu_length)),
            blocks,
        }
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// The Python interpreter of the virtual environment that `scripts/test` sets up with pyD3TN,
/// or `$PYD3TN_PYTHON`.
pub fn pyd3tn_python() -> PathBuf {
    std::env::var_os("PYD3TN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

/// Decodes a hex test vector file (whitespace ignored).
pub fn read_hex_vector(name: &str) -> Vec<u8> {
    let path = workspace_root().join("interop-tests/vectors").join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let clean: String = text.split_whitespace().collect();
    hex::decode(clean.trim_start_matches("0x"))
        .unwrap_or_else(|e| panic!("{} is not hex: {e}", path.display()))
}

/// A dtn7-rs 0.21.0 program (`dtnd`, `dtnsend`, `dtnrecv`): from `$DTN7_BIN_DIR`, else
/// `~/.cargo/bin` where `scripts/test` installs it (`cargo install --locked dtn7 --version
/// 0.21.0`), else the `PATH`.
pub fn dtn7_program(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("DTN7_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let installed = PathBuf::from(home).join(".cargo/bin").join(name);
        if installed.exists() {
            return installed;
        }
    }
    PathBuf::from(name)
}

/// A command running `interop-tests/py/SCRIPT` with the Python that has pyD3TN.
pub fn pyd3tn_script(script: &str, args: &[&str]) -> std::process::Command {
    let python = pyd3tn_python();
    assert!(
        python.exists(),
        "no Python with pyD3TN at {}: run scripts/test or set PYD3TN_PYTHON",
        python.display()
    );
    let mut command = std::process::Command::new(python);
    command.arg(workspace_root().join("interop-tests/py").join(script)).args(args);
    command
}

/// Starts a pyD3TN script that listens and says so on its first line of output; answers once
/// it has said so, with the child and the rest of its output, a line at a time. Call from a
/// blocking context (`tokio::task::block_in_place` in async tests).
pub fn pyd3tn_listening(
    script: &str,
    args: &[&str],
) -> (Reaped, std::io::Lines<std::io::BufReader<std::process::ChildStdout>>) {
    use std::io::BufRead;
    let mut child = Reaped(
        pyd3tn_script(script, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start pyD3TN"),
    );
    let mut lines = std::io::BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("read");
    assert!(first.contains("listening"), "{first}");
    (child, lines)
}

/// A child process killed (by its PID) and reaped when dropped, however the test ends.
#[derive(Debug)]
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
