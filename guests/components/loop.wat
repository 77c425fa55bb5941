;; loop: a wasi:http handler that never returns. The host must stop it at the request deadline
;; (--request-timeout), answer 500 and keep serving.
(module
  (memory (export "memory") 1)
  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (loop $forever (br $forever))))
