/** Browser side: events go to POST /events through the storefront's own /api proxy. */
import type { Attribution, EventType, Product, ShopEvent } from "./types";

const SESSION_KEY = "recommndr-session";

/** One id per browser session (tab), as the event schema's session_id. */
export function sessionId(): number {
  const stored = window.sessionStorage.getItem(SESSION_KEY);
  if (stored && /^\d+$/.test(stored)) return Number(stored);
  const id = Math.floor(Math.random() * 2_000_000_000);
  window.sessionStorage.setItem(SESSION_KEY, String(id));
  return id;
}

export function shopEvent(
  userId: number,
  eventType: EventType,
  product: Product,
  attribution: Attribution,
  quantity = 1,
): ShopEvent {
  return {
    user_id: userId,
    item_id: product.item_id,
    event_type: eventType,
    session_id: sessionId(),
    price: product.price,
    quantity,
    ...(attribution.variant ? { variant: attribution.variant } : {}),
    ...(attribution.model_version ? { model_version: attribution.model_version } : {}),
  };
}

/** Send events; resolves to how many the API accepted, rejects with its error message. */
export async function sendEvents(events: ShopEvent[]): Promise<number> {
  const res = await fetch("/api/events", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(events),
  });
  const body = (await res.json().catch(() => null)) as {
    accepted?: number;
    error?: { message?: string };
  } | null;
  if (res.status !== 202) throw new Error(body?.error?.message ?? `the API answered ${res.status}`);
  return body?.accepted ?? events.length;
}
