// The shopper page's offline shell (served as /sw.js, so its scope is the whole site): the page
// and its modules come from the network when it answers and from this cache when it does not,
// so a reload on a train shows the last cart (kept by demo.js) and the changes still waiting
// (the JS client's queue in localStorage). API calls and the websocket never touch the cache.
const CACHE = "cartsync-shell-v2";
const SHELL = [
  "/demo",
  "/static/style.css",
  "/static/cartsync.js",
  "/static/demo.js",
  "/static/actors.js",
  "/static/dom.js",
  "/static/events.js",
  "/static/format.js",
  "/static/handover.js",
  "/static/lines.js",
  "/static/pending.js",
  "/static/pickup.js",
  "/static/presence.js",
  "/static/status.js",
  "/static/tokens.js",
  "/static/totals.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !SHELL.includes(url.pathname)) return;
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(url.pathname, copy)));
        }
        return response;
      })
      .catch(async () => (await caches.match(url.pathname)) ?? Response.error()),
  );
});
