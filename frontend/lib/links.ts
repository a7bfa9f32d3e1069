/** Product links carry the list that showed the product, so its view, add-to-cart and purchase
 * events name the model version (and, for personal lists, the A/B variant) that earned them. */
import type { Attribution } from "./types";

export function productHref(itemId: number, list: string, attribution: Attribution = {}): string {
  const params = new URLSearchParams({ from: list });
  if (attribution.variant) params.set("variant", attribution.variant);
  if (attribution.model_version) params.set("model_version", attribution.model_version);
  return `/products/${itemId}?${params.toString()}`;
}

const SAFE = /^[\w.-]{1,64}$/;

export function attributionFrom(params: Record<string, string | string[] | undefined>): Attribution {
  const pick = (key: string) => {
    const v = params[key];
    return typeof v === "string" && SAFE.test(v) ? v : undefined;
  };
  return { variant: pick("variant"), model_version: pick("model_version") };
}
