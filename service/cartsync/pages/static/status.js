// What the pages tell people about the connection, errors and changes kept offline.

import { say } from "/static/dom.js";

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  open: "Live",
  offline: "Offline – reconnecting",
  closed: "Not connected",
};

/** Keep a badge showing the client's connection state (`data-state` for the colour). */
export function showConnection(badge, client) {
  const show = (state) => {
    badge.dataset.state = state;
    badge.textContent = CONNECTION_TEXT[state] ?? state;
  };
  show(client ? client.connection : "closed");
  client?.addEventListener("connection", (e) => show(e.detail.state));
}

export function describeError(error) {
  if (error?.code === "network_error") return "The service cannot be reached. Check the connection and try again.";
  if (error?.status === 401) return "The token was not accepted (expired or invalid). Sign in again.";
  if (error?.status === 429) return "Too many attempts. Wait a moment and try again.";
  return error?.message || String(error);
}

/** Run `action(client)`; say in `box` when the change was kept offline or refused. */
export async function runChange(client, box, action) {
  if (!client) return;
  try {
    const result = await action(client);
    if (result?.queued) {
      say(box, "Offline: the change is kept and will be sent when the connection is back.");
      result.settled.then(
        () => say(box, ""),
        (error) => say(box, describeError(error), "error"),
      );
    } else {
      say(box, "");
    }
  } catch (error) {
    say(box, describeError(error), "error");
  }
}
