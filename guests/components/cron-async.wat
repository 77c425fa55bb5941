;; A cron component of the plugin's async generation (wit/spin-cron-async: `handle-cron-event`
;; is an `async func`), lifted with the plain ABI: enough for wasmtime to see the async type and
;; for wasmlet to refuse it at startup. The handler is never meant to run (it traps).
(module
  (memory (export "memory") 0)
  (func (export "handle-cron-event") (param i64) (result i32)
    unreachable)
  (func (export "cabi_post_handle-cron-event") (param i32))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    unreachable))
