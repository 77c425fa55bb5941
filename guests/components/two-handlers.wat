;; two-handlers: exports both `wasi:http/incoming-handler@0.2.0` and
;; `fermyon:spin/inbound-http` (world `two-handlers` in wit/wasi-0.2.0). A Spin-compatible host
;; must refuse it at load time ("exactly one handler"), so neither function is meant to run:
;; `handle` returns without a response, `handle-request` answers 200 with no headers or body.
(module
  (memory (export "memory") 1)
  (func (export "cabi_realloc")
    (param i32 i32 i32 i32) (result i32)
    unreachable)
  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32))
  (func (export "fermyon:spin/inbound-http#handle-request")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (i32.store16 (i32.const 32) (i32.const 200))
    (i32.store8 (i32.const 36) (i32.const 0))
    (i32.store8 (i32.const 48) (i32.const 0))
    (i32.const 32)))
