;; env: answers 200 `text/plain` with the component's environment variables, one `NAME=value`
;; line each, in the order `wasi:cli/environment.get-environment` returns them.
;; Memory: 0..32 return areas; 64.. the header list; 1024.. a bump heap (cabi_realloc).
(module
  (import "wasi:cli/environment@0.2.0" "get-environment" (func $get_environment (param i32)))
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

  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))

  ;; list<tuple<field-key, field-value>> with one entry: ("content-type", "text/plain")
  (data (i32.const 64) "\80\00\00\00\0c\00\00\00\8c\00\00\00\0a\00\00\00")
  (data (i32.const 128) "content-typetext/plain")
  (data (i32.const 160) "=\0a")

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
    (local.get $ptr))

  ;; Copy `len` bytes from `ptr` to the end of the heap (the response text grows there).
  (func $append (param $ptr i32) (param $len i32)
    (memory.copy
      (call $cabi_realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $len))
      (local.get $ptr) (local.get $len)))

  (func $ok (param $ptr i32) (result i32)
    (if (i32.load8_u (local.get $ptr)) (then unreachable))
    (i32.load offset=4 (local.get $ptr)))

  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (local $entries i32) (local $count i32) (local $text i32)
    (local $response i32) (local $body i32) (local $stream i32)
    (call $drop_request (local.get $request))
    ;; get-environment → list<tuple<string, string>>: (ptr, len) at 0; 16 bytes an entry.
    (call $get_environment (i32.const 0))
    (local.set $entries (i32.load (i32.const 0)))
    (local.set $count (i32.load (i32.const 4)))
    (local.set $text (global.get $heap))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $count)))
        (call $append (i32.load (local.get $entries)) (i32.load offset=4 (local.get $entries)))
        (call $append (i32.const 160) (i32.const 1))
        (call $append
          (i32.load offset=8 (local.get $entries)) (i32.load offset=12 (local.get $entries)))
        (call $append (i32.const 161) (i32.const 1))
        (local.set $entries (i32.add (local.get $entries) (i32.const 16)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $next)))
    (call $fields_from_list (i32.const 64) (i32.const 1) (i32.const 0))
    (local.set $response (call $new_response (call $ok (i32.const 0))))
    (call $response_body (local.get $response) (i32.const 0))
    (local.set $body (call $ok (i32.const 0)))
    (call $body_write (local.get $body) (i32.const 0))
    (local.set $stream (call $ok (i32.const 0)))
    (call $outparam_set (local.get $out)
      (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    ;; The text is short (a few variables): one write of at most 4096 bytes.
    (call $write (local.get $stream) (local.get $text)
      (i32.sub (global.get $heap) (local.get $text)) (i32.const 0))
    (drop (call $ok (i32.const 0)))
    (call $drop_output_stream (local.get $stream))
    (call $body_finish (local.get $body) (i32.const 0) (i32.const 0) (i32.const 0))
    (drop (call $ok (i32.const 0)))))
