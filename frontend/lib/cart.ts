/** The cart: kept in localStorage, read through useSyncExternalStore (one source of truth). */
import { useSyncExternalStore } from "react";

import type { Attribution, Product } from "./types";

export interface CartLine {
  product: Product;
  quantity: number;
  /** The list that led to the product (sent with add-to-cart and purchase events). */
  attribution: Attribution;
}

const KEY = "recommndr-cart";
const EMPTY: CartLine[] = [];
const listeners = new Set<() => void>();
let snapshot: { raw: string | null; lines: CartLine[] } = { raw: null, lines: EMPTY };

function parse(raw: string | null): CartLine[] {
  if (!raw) return EMPTY;
  try {
    const lines = JSON.parse(raw) as CartLine[];
    return Array.isArray(lines) ? lines.filter((l) => l?.product && l.quantity > 0) : EMPTY;
  } catch {
    return EMPTY;
  }
}

function read(): CartLine[] {
  const raw = window.localStorage.getItem(KEY);
  if (raw !== snapshot.raw) snapshot = { raw, lines: parse(raw) };
  return snapshot.lines;
}

function write(lines: CartLine[]): void {
  window.localStorage.setItem(KEY, JSON.stringify(lines));
  listeners.forEach((notify) => notify());
}

function subscribe(notify: () => void): () => void {
  const onStorage = (e: StorageEvent) => {
    if (e.key === KEY) notify();
  };
  listeners.add(notify);
  window.addEventListener("storage", onStorage);
  return () => {
    listeners.delete(notify);
    window.removeEventListener("storage", onStorage);
  };
}

export function useCart(): CartLine[] {
  return useSyncExternalStore(subscribe, read, () => EMPTY);
}

export function addToCart(product: Product, attribution: Attribution, quantity = 1): void {
  const lines = read();
  const existing = lines.find((l) => l.product.item_id === product.item_id);
  write(
    existing
      ? lines.map((l) => (l === existing ? { ...l, quantity: l.quantity + quantity } : l))
      : [...lines, { product, quantity, attribution }],
  );
}

export function setQuantity(itemId: number, quantity: number): void {
  write(
    read()
      .map((l) => (l.product.item_id === itemId ? { ...l, quantity } : l))
      .filter((l) => l.quantity > 0),
  );
}

export function clearCart(): void {
  write(EMPTY);
}

export function cartTotal(lines: CartLine[]): number {
  return lines.reduce((sum, l) => sum + l.product.price * l.quantity, 0);
}
