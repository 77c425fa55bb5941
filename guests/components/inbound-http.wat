;; inbound-http: a Spin `fermyon:spin/inbound-http` handler (world `inbound-http` in
;; wit/wasi-0.2.0). Responds 200 with headers `content-type: text/plain` and
;; `x-handler: inbound-http`, body `METHOD URI\n` followed by the request body, if any.
;; Memory: 32..60 the response record; 256.. constants; 65536.. a bump heap (cabi_realloc).
(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))

  ;; list<tuple<string, string>>: ("content-type", "text/plain"), ("x-handler", "inbound-http")
  (data (i32.const 256)
    "\00\02\00\00\0c\00\00\00\0c\02\00\00\0a\00\00\00"
    "\16\02\00\00\09\00\00\00\1f\02\00\00\0c\00\00\00")
  (data (i32.const 512) "content-typetext/plainx-handlerinbound-http")
  ;; method names, 8 bytes apart, in the order of `enum method`; their lengths at 720
  (data (i32.const 640)
    "GET\00\00\00\00\00POST\00\00\00\00PUT\00\00\00\00\00DELETE\00\00"
    "PATCH\00\00\00HEAD\00\00\00\00OPTIONS\00")
  (data (i32.const 720) "\03\04\03\06\05\04\07")
  (data (i32.const 736) " \0a")

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

  (func $append (param $ptr i32) (param $len i32)
    (memory.copy
      (call $cabi_realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $len))
      (local.get $ptr) (local.get $len)))

  (func (export "fermyon:spin/inbound-http#handle-request")
    (param $method i32) (param $uri i32) (param $uri_len i32)
    (param $headers i32) (param $headers_len i32) (param $params i32) (param $params_len i32)
    (param $has_body i32) (param $body i32) (param $body_len i32)
    (result i32)
    (local $text i32)
    (local.set $text (global.get $heap))
    (call $append
      (i32.add (i32.const 640) (i32.shl (local.get $method) (i32.const 3)))
      (i32.load8_u (i32.add (i32.const 720) (local.get $method))))
    (call $append (i32.const 736) (i32.const 1))
    (call $append (local.get $uri) (local.get $uri_len))
    (call $append (i32.const 737) (i32.const 1))
    (if (local.get $has_body) (then (call $append (local.get $body) (local.get $body_len))))
    ;; response { status: 200, headers: some(list at 256, 2), body: some(text) }
    (i32.store16 (i32.const 32) (i32.const 200))
    (i32.store8 (i32.const 36) (i32.const 1))
    (i32.store (i32.const 40) (i32.const 256))
    (i32.store (i32.const 44) (i32.const 2))
    (i32.store8 (i32.const 48) (i32.const 1))
    (i32.store (i32.const 52) (local.get $text))
    (i32.store (i32.const 56) (i32.sub (global.get $heap) (local.get $text)))
    (i32.const 32)))
