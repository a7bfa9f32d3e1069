/** Server-side client of the Recommndr API (server components call it directly). */
import { cache } from "react";

import { apiUrl } from "./config";
import type {
  Category,
  ItemList,
  ListedProduct,
  PopularList,
  Product,
  ProductPage,
  Recommendations,
  ScoredItem,
  Shopper,
} from "./types";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

type Query = Record<string, string | number | undefined | null>;

async function get<T>(path: string, query: Query = {}): Promise<T> {
  const url = new URL(apiUrl() + path);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
  }
  let res: Response;
  try {
    res = await fetch(url, { cache: "no-store", headers: { accept: "application/json" } });
  } catch (err) {
    throw new ApiError(502, `the Recommndr API at ${apiUrl()} is unreachable (${String(err)})`);
  }
  if (!res.ok) {
    const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
    throw new ApiError(res.status, body?.error?.message ?? `${path} answered ${res.status}`);
  }
  return (await res.json()) as T;
}

/** One product; cached for the duration of a request, so lists sharing a product fetch it once. */
export const getProduct = cache((itemId: number) => get<Product>(`/products/${itemId}`));

/** The products of a list, fetched in parallel; items the catalogue no longer has are dropped. */
export async function withProducts(items: ScoredItem[]): Promise<ListedProduct[]> {
  const products = await Promise.all(
    items.map((it) => getProduct(it.item_id).catch((err: unknown) => {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    })),
  );
  return items.flatMap((it, i) => {
    const product = products[i];
    return product ? [{ product, reason: it.reason }] : [];
  });
}

export const getShoppers = cache((n = 6) => get<{ shoppers: Shopper[] }>("/shoppers", { n }));

export const getCategories = cache(() => get<{ categories: Category[] }>("/categories"));

export function getRecommendations(userId: number, k = 10, category?: string) {
  return get<Recommendations>(`/recommendations/${userId}`, { k, category });
}

export function getPopular(k = 10, category?: string) {
  return get<PopularList>("/popular", { k, category });
}

export function getSimilar(itemId: number, k = 10) {
  return get<ItemList>(`/similar_items/${itemId}`, { k });
}

export function getFrequentlyBoughtTogether(itemId: number, k = 5) {
  return get<ItemList>(`/frequently_bought_together/${itemId}`, { k });
}

export interface ProductFilters {
  category?: string;
  q?: string;
  min_price?: number;
  max_price?: number;
  page?: number;
  page_size?: number;
}

export function getProducts(filters: ProductFilters) {
  return get<ProductPage>("/products", { ...filters });
}
