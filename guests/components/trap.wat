;; trap: a wasi:http handler that traps at once, two calls deep. Its function names stay in the
;; name section, so wasmtime's backtrace shows them; one is markup, for the status page's test:
;; guest text must be shown as text, never run.
(module
  (memory (export "memory") 1)
  (func $<script>document.title='pwned'</script>
    unreachable)
  (func $handle_request
    (call $<script>document.title='pwned'</script>))
  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (call $handle_request)))
