;; sleep: a wasi:http handler that waits before it answers: it blocks 5 s on a monotonic-clock
;; pollable (subscribe-duration + block), then responds 200 `text/plain` `slept`. A guest
;; waiting in a host call: a request timeout shorter than its wait must end it (500), and
;; many of them waiting must not hold up other requests.
;; Memory: 0..32 return areas; 64.. the header list and the text; 1024.. a bump heap.
(module
  (import "wasi:http/types@0.2.0" "[static]fields.from-list"
    (func $fields_from_list (param i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[constructor]outgoing-response"
    (func $new_response (param i32) (result i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-response.body"
    (func $response_body (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-body.write"
    (func $body_write (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[static]outgoing-body.finish"
    (func $body_finish (param i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[static]response-outparam.set"
    (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[resource-drop]incoming-request"
    (func $drop_request (param i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush"
    (func $write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream"
    (func $drop_output_stream (param i32)))
  (import "wasi:clocks/monotonic-clock@0.2.0" "subscribe-duration"
    (func $subscribe_duration (param i64) (result i32)))
  (import "wasi:io/poll@0.2.0" "[method]pollable.block" (func $block (param i32)))
  (import "wasi:io/poll@0.2.0" "[resource-drop]pollable" (func $drop_pollable (param i32)))

  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))

  ;; list<tuple<field-key, field-value>> with one entry: ("content-type", "text/plain")
  (data (i32.const 64) "\80\00\00\00\0c\00\00\00\8c\00\00\00\0a\00\00\00")
  (data (i32.const 128) "content-typetext/plain")
  (data (i32.const 160) "slept\0a")

  (func (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (local.get $ptr))

  ;; Trap unless the result at `ptr` is ok; return its i32 payload.
  (func $ok (param $ptr i32) (result i32)
    (if (i32.load8_u (local.get $ptr)) (then unreachable))
    (i32.load offset=4 (local.get $ptr)))

  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (local $response i32) (local $body i32) (local $stream i32) (local $timer i32)
    (call $drop_request (local.get $request))
    (local.set $timer (call $subscribe_duration (i64.const 5000000000)))
    (call $block (local.get $timer))
    (call $drop_pollable (local.get $timer))
    (call $fields_from_list (i32.const 64) (i32.const 1) (i32.const 0))
    (local.set $response (call $new_response (call $ok (i32.const 0))))
    (call $response_body (local.get $response) (i32.const 0))
    (local.set $body (call $ok (i32.const 0)))
    (call $body_write (local.get $body) (i32.const 0))
    (local.set $stream (call $ok (i32.const 0)))
    (call $outparam_set (local.get $out)
      (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $write (local.get $stream) (i32.const 160) (i32.const 6) (i32.const 0))
    (drop (call $ok (i32.const 0)))
    (call $drop_output_stream (local.get $stream))
    (call $body_finish (local.get $body) (i32.const 0) (i32.const 0) (i32.const 0))
    (drop (call $ok (i32.const 0)))))
