// Which of the owner's devices are live, in words, from the client's `presence` list.

const KIND_WORD = { phone: "phone", tablet: "tablet", desktop: "computer", other: "device" };

const nameOf = (device) => device.label || `a ${KIND_WORD[device.kind] ?? "device"}`;

/** The shopper's own devices, for the phone: "Your devices: iPhone (this one), Laptop". */
export function ownDevicesText(devices) {
  if (!devices) return "Your devices: not known while offline";
  // This device first, then the others by name: the server's order is its own business.
  const own = devices.filter((d) => d.role !== "staff").sort((a, b) => (b.you ? 1 : 0) - (a.you ? 1 : 0) || nameOf(a).localeCompare(nameOf(b)));
  const names = own.map((d) => (d.you ? `${nameOf(d)} (this one)` : nameOf(d)));
  const staff = devices.filter((d) => d.role === "staff");
  const helping = staff.length ? ` · store staff connected: ${staff.map((d) => `${nameOf(d)} at ${d.store ?? "the store"}`).join(", ")}` : "";
  return `Your devices: ${names.join(", ") || "none"}${helping}`;
}

/** For the tablet: whether the shopper has a device live now, and which. */
export function customerOnlineText(devices) {
  if (!devices) return { online: "unknown", text: "Not known whether the customer's phone is online" };
  const theirs = devices.filter((d) => d.role !== "staff");
  if (!theirs.length) return { online: "no", text: "The customer's phone is offline" };
  return { online: "yes", text: `The customer is online: ${theirs.map(nameOf).join(", ")}` };
}

/** A label and kind for this browser's device, from what the browser says it runs on. */
export function guessDevice() {
  const ua = navigator.userAgent;
  if (/iPhone/.test(ua)) return { label: "iPhone", kind: "phone" };
  if (/iPad/.test(ua)) return { label: "iPad", kind: "tablet" };
  if (/Android/.test(ua)) return /Mobile/.test(ua) ? { label: "Android phone", kind: "phone" } : { label: "Android tablet", kind: "tablet" };
  if (/Macintosh/.test(ua)) return { label: "Mac", kind: "desktop" };
  if (/Windows/.test(ua)) return { label: "Windows PC", kind: "desktop" };
  if (/Linux/.test(ua)) return { label: "Linux computer", kind: "desktop" };
  return { label: "Web browser", kind: "other" };
}
