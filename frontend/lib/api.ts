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
  ProductsByIds,
  Recommendations,
  ScoredItem,
  Shopper,
  TrendingList,
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

/** One product (the product page); cached for the duration of a request. */
export const getProduct = cache((itemId: number) => get<Product>(`/products/${itemId}`));

/** `GET /products?ids=` takes at most this many ids. */
const MAX_IDS = 100;

/** Products by id: one `GET /products?ids=` call per 100 distinct ids (none for none); ids the
 * catalogue does not have are left out of the map. */
async function productsById(ids: number[]): Promise<Map<number, Product>> {
  const unique = [...new Set(ids)];
  const chunks: number[][] = [];
  for (let i = 0; i < unique.length; i += MAX_IDS) chunks.push(unique.slice(i, i + MAX_IDS));
  const pages = await Promise.all(chunks.map((c) => get<ProductsByIds>("/products", { ids: c.join(",") })));
  return new Map(pages.flatMap((p) => p.items.map((product) => [product.item_id, product] as const)));
}

/**
 * The products of several lists with one `/products?ids=` call for all of them (a page's lists
 * share it); each list keeps its order, and items the catalogue no longer has are dropped.
 */
export async function withProductsEach<L extends ScoredItem[][]>(
  lists: [...L],
): Promise<{ [I in keyof L]: ListedProduct[] }> {
  const products = await productsById(lists.flatMap((items) => items.map((it) => it.item_id)));
  const listed = lists.map((items) =>
    items.flatMap((it) => {
      const product = products.get(it.item_id);
      return product ? [{ product, reason: it.reason }] : [];
    }),
  );
  return listed as { [I in keyof L]: ListedProduct[] };
}

/** The products of one list (one `/products?ids=` call), in order; missing ones are dropped. */
export async function withProducts(items: ScoredItem[]): Promise<ListedProduct[]> {
  const [listed] = await withProductsEach([items]);
  return listed;
}

export const getShoppers = cache((n = 6) => get<{ shoppers: Shopper[] }>("/shoppers", { n }));

export const getCategories = cache(() => get<{ categories: Category[] }>("/categories"));

export function getRecommendations(userId: number, k = 10, category?: string) {
  return get<Recommendations>(`/recommendations/${userId}`, { k, category });
}

export function getPopular(k = 10, category?: string) {
  return get<PopularList>("/popular", { k, category });
}

/** Products rising fastest lately; may hold fewer than `k` items, or none on little data. */
export function getTrending(k = 10, category?: string) {
  return get<TrendingList>("/trending", { k, category });
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
