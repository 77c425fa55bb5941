;; poll-splice: host calls that carry two borrowed handles.
;;
;; 1. Subscribes to two monotonic-clock durations, 2 s and 20 ms, and `poll`s both
;;    (list<borrow<pollable>>): the answer names the ready one, `ready:1` for the 20 ms one.
;; 2. Moves the request body to the response body with `output-stream.blocking-splice`
;;    (borrow<output-stream>, borrow<input-stream>) until the request body ends.
;; The response is 200 `text/plain`: `ready:N\n` then the request body. Any failure traps.
;; Memory: 0..64 return areas; 64.. the header list and texts; 65536.. a bump heap.
(module
  (import "wasi:http/types@0.2.0" "[method]incoming-request.consume"
    (func $request_consume (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-body.stream"
    (func $body_stream (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[resource-drop]incoming-body"
    (func $drop_incoming_body (param i32)))
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
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-splice"
    (func $splice (param i32 i32 i64 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]input-stream"
    (func $drop_input_stream (param i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream"
    (func $drop_output_stream (param i32)))
  (import "wasi:clocks/monotonic-clock@0.2.0" "subscribe-duration"
    (func $subscribe_duration (param i64) (result i32)))
  (import "wasi:io/poll@0.2.0" "poll" (func $poll (param i32 i32 i32)))
  (import "wasi:io/poll@0.2.0" "[resource-drop]pollable" (func $drop_pollable (param i32)))

  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))

  ;; list<tuple<field-key, field-value>> with one entry: ("content-type", "text/plain")
  (data (i32.const 64) "\80\00\00\00\0c\00\00\00\8c\00\00\00\0a\00\00\00")
  (data (i32.const 128) "content-typetext/plain")
  (data (i32.const 160) "ready:?\0a")

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
    (local $in_body i32) (local $in i32) (local $slow i32) (local $fast i32)
    (local $response i32) (local $out_body i32) (local $stream i32)
    (call $request_consume (local.get $request) (i32.const 0))
    (local.set $in_body (call $ok (i32.const 0)))
    (call $body_stream (local.get $in_body) (i32.const 0))
    (local.set $in (call $ok (i32.const 0)))
    ;; poll([2 s, 20 ms]) → list<u32>: (ptr, len) at 0; exactly one index expected.
    (local.set $slow (call $subscribe_duration (i64.const 2000000000)))
    (local.set $fast (call $subscribe_duration (i64.const 20000000)))
    (i32.store (i32.const 32) (local.get $slow))
    (i32.store (i32.const 36) (local.get $fast))
    (call $poll (i32.const 32) (i32.const 2) (i32.const 0))
    (if (i32.ne (i32.load (i32.const 4)) (i32.const 1)) (then unreachable))
    (i32.store8 (i32.const 166)
      (i32.add (i32.const 48) (i32.load (i32.load (i32.const 0)))))
    (call $drop_pollable (local.get $slow))
    (call $drop_pollable (local.get $fast))
    ;; The response, then the body spliced across.
    (call $fields_from_list (i32.const 64) (i32.const 1) (i32.const 0))
    (local.set $response (call $new_response (call $ok (i32.const 0))))
    (call $response_body (local.get $response) (i32.const 0))
    (local.set $out_body (call $ok (i32.const 0)))
    (call $body_write (local.get $out_body) (i32.const 0))
    (local.set $stream (call $ok (i32.const 0)))
    (call $outparam_set (local.get $out)
      (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $write (local.get $stream) (i32.const 160) (i32.const 8) (i32.const 0))
    (if (i32.load8_u (i32.const 0)) (then unreachable))
    ;; blocking-splice → result<u64, stream-error>: tag at 0, payload at 8; `closed` is 1.
    (block $end
      (loop $more
        (call $splice (local.get $stream) (local.get $in) (i64.const 4096) (i32.const 0))
        (if (i32.load8_u (i32.const 0))
          (then
            (br_if $end (i32.eq (i32.load8_u (i32.const 8)) (i32.const 1)))
            unreachable))
        (br $more)))
    (call $drop_input_stream (local.get $in))
    (call $drop_incoming_body (local.get $in_body))
    (call $drop_request (local.get $request))
    (call $drop_output_stream (local.get $stream))
    (call $body_finish (local.get $out_body) (i32.const 0) (i32.const 0) (i32.const 0))
    (if (i32.load8_u (i32.const 0)) (then unreachable))))
