;; tcp-client: a wasi:http handler that opens an outbound TCP connection with wasi:sockets.
;;
;; The last segment of the request path names the peer, `HOST:PORT`: an IPv4 address
;; (`/tcp/127.0.0.1:6379`) or a name, looked up with ip-name-lookup (its first IPv4 address).
;; The guest connects (create-tcp-socket, start-connect, subscribe + block, finish-connect),
;; sends the request body, shuts down its sending side, reads what the peer sends until the
;; peer closes, and answers 200 `text/plain` with those bytes. When a wasi:sockets call fails
;; it answers 500 with the error-code's name (`access-denied`, `connection-refused`, …); a
;; path without `:` gets `invalid-argument`. A failed stream operation traps.
;; Memory: 0..128 return areas; 256.. the header list and texts; 1024.. the error-code names
;; (32 bytes apart, lengths at 1728); 65536.. a bump heap (cabi_realloc).
(module
  (import "wasi:http/types@0.2.0" "[method]incoming-request.path-with-query"
    (func $request_path (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-request.consume"
    (func $request_consume (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-body.stream"
    (func $body_stream (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[static]fields.from-list"
    (func $fields_from_list (param i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[constructor]outgoing-response"
    (func $new_response (param i32) (result i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-response.set-status-code"
    (func $set_status (param i32 i32) (result i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-response.body"
    (func $response_body (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-body.write"
    (func $body_write (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[static]outgoing-body.finish"
    (func $body_finish (param i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[static]response-outparam.set"
    (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
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
  (import "wasi:io/poll@0.2.0" "[method]pollable.block" (func $block (param i32)))
  (import "wasi:io/poll@0.2.0" "[resource-drop]pollable" (func $drop_pollable (param i32)))
  (import "wasi:sockets/instance-network@0.2.0" "instance-network"
    (func $instance_network (result i32)))
  (import "wasi:sockets/network@0.2.0" "[resource-drop]network"
    (func $drop_network (param i32)))
  (import "wasi:sockets/ip-name-lookup@0.2.0" "resolve-addresses"
    (func $resolve_addresses (param i32 i32 i32 i32)))
  (import "wasi:sockets/ip-name-lookup@0.2.0"
    "[method]resolve-address-stream.resolve-next-address"
    (func $resolve_next (param i32 i32)))
  (import "wasi:sockets/ip-name-lookup@0.2.0" "[method]resolve-address-stream.subscribe"
    (func $resolve_subscribe (param i32) (result i32)))
  (import "wasi:sockets/ip-name-lookup@0.2.0" "[resource-drop]resolve-address-stream"
    (func $drop_resolve (param i32)))
  (import "wasi:sockets/tcp-create-socket@0.2.0" "create-tcp-socket"
    (func $create_tcp_socket (param i32 i32)))
  ;; self, network, then ip-socket-address flattened: discriminant and 11 joined slots
  ;; (ipv4: port, four octets, six unused), then the return area.
  (import "wasi:sockets/tcp@0.2.0" "[method]tcp-socket.start-connect"
    (func $start_connect
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "wasi:sockets/tcp@0.2.0" "[method]tcp-socket.finish-connect"
    (func $finish_connect (param i32 i32)))
  (import "wasi:sockets/tcp@0.2.0" "[method]tcp-socket.subscribe"
    (func $tcp_subscribe (param i32) (result i32)))
  (import "wasi:sockets/tcp@0.2.0" "[method]tcp-socket.shutdown"
    (func $shutdown (param i32 i32 i32)))
  (import "wasi:sockets/tcp@0.2.0" "[resource-drop]tcp-socket"
    (func $drop_socket (param i32)))

  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))

  ;; list<tuple<field-key, field-value>> with one entry: ("content-type", "text/plain")
  (data (i32.const 256) "\00\02\00\00\0c\00\00\00\0c\02\00\00\0a\00\00\00")
  (data (i32.const 512) "content-typetext/plain")
  ;; wasi:sockets/network error-code names, in the enum's order
  (data (i32.const 1024) "unknown")
  (data (i32.const 1056) "access-denied")
  (data (i32.const 1088) "not-supported")
  (data (i32.const 1120) "invalid-argument")
  (data (i32.const 1152) "out-of-memory")
  (data (i32.const 1184) "timeout")
  (data (i32.const 1216) "concurrency-conflict")
  (data (i32.const 1248) "not-in-progress")
  (data (i32.const 1280) "would-block")
  (data (i32.const 1312) "invalid-state")
  (data (i32.const 1344) "new-socket-limit")
  (data (i32.const 1376) "address-not-bindable")
  (data (i32.const 1408) "address-in-use")
  (data (i32.const 1440) "remote-unreachable")
  (data (i32.const 1472) "connection-refused")
  (data (i32.const 1504) "connection-reset")
  (data (i32.const 1536) "connection-aborted")
  (data (i32.const 1568) "datagram-too-large")
  (data (i32.const 1600) "name-unresolvable")
  (data (i32.const 1632) "temporary-resolver-failure")
  (data (i32.const 1664) "permanent-resolver-failure")
  (data (i32.const 1728) "\07\0d\0d\10\0d\07\14\0f\0b\0d\10\14\0e\12\12\10\12\12\11\1a\1a")

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

  ;; Trap unless the result at `ptr` is ok; return its i32 payload.
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

  ;; Answer `status` with `len` bytes at `ptr`.
  (func $respond (param $out i32) (param $status i32) (param $ptr i32) (param $len i32)
    (local $response i32) (local $body i32) (local $stream i32)
    (call $fields_from_list (i32.const 256) (i32.const 1) (i32.const 0))
    (local.set $response (call $new_response (call $ok (i32.const 0))))
    (drop (call $set_status (local.get $response) (local.get $status)))
    (call $response_body (local.get $response) (i32.const 0))
    (local.set $body (call $ok (i32.const 0)))
    (call $body_write (local.get $body) (i32.const 0))
    (local.set $stream (call $ok (i32.const 0)))
    (call $outparam_set (local.get $out)
      (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $write_all (local.get $stream) (local.get $ptr) (local.get $len))
    (call $drop_output_stream (local.get $stream))
    (call $body_finish (local.get $body) (i32.const 0) (i32.const 0) (i32.const 0))
    (drop (call $ok (i32.const 0))))

  ;; Answer 500 with the name of error-code `code`.
  (func $fail (param $out i32) (param $code i32)
    (call $respond (local.get $out) (i32.const 500)
      (i32.add (i32.const 1024) (i32.shl (local.get $code) (i32.const 5)))
      (i32.load8_u (i32.add (i32.const 1728) (local.get $code)))))

  ;; The decimal number in the `len` bytes at `ptr`; other characters are skipped.
  (func $number (param $ptr i32) (param $len i32) (result i32)
    (local $n i32) (local $c i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $len)))
        (local.set $c (i32.sub (i32.load8_u (local.get $ptr)) (i32.const 48)))
        (if (i32.lt_u (local.get $c) (i32.const 10))
          (then
            (local.set $n
              (i32.add (i32.mul (local.get $n) (i32.const 10)) (local.get $c)))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 1)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; The dotted IPv4 address in the `len` bytes at `ptr`, as four octets at 96..100.
  (func $parse_ipv4 (param $ptr i32) (param $len i32)
    (local $i i32) (local $start i32) (local $c i32)
    (i32.store (i32.const 96) (i32.const 0))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (local.get $i))) (i32.const 46))
          (then
            (i32.store8 (i32.add (i32.const 96) (local.get $c))
              (call $number (i32.add (local.get $ptr) (local.get $start))
                (i32.sub (local.get $i) (local.get $start))))
            (local.set $c (i32.and (i32.add (local.get $c) (i32.const 1)) (i32.const 3)))
            (local.set $start (i32.add (local.get $i) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.store8 (i32.add (i32.const 96) (local.get $c))
      (call $number (i32.add (local.get $ptr) (local.get $start))
        (i32.sub (local.get $len) (local.get $start)))))

  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (local $path i32) (local $plen i32) (local $i i32) (local $start i32) (local $colon i32)
    (local $port i32) (local $net i32) (local $names i32) (local $pollable i32) (local $code i32)
    (local $sock i32) (local $sin i32) (local $sout i32) (local $in_body i32) (local $in i32)
    (local $text i32) (local $end i32)
    ;; path-with-query: option<string> at 0 (none is an empty path)
    (call $request_path (local.get $request) (i32.const 0))
    (if (i32.load8_u (i32.const 0))
      (then
        (local.set $path (i32.load (i32.const 4)))
        (local.set $plen (i32.load (i32.const 8)))))
    ;; The last segment, split at its last ':'.
    (local.set $colon (i32.const -1))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $plen)))
        (if (i32.eq (i32.load8_u (i32.add (local.get $path) (local.get $i))) (i32.const 47))
          (then
            (local.set $start (i32.add (local.get $i) (i32.const 1)))
            (local.set $colon (i32.const -1))))
        (if (i32.eq (i32.load8_u (i32.add (local.get $path) (local.get $i))) (i32.const 58))
          (then (local.set $colon (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (if (i32.lt_s (local.get $colon) (i32.const 0))
      (then (call $fail (local.get $out) (i32.const 3)) (return)))
    (local.set $port
      (call $number (i32.add (local.get $path) (i32.add (local.get $colon) (i32.const 1)))
        (i32.sub (local.get $plen) (i32.add (local.get $colon) (i32.const 1)))))
    (local.set $net (call $instance_network))
    ;; The address: four octets at 96, parsed or looked up.
    (if (i32.lt_u
          (i32.sub (i32.load8_u (i32.add (local.get $path) (local.get $start))) (i32.const 48))
          (i32.const 10))
      (then
        (call $parse_ipv4 (i32.add (local.get $path) (local.get $start))
          (i32.sub (local.get $colon) (local.get $start))))
      (else
        (call $resolve_addresses (local.get $net)
          (i32.add (local.get $path) (local.get $start))
          (i32.sub (local.get $colon) (local.get $start))
          (i32.const 0))
        (if (i32.load8_u (i32.const 0))
          (then (call $fail (local.get $out) (i32.load8_u (i32.const 4))) (return)))
        (local.set $names (i32.load (i32.const 4)))
        ;; result<option<ip-address>, error-code>: result tag at 0, error-code or option tag
        ;; at 2, ip-address tag at 4, IPv4 octets at 6..10.
        (block $found
          (loop $next
            (call $resolve_next (local.get $names) (i32.const 0))
            (if (i32.load8_u (i32.const 0))
              (then
                (local.set $code (i32.load8_u (i32.const 2)))
                (if (i32.ne (local.get $code) (i32.const 8))
                  (then (call $fail (local.get $out) (local.get $code)) (return)))
                ;; would-block: wait for the lookup
                (local.set $pollable (call $resolve_subscribe (local.get $names)))
                (call $block (local.get $pollable))
                (call $drop_pollable (local.get $pollable))
                (br $next)))
            (if (i32.eqz (i32.load8_u (i32.const 2)))
              (then (call $fail (local.get $out) (i32.const 18)) (return)))
            (br_if $next (i32.load8_u (i32.const 4)))  ;; an IPv6 address: the next one
            (i32.store (i32.const 96) (i32.load16_u (i32.const 6)))
            (i32.store16 (i32.const 98) (i32.load16_u (i32.const 8)))
            (br $found)))
        (call $drop_resolve (local.get $names))))
    ;; Connect.
    (call $create_tcp_socket (i32.const 0) (i32.const 0))
    (if (i32.load8_u (i32.const 0))
      (then (call $fail (local.get $out) (i32.load8_u (i32.const 4))) (return)))
    (local.set $sock (i32.load (i32.const 4)))
    (call $start_connect (local.get $sock) (local.get $net)
      (i32.const 0) (local.get $port)
      (i32.load8_u (i32.const 96)) (i32.load8_u (i32.const 97))
      (i32.load8_u (i32.const 98)) (i32.load8_u (i32.const 99))
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
      (i32.const 0))
    (if (i32.load8_u (i32.const 0))
      (then (call $fail (local.get $out) (i32.load8_u (i32.const 1))) (return)))
    (block $connected
      (loop $wait
        (local.set $pollable (call $tcp_subscribe (local.get $sock)))
        (call $block (local.get $pollable))
        (call $drop_pollable (local.get $pollable))
        (call $finish_connect (local.get $sock) (i32.const 0))
        (br_if $connected (i32.eqz (i32.load8_u (i32.const 0))))
        (local.set $code (i32.load8_u (i32.const 4)))
        (br_if $wait (i32.eq (local.get $code) (i32.const 8)))
        (call $fail (local.get $out) (local.get $code))
        (return)))
    (local.set $sin (i32.load (i32.const 4)))
    (local.set $sout (i32.load (i32.const 8)))
    ;; The request body goes to the peer, then our side of the connection shuts.
    (call $request_consume (local.get $request) (i32.const 0))
    (local.set $in_body (call $ok (i32.const 0)))
    (call $body_stream (local.get $in_body) (i32.const 0))
    (local.set $in (call $ok (i32.const 0)))
    (local.set $text (global.get $heap))
    (block $end
      (loop $chunk
        (global.set $heap (local.get $text))
        (call $read (local.get $in) (i64.const 4096) (i32.const 0))
        (if (i32.load8_u (i32.const 0))
          (then
            (br_if $end (i32.eq (i32.load8_u offset=4 (i32.const 0)) (i32.const 1)))
            unreachable))
        (call $write_all (local.get $sout) (i32.load (i32.const 4)) (i32.load (i32.const 8)))
        (br $chunk)))
    (global.set $heap (local.get $text))
    (call $drop_input_stream (local.get $in))
    (call $drop_incoming_body (local.get $in_body))
    (call $drop_request (local.get $request))
    (call $shutdown (local.get $sock) (i32.const 1) (i32.const 0))
    (if (i32.load8_u (i32.const 0))
      (then (call $fail (local.get $out) (i32.load8_u (i32.const 1))) (return)))
    ;; What the peer sends, until it closes, collected at `text`.
    (local.set $end (local.get $text))
    (block $closed
      (loop $chunk
        (call $read (local.get $sin) (i64.const 4096) (i32.const 0))
        (if (i32.load8_u (i32.const 0))
          (then
            (br_if $closed (i32.eq (i32.load8_u offset=4 (i32.const 0)) (i32.const 1)))
            unreachable))
        (memory.copy (local.get $end) (i32.load (i32.const 4)) (i32.load (i32.const 8)))
        (local.set $end (i32.add (local.get $end) (i32.load (i32.const 8))))
        (global.set $heap (local.get $end))
        (br $chunk)))
    (call $drop_input_stream (local.get $sin))
    (call $drop_output_stream (local.get $sout))
    (call $drop_socket (local.get $sock))
    (call $drop_network (local.get $net))
    (call $respond (local.get $out) (i32.const 200)
      (local.get $text) (i32.sub (local.get $end) (local.get $text)))
    (global.set $heap (i32.const 65536))))
