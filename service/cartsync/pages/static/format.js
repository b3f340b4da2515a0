// How the pages write times, money and a line's attributes for people.

export const attrsText = (attrs) =>
  Object.entries(attrs ?? {})
    .map(([k, v]) => `${k}: ${v}`)
    .join(", ");

export function formatTime(iso) {
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? iso : when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** An amount as the reader's locale writes money in `currency`. */
export function formatMoney(amount, currency) {
  const value = typeof amount === "string" ? Number(amount) : amount;
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(value);
  } catch {
    return `${value.toFixed(2)} ${currency}`; // not an ISO 4217 code the browser knows
  }
}
