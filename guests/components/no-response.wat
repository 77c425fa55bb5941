;; no-response: a wasi:http handler that returns without ever setting the response-outparam
;; (it does not drop its handles either). The host must answer 500.
(module
  (memory (export "memory") 1)
  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)))
