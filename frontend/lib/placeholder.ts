/** Placeholder product pictures made locally: an SVG in the category's colour with initials. */
import type { Product } from "./types";

const COLOURS: Record<string, string> = {
  Electronics: "#2f5d8a",
  "Home & Kitchen": "#8a5a2f",
  "Clothing & Shoes": "#7a3b69",
  "Beauty & Personal Care": "#a8435a",
  "Sports & Outdoors": "#2f7a4f",
  "Grocery & Gourmet": "#6b7a2f",
  "Toys & Games": "#b0642a",
  Books: "#4b4f8a",
};

export function categoryColour(category: string): string {
  const known = COLOURS[category];
  if (known) return known;
  let hash = 0;
  for (const ch of category) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 45% 38%)`;
}

export function initials(product: Product): string {
  const first = (s: string) => s.trim().charAt(0).toUpperCase();
  return `${first(product.brand)}${first(product.category_l2 || product.category_l1)}`;
}

export function placeholderSvg(product: Product): string {
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 160 120">` +
    `<rect width="160" height="120" fill="${categoryColour(product.category_l1)}"/>` +
    `<text x="80" y="74" font-family="system-ui,sans-serif" font-size="40" font-weight="600" ` +
    `fill="#fff" text-anchor="middle">${initials(product)}</text></svg>`;
  return `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
}
