// {{project-name}}: an HTTP component written with the Spin JS SDK. Each request arrives as a
// `fetch` event with a standard Request; answer it with a standard Response.

function handle(request) {
    const url = new URL(request.url);
    const body = `Hello from {{project-name}}!\n${request.method} ${url.pathname}${url.search}\n`;
    return new Response(body, { headers: { 'content-type': 'text/plain' } });
}

addEventListener('fetch', (event) => {
    event.respondWith(handle(event.request));
});
