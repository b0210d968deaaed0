//! Compiling a UDF module in a child process (`sluice __compile-udf`), so its budget is real:
//! the child's data memory is capped (`RLIMIT_DATA`) and it is killed when the time budget is
//! spent. The child compiles with the same engine settings as the host and writes the
//! precompiled component to stdout; the host loads it with `Component::deserialize`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// How to run the compiling child.
#[derive(Debug, Clone)]
pub struct CompilerProcess {
    /// The `sluice` executable (the host's own, `std::env::current_exe`).
    pub program: PathBuf,
    /// The child's memory budget, in bytes (its heap, stacks and other private mappings).
    pub memory_bytes: u64,
}

/// Why the child did not produce a component.
#[derive(Debug)]
pub(super) enum ChildFailure {
    /// The time budget passed; the child was killed.
    Timeout,
    /// The child ran out of its memory budget.
    Memory,
    /// The module was refused (wasmtime's reason), or the child could not run.
    Refused(String),
}

/// The argument that makes `sluice` the compiling child.
pub const SUBCOMMAND: &str = "__compile-udf";

/// Compiles `wasm` in a child process by `deadline`; returns the precompiled component.
pub(super) fn compile(
    process: &CompilerProcess,
    fuel_metering: bool,
    wasm: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, ChildFailure> {
    let mut cmd = Command::new(&process.program);
    cmd.arg(SUBCOMMAND)
        .args(fuel_metering.then_some("--fuel"))
        .env_remove("SLUICE_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let limit = process.memory_bytes;
    // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe and nothing
    // else is touched.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &rlimit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ChildFailure::Refused(format!("cannot start the compiler process: {e}")))?;
    // Fed and drained on threads of their own: the module can be larger than a pipe.
    let feed = child.stdin.take().map(|mut stdin| {
        let wasm = wasm.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&wasm);
        })
    });
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ChildFailure::Timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(err) => return Err(ChildFailure::Refused(format!("compiler process: {err}"))),
        }
    };
    if let Some(feed) = feed {
        let _ = feed.join();
    }
    let output = stdout.join().unwrap_or_default();
    let errors = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    if status.success() {
        return Ok(output);
    }
    // Rust aborts on a failed allocation ("memory allocation of N bytes failed"); a failed
    // stack or thread mapping can end it another way, still under the cap.
    if errors.contains("memory allocation")
        || errors.contains("Cannot allocate memory")
        || errors.contains("out of memory")
    {
        return Err(ChildFailure::Memory);
    }
    let reason = errors.trim();
    if status.code() == Some(REFUSED) && !reason.is_empty() {
        return Err(ChildFailure::Refused(reason.to_string()));
    }
    // Killed by a signal or crashed: under a memory cap, running out is the likely cause.
    Err(ChildFailure::Memory)
}

/// The child's exit status when wasmtime refused the module (its reason on stderr).
const REFUSED: i32 = 1;

/// The child's side: reads a module on stdin, writes the precompiled component on stdout, or
/// wasmtime's reason on stderr with exit status 1.
pub fn child_main(fuel_metering: bool) -> i32 {
    let mut wasm = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut wasm) {
        eprintln!("cannot read the module: {err}");
        return REFUSED;
    }
    let engine = match Engine::new(&super::engine_config(fuel_metering)) {
        Ok(engine) => engine,
        Err(err) => {
            eprintln!("cannot start the Wasm engine: {err:#}");
            return REFUSED;
        }
    };
    match engine.precompile_component(&wasm) {
        Ok(bytes) => match std::io::stdout().write_all(&bytes) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("cannot write the compiled module: {err}");
                REFUSED
            }
        },
        Err(err) => {
            eprintln!("{err:#}");
            REFUSED
        }
    }
}
