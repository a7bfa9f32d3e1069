"use client";

import Link from "next/link";
import { useState } from "react";

import { ProductImage } from "./ProductImage";
import { useShopperId } from "./ShopperProvider";
import { cartTotal, clearCart, setQuantity, useCart } from "@/lib/cart";
import { sendEvents, shopEvent } from "@/lib/events";
import { formatPrice } from "@/lib/format";
import { productHref } from "@/lib/links";

type Order = { state: "idle" | "placing" } | { state: "done"; items: number; total: number } | {
  state: "failed";
  message: string;
};

/** The cart and a checkout without payment: one `purchase` event per line. */
export function CartView() {
  const lines = useCart();
  const userId = useShopperId();
  const [order, setOrder] = useState<Order>({ state: "idle" });

  async function checkout() {
    setOrder({ state: "placing" });
    try {
      await sendEvents(lines.map((l) => shopEvent(userId, "purchase", l.product, l.attribution, l.quantity)));
      const items = lines.reduce((n, l) => n + l.quantity, 0);
      setOrder({ state: "done", items, total: cartTotal(lines) });
      clearCart();
    } catch (err) {
      setOrder({ state: "failed", message: err instanceof Error ? err.message : String(err) });
    }
  }

  if (order.state === "done") {
    return (
      <div className="confirmation" role="status" data-testid="order-confirmation">
        <h2>Thank you for your order</h2>
        <p>
          {order.items} {order.items === 1 ? "item" : "items"}, {formatPrice(order.total)}. No payment was taken: this
          is a demo.
        </p>
        <Link href="/">Back to the shop</Link>
      </div>
    );
  }
  if (lines.length === 0) {
    return (
      <p className="empty">
        Your cart is empty. <Link href="/products">Browse the catalogue</Link>.
      </p>
    );
  }
  return (
    <div className="cart">
      <ul className="cart-lines">
        {lines.map((l) => (
          <li key={l.product.item_id} className="cart-line" data-testid="cart-line">
            <ProductImage product={l.product} />
            <div className="cart-line-body">
              <Link href={productHref(l.product.item_id, "cart", l.attribution)}>{l.product.title}</Link>
              <p className="card-meta">
                {l.product.brand} · {formatPrice(l.product.price)}
              </p>
            </div>
            <label className="qty">
              <span>Quantity</span>
              <input
                type="number"
                min={1}
                max={99}
                value={l.quantity}
                onChange={(e) => {
                  const q = Math.floor(Number(e.target.value));
                  if (Number.isFinite(q) && q >= 1) setQuantity(l.product.item_id, Math.min(q, 99));
                }}
              />
            </label>
            <button
              type="button"
              onClick={() => setQuantity(l.product.item_id, 0)}
              aria-label={`Remove ${l.product.title}`}
            >
              Remove
            </button>
          </li>
        ))}
      </ul>
      <p className="total">
        Total: <strong data-testid="cart-total">{formatPrice(cartTotal(lines))}</strong>
      </p>
      {order.state === "failed" && (
        <p className="status error" role="alert">
          The order was not placed: {order.message}
        </p>
      )}
      <button
        type="button"
        className="primary"
        onClick={checkout}
        disabled={order.state === "placing"}
        data-testid="checkout"
      >
        {order.state === "placing" ? "Placing order…" : "Place order (no payment)"}
      </button>
    </div>
  );
}
