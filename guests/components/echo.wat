;; echo: answers 200 `content-type: text/plain` with the request's shape and then its body:
;;
;;     METHOD PATH-WITH-QUERY\n
;;     name: value\n            (one line per request header, in the host's order)
;;     \n
;;     <the request body, streamed: read up to 4096 bytes, write them, until the stream closes>
;;
;; A method outside the standard ones prints as its `other` string; a missing path-with-query
;; prints as nothing. Any failed stream operation traps.
;; Memory: 0..96 return areas; 256.. constants; 65536.. a bump heap (cabi_realloc).
(module
  (import "wasi:http/types@0.2.0" "[method]incoming-request.method"
    (func $request_method (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-request.path-with-query"
    (func $request_path (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-request.headers"
    (func $request_headers (param i32) (result i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-request.consume"
    (func $request_consume (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]fields.entries"
    (func $fields_entries (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-body.stream"
    (func $body_stream (param i32 i32)))
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
  (import "wasi:http/types@0.2.0" "[resource-drop]fields"
    (func $drop_fields (param i32)))
  (import "wasi:http/types@0.2.0" "[resource-drop]incoming-body"
    (func $drop_incoming_body (param i32)))
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
  ;; method names, 8 bytes apart, in the order of `variant method`; their lengths at 720
  (data (i32.const 640)
    "GET\00\00\00\00\00HEAD\00\00\00\00POST\00\00\00\00PUT\00\00\00\00\00"
    "DELETE\00\00CONNECT\00OPTIONS\00TRACE\00\00\00PATCH\00\00\00")
  (data (i32.const 720) "\03\04\04\03\06\07\07\05\05")
  (data (i32.const 736) " \0a: ")

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

  ;; Copy `len` bytes from `ptr` to the end of the heap (the response text grows there).
  (func $append (param $ptr i32) (param $len i32)
    (memory.copy
      (call $cabi_realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $len))
      (local.get $ptr) (local.get $len)))

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
    (local $disc i32) (local $headers i32) (local $entries i32) (local $count i32)
    (local $text i32) (local $in_body i32) (local $in i32)
    (local $response i32) (local $out_body i32) (local $stream i32)
    ;; Ask for everything first: the host allocates strings and lists on the heap.
    (call $request_method (local.get $request) (i32.const 0))
    (call $request_path (local.get $request) (i32.const 16))
    (local.set $headers (call $request_headers (local.get $request)))
    (call $fields_entries (local.get $headers) (i32.const 32))
    (local.set $entries (i32.load (i32.const 32)))
    (local.set $count (i32.load (i32.const 36)))
    ;; Then build the text at the end of the heap.
    (local.set $text (global.get $heap))
    (local.set $disc (i32.load8_u (i32.const 0)))
    (if (i32.eq (local.get $disc) (i32.const 9))
      (then (call $append (i32.load (i32.const 4)) (i32.load (i32.const 8))))
      (else
        (call $append
          (i32.add (i32.const 640) (i32.shl (local.get $disc) (i32.const 3)))
          (i32.load8_u (i32.add (i32.const 720) (local.get $disc))))))
    (call $append (i32.const 736) (i32.const 1))
    (if (i32.load8_u (i32.const 16))
      (then (call $append (i32.load (i32.const 20)) (i32.load (i32.const 24)))))
    (call $append (i32.const 737) (i32.const 1))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $count)))
        (call $append (i32.load (local.get $entries)) (i32.load offset=4 (local.get $entries)))
        (call $append (i32.const 738) (i32.const 2))
        (call $append
          (i32.load offset=8 (local.get $entries)) (i32.load offset=12 (local.get $entries)))
        (call $append (i32.const 737) (i32.const 1))
        (local.set $entries (i32.add (local.get $entries) (i32.const 16)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $next)))
    (call $append (i32.const 737) (i32.const 1))
    (call $drop_fields (local.get $headers))
    ;; The request body.
    (call $request_consume (local.get $request) (i32.const 0))
    (local.set $in_body (call $ok (i32.const 0)))
    (call $body_stream (local.get $in_body) (i32.const 0))
    (local.set $in (call $ok (i32.const 0)))
    ;; The response: set it, then stream the text and the body.
    (call $fields_from_list (i32.const 256) (i32.const 1) (i32.const 0))
    (local.set $response (call $new_response (call $ok (i32.const 0))))
    (call $response_body (local.get $response) (i32.const 0))
    (local.set $out_body (call $ok (i32.const 0)))
    (call $body_write (local.get $out_body) (i32.const 0))
    (local.set $stream (call $ok (i32.const 0)))
    (call $outparam_set (local.get $out)
      (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $write_all (local.get $stream)
      (local.get $text) (i32.sub (global.get $heap) (local.get $text)))
    (block $end
      (loop $chunk
        ;; Each chunk is written out before the next read, so the heap can start over.
        (global.set $heap (local.get $text))
        (call $read (local.get $in) (i64.const 4096) (i32.const 0))
        (if (i32.load8_u (i32.const 0))
          (then
            ;; stream-error: `closed` (1) is the end of the body; `last-operation-failed` traps.
            (br_if $end (i32.eq (i32.load8_u offset=4 (i32.const 0)) (i32.const 1)))
            unreachable))
        (call $write_all (local.get $stream) (i32.load (i32.const 4)) (i32.load (i32.const 8)))
        (br $chunk)))
    (call $drop_input_stream (local.get $in))
    (call $drop_incoming_body (local.get $in_body))
    (call $drop_request (local.get $request))
    (call $drop_output_stream (local.get $stream))
    (call $body_finish (local.get $out_body) (i32.const 0) (i32.const 0) (i32.const 0))
    (drop (call $ok (i32.const 0)))
    (global.set $heap (i32.const 65536))))
