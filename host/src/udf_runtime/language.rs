//! What built a UDF component, read off its bytes, so that the sandbox defaults fit it: an
//! interpreter compiled into the component (CPython from componentize-py, SpiderMonkey from
//! componentize-js) needs more memory than compiled Rust. Only the defaults change; a limit
//! the pipeline sets is enforced as it is, whatever the language.

/// The kind of guest, for its default limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestLanguage {
    /// Compiled code (Rust, C, Go...): no interpreter inside.
    Compiled,
    /// Python, from componentize-py (CPython linked in as `libpython3.*.so`).
    Python,
    /// JavaScript, from componentize-js (the StarlingMonkey engine).
    JavaScript,
}

/// Bytes that only a componentize-py component holds: the name its CPython library is linked by.
const PYTHON_MARK: &[u8] = b"libpython3.";
/// Bytes that only a componentize-js component holds: its engine's name, in its data.
const JAVASCRIPT_MARK: &[u8] = b"StarlingMonkey";

impl GuestLanguage {
    /// The language of the component `wasm`.
    pub fn detect(wasm: &[u8]) -> Self {
        if memchr::memmem::find(wasm, PYTHON_MARK).is_some() {
            GuestLanguage::Python
        } else if memchr::memmem::find(wasm, JAVASCRIPT_MARK).is_some() {
            GuestLanguage::JavaScript
        } else {
            GuestLanguage::Compiled
        }
    }

    /// Its name in listings and logs.
    pub fn name(self) -> &'static str {
        match self {
            GuestLanguage::Compiled => "compiled",
            GuestLanguage::Python => "python",
            GuestLanguage::JavaScript => "javascript",
        }
    }

    /// The memory cap per instance when the pipeline sets none (`memory_mib`).
    pub fn default_memory_bytes(self) -> u64 {
        match self {
            GuestLanguage::Compiled => 64 << 20,
            GuestLanguage::Python => 128 << 20,
            GuestLanguage::JavaScript => 128 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marks_decide_and_compiled_is_the_rest() {
        assert_eq!(
            GuestLanguage::detect(b"\0asm..libpython3.14.so:memory_base"),
            GuestLanguage::Python
        );
        assert_eq!(
            GuestLanguage::detect(b"\0asm..--StarlingMonkeyFormBoundary"),
            GuestLanguage::JavaScript
        );
        assert_eq!(GuestLanguage::detect(b"\0asm"), GuestLanguage::Compiled);
        assert!(
            GuestLanguage::Python.default_memory_bytes()
                > GuestLanguage::Compiled.default_memory_bytes()
        );
    }
}
