//! A deliberately hostile UDF for the host's sandbox tests. Each message value is a command:
//!
//! | value          | what the guest does                                         |
//! |----------------|-------------------------------------------------------------|
//! | `loop`         | spins forever (the host's deadline must stop it)            |
//! | `alloc`        | allocates and touches far more memory than any cap allows   |
//! | `panic`        | panics (a trap, with its message on guest stderr)           |
//! | `wrong-count`  | answers the whole batch with one result too many            |
//! | `fail`         | returns a `failed` error for that message                   |
//! | `log`          | writes to stdout, stderr and `host.log`, then echoes        |
//! | `env`          | reports env vars, whether `/` lists, and what TCP connect says |
//! | `sleep`        | sleeps 30 s (the deadline must still end the call)          |
//! | `nap`          | sleeps 1 ms, then echoes (a short wait within the deadline) |
//! | `poll`         | waits 30 s on a clock pollable through `wasi:io/poll`       |
//! | anything else  | echoed back unchanged                                       |
//!
//! `init` obeys the config key `init`: `trap` panics, `fail` returns an error, `print` writes to
//! stdout and stderr and succeeds, `sleep` sleeps 30 s.
//! It implements the raw world (not `sluice_udf::Udf`) so it can break the contract.
//!
//! Its scalar function `HOSTILE(command)` (for SQL) obeys `panic`, `loop` and `wrong-count`
//! the same way, answers `fail` with an error for that row, and echoes anything else as text.

use sluice_udf::bindings::exports::sluice::udf::scalar;
use sluice_udf::bindings::Guest;
use sluice_udf::{Level, Message, UdfError, Value};

struct Hostile;

impl Guest for Hostile {
    fn init(config: Vec<(String, String)>) -> Result<(), UdfError> {
        match config
            .iter()
            .find(|(k, _)| k == "init")
            .map(|(_, v)| v.as_str())
        {
            Some("trap") => panic!("hostile init panicked on purpose"),
            Some("fail") => Err(UdfError::failed("hostile init refused on purpose")),
            Some("print") => {
                println!("hostile init says hello on stdout");
                eprintln!("hostile init says hello on stderr");
                Ok(())
            }
            Some("sleep") => {
                std::thread::sleep(std::time::Duration::from_secs(30));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn process(batch: Vec<Message>) -> Vec<Result<Vec<Message>, UdfError>> {
        let lie = batch.iter().any(|m| m.value == b"wrong-count");
        let mut results: Vec<_> = batch.into_iter().map(one).collect();
        if lie {
            results.push(Ok(Vec::new()));
        }
        results
    }
}

fn one(msg: Message) -> Result<Vec<Message>, UdfError> {
    match msg.value.as_slice() {
        b"loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        b"alloc" => {
            let mut hog: Vec<Vec<u8>> = Vec::new();
            loop {
                hog.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&hog);
            }
        }
        b"panic" => panic!("hostile guest panicked on purpose"),
        b"sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(30));
            Ok(vec![msg])
        }
        b"nap" => {
            std::thread::sleep(std::time::Duration::from_millis(1));
            Ok(vec![msg])
        }
        b"poll" => {
            let timer = wasip2::clocks::monotonic_clock::subscribe_duration(30_000_000_000);
            wasip2::io::poll::poll(&[&timer]);
            Ok(vec![msg])
        }
        b"fail" => Err(UdfError::failed("hostile guest failed on purpose")),
        b"log" => {
            println!("hostile stdout line");
            eprintln!("hostile stderr line");
            sluice_udf::log(Level::Warn, "hostile host.log line");
            Ok(vec![msg])
        }
        b"env" => {
            let vars = std::env::vars().count();
            let root = std::fs::read_dir("/").is_ok();
            // Denied network shows as an error other than ConnectionRefused.
            let tcp = match std::net::TcpStream::connect("127.0.0.1:1") {
                Ok(_) => "connected".to_string(),
                Err(err) => format!("{:?}", err.kind()),
            };
            Ok(vec![
                msg.with_value(format!("vars={vars} root={root} tcp={tcp}"))
            ])
        }
        _ => Ok(vec![msg]),
    }
}

impl scalar::Guest for Hostile {
    fn call(_function: String, rows: Vec<Vec<Value>>) -> Vec<Result<Value, UdfError>> {
        let mut results = Vec::with_capacity(rows.len() + 1);
        for row in rows {
            let command = match row.first() {
                Some(Value::Text(text)) => text.clone(),
                _ => String::new(),
            };
            match command.as_str() {
                "panic" => panic!("hostile scalar call panicked on purpose"),
                "loop" => loop {
                    std::hint::black_box(0);
                },
                "wrong-count" => results.push(Ok(Value::Null)),
                "fail" => {
                    results.push(Err(UdfError::failed("hostile scalar refused on purpose")));
                    continue;
                }
                _ => {}
            }
            results.push(Ok(Value::Text(command)));
        }
        results
    }
}

// A native build (the workspace's `cargo build`) cannot link the scalar export's symbol names.
#[cfg(target_arch = "wasm32")]
sluice_udf::bindings::export!(Hostile with_types_in sluice_udf::bindings);

// Natively the exports are not linked; this keeps them checked and counted as used.
#[cfg(not(target_arch = "wasm32"))]
const _: () = {
    let _ = <Hostile as Guest>::process;
    let _ = <Hostile as scalar::Guest>::call;
};
