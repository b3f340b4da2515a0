// What the pages tell people about the connection, errors and changes kept offline.

import { say } from "/static/dom.js";

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  open: "Live",
  offline: "Offline – reconnecting",
  closed: "Not connected",
};

let showCurrent = null; // the badge's one renderer, for the browser's online/offline signal
globalThis.addEventListener("online", () => showCurrent?.());
globalThis.addEventListener("offline", () => showCurrent?.());

/**
 * Keep a badge showing the connection (`data-state` for the colour): the client's socket, and
 * the browser's own online/offline signal at once (a socket notices a dead network only when
 * its heartbeat goes unanswered).
 */
export function showConnection(badge, client) {
  const show = () => {
    if (showCurrent !== show) return; // a later client took the badge over
    const state = client && !navigator.onLine ? "offline" : client ? client.connection : "closed";
    badge.dataset.state = state;
    badge.textContent = CONNECTION_TEXT[state] ?? state;
  };
  showCurrent = show;
  show();
  client?.addEventListener("connection", show);
}

export function describeError(error) {
  if (error?.code === "network_error") return "The service cannot be reached. Check the connection and try again.";
  if (error?.status === 401) return "The token was not accepted (expired or invalid). Sign in again.";
  if (error?.status === 429) return "Too many attempts. Wait a moment and try again.";
  return error?.message || String(error);
}

/** Run `action(client)`; say in `box` when changes wait offline (until the last is sent) or were refused. */
export async function runChange(client, box, action) {
  if (!client) return;
  try {
    const result = await action(client);
    if (result?.queued) {
      say(box, "Offline: your changes are kept and will be sent when the connection is back.");
      result.settled.then(
        () => client.pending === 0 && say(box, ""),
        (error) => say(box, describeError(error), "error"),
      );
    } else {
      say(box, "");
    }
  } catch (error) {
    say(box, describeError(error), "error");
  }
}
