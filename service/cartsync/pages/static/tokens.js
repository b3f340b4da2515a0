// What a page may read from a token for display; the service checks the token itself.

/** The claims of a JWT, for display only (the service checks the token, not this page). */
export function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return null;
  }
}
