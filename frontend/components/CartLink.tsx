"use client";

import Link from "next/link";

import { useCart } from "@/lib/cart";

export function CartLink() {
  const count = useCart().reduce((n, line) => n + line.quantity, 0);
  return (
    <Link href="/cart" className="cart-link" data-testid="cart-link">
      Cart <span className="badge" aria-label={`${count} items`}>{count}</span>
    </Link>
  );
}
