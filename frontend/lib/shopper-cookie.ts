/** The demo shopper is a cookie, so server components render that shopper's lists. */
export const SHOPPER_COOKIE = "recommndr_shopper";

/** A brand-new shopper: an id far above the generated users', so the API has no history for it. */
export function newShopperId(): number {
  return 1_000_000_000 + Math.floor(Math.random() * 1_000_000_000);
}

export function parseShopperId(raw: string | undefined): number | undefined {
  return raw && /^\d{1,15}$/.test(raw) ? Number(raw) : undefined;
}
