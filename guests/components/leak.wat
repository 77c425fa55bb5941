;; leak: a wasi:http handler that creates 20,000 `fields` resources and drops none of them
;; (nor its request), then answers 200 with an empty body via from-list. The host must free
;; everything with the instance: memory stays flat across requests.
(module
  (import "wasi:http/types@0.2.0" "[constructor]fields" (func $new_fields (result i32)))
  (import "wasi:http/types@0.2.0" "[static]fields.from-list"
    (func $fields_from_list (param i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[constructor]outgoing-response"
    (func $new_response (param i32) (result i32)))
  (import "wasi:http/types@0.2.0" "[static]response-outparam.set"
    (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 4096))
  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (local $i i32)
    (loop $more
      (drop (call $new_fields))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 20000))))
    ;; from-list of an empty list: result<fields, header-error> lands at address 0
    (call $fields_from_list (i32.const 0) (i32.const 0) (i32.const 0))
    ;; outparam.set(out, ok(outgoing-response(fields)))
    (call $outparam_set
      (local.get $out)
      (i32.const 0)
      (call $new_response (i32.load (i32.const 4)))
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))))
