"use client";

import { useEffect, useRef } from "react";

import { useShopperId } from "./ShopperProvider";
import { sendEvents, shopEvent } from "@/lib/events";
import type { Attribution, Product } from "@/lib/types";

/** Sends one `view` event when a product page is shown. */
export function ViewTracker({ product, attribution }: { product: Product; attribution: Attribution }) {
  const userId = useShopperId();
  const sent = useRef<string | null>(null);
  useEffect(() => {
    const key = `${userId}:${product.item_id}`;
    if (sent.current === key) return; // React's development double effects
    sent.current = key;
    sendEvents([shopEvent(userId, "view", product, attribution)]).catch((err: unknown) => {
      // a lost view must not disturb the shopper; it is only a signal
      console.warn("view event not sent:", err);
    });
  }, [userId, product, attribution]);
  return null;
}
