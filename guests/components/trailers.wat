;; trailers: answers 200 `content-type: text/plain` with the request body (streamed back as it
;; is read), then finishes the response body with the request's trailer fields as the
;; response's trailers (none when the request had none).
;;
;; Order of calls: consume the request, set the response, copy the body, drop the input
;; stream, `incoming-body.finish` → `future-trailers.get`, `outgoing-body.finish(trailers)`.
;; `get` before any `subscribe`: the host resolves it once the body has been read. Any failed
;; operation traps.
;; Memory: 0..96 return areas; 256.. constants; 65536.. a bump heap (cabi_realloc).
(module
  (import "wasi:http/types@0.2.0" "[method]incoming-request.consume"
    (func $request_consume (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-body.stream"
    (func $body_stream (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[static]incoming-body.finish"
    (func $incoming_finish (param i32) (result i32)))
  (import "wasi:http/types@0.2.0" "[method]future-trailers.get"
    (func $trailers_get (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[resource-drop]future-trailers"
    (func $drop_future_trailers (param i32)))
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
  (import "wasi:io/streams@0.2.0" "[method]input-stream.blocking-read"
    (func $read (param i32 i64 i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush"
    (func $write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]input-stream"
    (func $drop_input_stream (param i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream"
    (func $drop_output_stream (param i32)))

  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))

  (data (i32.const 256) "\00\02\00\00\0c\00\00\00\0c\02\00\00\0a\00\00\00")
  (data (i32.const 512) "content-typetext/plain")

  (func $cabi_realloc (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32) (local $limit i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (local.set $limit (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (global.get $heap) (local.get $limit))
      (then
        (if (i32.eq
              (memory.grow
                (i32.shr_u
                  (i32.add (i32.sub (global.get $heap) (local.get $limit)) (i32.const 65535))
                  (i32.const 16)))
              (i32.const -1))
          (then unreachable))))
    (if (local.get $old)
      (then
        (memory.copy (local.get $ptr) (local.get $old)
          (select (local.get $old_size) (local.get $size)
            (i32.lt_u (local.get $old_size) (local.get $size))))))
    (local.get $ptr))

  (func $ok (param $ptr i32) (result i32)
    (if (i32.load8_u (local.get $ptr)) (then unreachable))
    (i32.load offset=4 (local.get $ptr)))

  ;; blocking-write-and-flush takes at most 4096 bytes per call.
  (func $write_all (param $stream i32) (param $ptr i32) (param $len i32)
    (local $n i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (local.set $n
          (select (i32.const 4096) (local.get $len)
            (i32.gt_u (local.get $len) (i32.const 4096))))
        (call $write (local.get $stream) (local.get $ptr) (local.get $n) (i32.const 64))
        (if (i32.load8_u (i32.const 64)) (then unreachable))
        (local.set $ptr (i32.add (local.get $ptr) (local.get $n)))
        (local.set $len (i32.sub (local.get $len) (local.get $n)))
        (br $more))))

  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (local $in_body i32) (local $in i32) (local $future i32) (local $has i32) (local $fields i32)
    (local $response i32) (local $out_body i32) (local $stream i32)
    (call $request_consume (local.get $request) (i32.const 0))
    (local.set $in_body (call $ok (i32.const 0)))
    (call $body_stream (local.get $in_body) (i32.const 0))
    (local.set $in (call $ok (i32.const 0)))
    ;; The response first, so that the body streams back while it arrives.
    (call $fields_from_list (i32.const 256) (i32.const 1) (i32.const 0))
    (local.set $response (call $new_response (call $ok (i32.const 0))))
    (call $response_body (local.get $response) (i32.const 0))
    (local.set $out_body (call $ok (i32.const 0)))
    (call $body_write (local.get $out_body) (i32.const 0))
    (local.set $stream (call $ok (i32.const 0)))
    (call $outparam_set (local.get $out)
      (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (block $end
      (loop $chunk
        (global.set $heap (i32.const 65536))
        (call $read (local.get $in) (i64.const 4096) (i32.const 0))
        (if (i32.load8_u (i32.const 0))
          (then
            ;; stream-error: `closed` (1) is the end of the body; `last-operation-failed` traps.
            (br_if $end (i32.eq (i32.load8_u offset=4 (i32.const 0)) (i32.const 1)))
            unreachable))
        (call $write_all (local.get $stream) (i32.load (i32.const 4)) (i32.load (i32.const 8)))
        (br $chunk)))
    (call $drop_input_stream (local.get $in))
    (call $drop_output_stream (local.get $stream))
    ;; future-trailers.get → option<result<result<option<own<fields>>, error-code>>>:
    ;; option tag at 0, outer result tag at 8, inner result tag at 16, option tag at 24,
    ;; the fields handle at 28 (the payloads are 8-aligned: error-code holds u64s).
    (local.set $future (call $incoming_finish (local.get $in_body)))
    (call $trailers_get (local.get $future) (i32.const 0))
    (if (i32.eqz (i32.load8_u (i32.const 0))) (then unreachable))  ;; not ready: never here
    (if (i32.load8_u (i32.const 8)) (then unreachable))  ;; already taken
    (if (i32.load8_u (i32.const 16)) (then unreachable))  ;; an error-code
    (local.set $has (i32.load8_u (i32.const 24)))
    (local.set $fields (i32.load (i32.const 28)))
    (call $drop_future_trailers (local.get $future))
    (call $drop_request (local.get $request))
    (call $body_finish (local.get $out_body) (local.get $has) (local.get $fields) (i32.const 0))
    (drop (call $ok (i32.const 0)))
    (global.set $heap (i32.const 65536))))
