//! WebAssembly binaries made byte by byte for hostile-input tests (no toolchain needed).

/// `n` as unsigned LEB128.
fn leb(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A section: its id, then its contents' size and the contents.
fn section(id: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(leb(contents.len()));
    out.extend_from_slice(contents);
    out
}

/// A component holding one core module of `functions` functions, each about `body_bytes` of
/// straight-line 64-bit arithmetic on a parameter whose result is returned (nothing to fold or
/// drop): valid, slow to compile and memory-hungry while compiling (Cranelift keeps every
/// instruction). It does not fit the `sluice:udf`
/// world, so even once compiled it is refused. A custom section carries a fresh nonce, so no
/// compiled-module cache (the host's is on disk, by content hash) has it from an earlier run.
pub fn slow_to_compile_component(functions: usize, body_bytes: usize) -> Vec<u8> {
    // One instruction group: local1 = local1 * param + param; nop (11 bytes).
    const GROUP: [u8; 11] = [
        0x20, 0x01, 0x20, 0x00, 0x7e, 0x20, 0x00, 0x7c, 0x21, 0x01, 0x01,
    ];
    let mut body = vec![0x01, 0x08, 0x7e]; // one local declaration: 8 x i64
    for _ in 0..body_bytes / GROUP.len() {
        body.extend_from_slice(&GROUP);
    }
    body.extend_from_slice(&[0x20, 0x01, 0x0b]); // return local1 (keeps it all live); end
    let mut code = leb(functions);
    for _ in 0..functions {
        code.extend(leb(body.len()));
        code.extend_from_slice(&body);
    }
    let mut funcs = leb(functions);
    funcs.extend(std::iter::repeat_n(0x00, functions)); // every function of type 0
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend(section(1, &[0x01, 0x60, 0x01, 0x7e, 0x01, 0x7e])); // type 0: [i64] -> [i64]
    module.extend(section(3, &funcs));
    module.extend(section(10, &code));
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id());
    let mut custom = leb(5);
    custom.extend_from_slice(b"nonce");
    custom.extend_from_slice(&nonce.to_le_bytes());
    module.extend(section(0, &custom));
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    component.extend(section(1, &module)); // a core module section
    component
}

/// `component` with `memories` more linear memories of `pages` 64 KiB pages each, created when
/// it is instantiated: each in a core module of its own (`(module (memory PAGES))`),
/// instantiated by core instance sections appended to the component. Whatever the component
/// does, instantiating it asks the sandbox for all of them on top of its own.
pub fn with_extra_memories(component: &[u8], memories: usize, pages: usize) -> Vec<u8> {
    // Core modules are numbered in the order their sections appear: count the existing ones.
    let mut modules = 0;
    let mut at = 8; // after the preamble
    while at < component.len() {
        let id = component[at];
        let (size, read) = read_leb(&component[at + 1..]);
        if id == 1 {
            modules += 1;
        }
        at += 1 + read + size;
    }
    let mut memory = b"\0asm\x01\0\0\0".to_vec();
    let mut limits = vec![0x01, 0x00]; // one memory, minimum only
    limits.extend(leb(pages));
    memory.extend(section(5, &limits));
    let mut out = component.to_vec();
    for i in 0..memories {
        out.extend(section(1, &memory));
        // One core instance: instantiate module `modules + i` with no arguments.
        let mut instance = vec![0x01, 0x00];
        instance.extend(leb(modules + i));
        instance.push(0x00);
        out.extend(section(2, &instance));
    }
    out
}

/// An unsigned LEB128 number at the start of `bytes`, and how many bytes it took.
fn read_leb(bytes: &[u8]) -> (usize, usize) {
    let (mut value, mut shift) = (0usize, 0);
    for (i, byte) in bytes.iter().enumerate() {
        value |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return (value, i + 1);
        }
        shift += 7;
    }
    (value, bytes.len())
}

/// The sha256 of `bytes` in lower-case hex: a UDF version is `NAME@` and its first 8 digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
