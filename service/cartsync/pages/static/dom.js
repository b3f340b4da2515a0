// Building and marking the page's elements. Text is always set as text, never as HTML.

/** An element with attributes (`on*` functions become listeners) and children (strings are text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "dataset") for (const [k, v] of Object.entries(value)) v != null && (node.dataset[k] = v);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Replay the flash animation on a node that just changed. */
export function flash(node) {
  if (!node) return;
  node.classList.remove("flash");
  void node.offsetWidth; // restart the CSS animation
  node.classList.add("flash");
  node.addEventListener("animationend", () => node.classList.remove("flash"), { once: true });
}

/** A message in `box` (an element with role=status or alert); empty text hides it. */
export function say(box, text, kind = "info") {
  box.textContent = text ?? "";
  box.hidden = !text;
  box.classList.toggle("error", kind === "error");
}
