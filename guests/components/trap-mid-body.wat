;; trap-mid-body: starts a 200 response (`content-type: text/plain`), writes and flushes
;; `partial body` (12 bytes, no content-length), then traps with `unreachable`. The host must
;; cut the body short, log the trap and keep serving.
(module
  (import "wasi:http/types@0.2.0" "[static]fields.from-list"
    (func $fields_from_list (param i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[constructor]outgoing-response"
    (func $new_response (param i32) (result i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-response.body"
    (func $response_body (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-body.write"
    (func $body_write (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[static]response-outparam.set"
    (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush"
    (func $write (param i32 i32 i32 i32)))

  (memory (export "memory") 1)

  (data (i32.const 64) "\80\00\00\00\0c\00\00\00\8c\00\00\00\0a\00\00\00")
  (data (i32.const 128) "content-typetext/plain")
  (data (i32.const 160) "partial body")

  (func $ok (param $ptr i32) (result i32)
    (if (i32.load8_u (local.get $ptr)) (then unreachable))
    (i32.load offset=4 (local.get $ptr)))

  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (local $response i32) (local $stream i32)
    (call $fields_from_list (i32.const 64) (i32.const 1) (i32.const 0))
    (local.set $response (call $new_response (call $ok (i32.const 0))))
    (call $response_body (local.get $response) (i32.const 0))
    (call $body_write (call $ok (i32.const 0)) (i32.const 0))
    (local.set $stream (call $ok (i32.const 0)))
    (call $outparam_set (local.get $out)
      (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $write (local.get $stream) (i32.const 160) (i32.const 12) (i32.const 0))
    (drop (call $ok (i32.const 0)))
    unreachable))
