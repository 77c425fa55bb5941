// The JavaScript test component: a wasi:http handler built with jco componentize
// (componentize-js 0.19.3, StarlingMonkey) for world `http-trigger` of
// @spinframework/wasi-http-proxy (wasi:http 0.2.3). Answers 200 `text/plain`:
//
//     Hello from JS
//     path: /the/path?and=query
//     method: GET
//
// followed by the request body, if any.
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const body = await request.text();
  const text =
    `Hello from JS\npath: ${url.pathname}${url.search}\nmethod: ${request.method}\n` + body;
  return new Response(text, { headers: { "content-type": "text/plain" } });
}
