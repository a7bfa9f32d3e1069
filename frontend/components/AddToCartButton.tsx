"use client";

import Link from "next/link";
import { useState } from "react";

import { useShopperId } from "./ShopperProvider";
import { addToCart } from "@/lib/cart";
import { sendEvents, shopEvent } from "@/lib/events";
import { formatPrice } from "@/lib/format";
import type { Attribution, Product } from "@/lib/types";

interface Props {
  products: Product[];
  attribution: Attribution;
  label?: string;
  testId?: string;
}

/** Adds one product (or a bundle) to the cart and sends an `add_to_cart` event for each. */
export function AddToCartButton({ products, attribution, label, testId = "add-to-cart" }: Props) {
  const userId = useShopperId();
  const [status, setStatus] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const total = products.reduce((sum, p) => sum + p.price, 0);

  async function add() {
    setBusy(true);
    products.forEach((p) => addToCart(p, attribution));
    try {
      await sendEvents(products.map((p) => shopEvent(userId, "add_to_cart", p, attribution)));
      const what = products.length === 1 ? "Added to your cart" : `Added ${products.length} items to your cart`;
      setStatus({ ok: true, text: what });
    } catch (err) {
      setStatus({ ok: false, text: `In your cart, but the event was not recorded: ${String(err)}` });
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="add-to-cart">
      <button type="button" className="primary" onClick={add} disabled={busy} data-testid={testId}>
        {label ?? "Add to cart"}
        {products.length > 1 && ` (${formatPrice(total)})`}
      </button>
      <p className={status?.ok === false ? "status error" : "status"} role="status">
        {status?.text}
        {status?.ok && (
          <>
            {" "}
            · <Link href="/cart">View cart</Link>
          </>
        )}
      </p>
    </div>
  );
}
