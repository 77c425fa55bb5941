// {{project-name}}: an HTTP component written with the Spin JS SDK. Each request arrives as a
// `fetch` event with a standard Request; answer it with a standard Response.

// The JS engine dispatches requests as a service worker's `fetch` events; TypeScript's
// WebWorker library types `addEventListener` for dedicated workers, which have none.
declare function addEventListener(type: 'fetch', listener: (event: FetchEvent) => void): void;

function handle(request: Request): Response {
    const url = new URL(request.url);
    const body = `Hello from {{project-name}}!\n${request.method} ${url.pathname}${url.search}\n`;
    return new Response(body, { headers: { 'content-type': 'text/plain' } });
}

addEventListener('fetch', (event: FetchEvent) => {
    event.respondWith(handle(event.request));
});
