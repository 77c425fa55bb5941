"""wasmlet: serverless WebAssembly, Spin-compatible."""

__version__ = "0.1.0"
