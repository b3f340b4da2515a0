// A loopback TCP relay the test controls: the phone reaches the service only through it, and
// `cut()` drops every connection and refuses new ones until `restore()`, as a train's tunnel
// does (Chromium's offline emulation lets a reloading page's request through; this does not).
import net from "node:net";

export async function openRelay(targetUrl) {
  const target = new URL(targetUrl);
  const sockets = new Set();
  let server = null;
  let port = 0;

  const listen = () =>
    new Promise((resolve, reject) => {
      server = net.createServer((client) => {
        const upstream = net.connect(Number(target.port), target.hostname);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on("close", () => sockets.delete(s));
          s.on("error", () => s.destroy());
        }
        client.pipe(upstream).pipe(client);
      });
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        port = server.address().port;
        resolve();
      });
    });

  await listen();
  return {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    async cut() {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const s of sockets) s.destroy();
      await closed;
    },
    restore: listen,
    close() {
      for (const s of sockets) s.destroy();
      server?.close();
    },
  };
}
