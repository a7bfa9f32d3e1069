/** The shapes of the Recommndr API's answers (see recommndr/serving/app.py). */

export interface Product {
  item_id: number;
  title: string;
  category_l1: string;
  category_l2: string;
  category_l3: string;
  brand: string;
  price: number;
}

export interface ScoredItem {
  item_id: number;
  score: number;
  reason: string;
}

export interface Recommendations {
  user_id: number;
  model_version: string;
  variant: string;
  cold_start: boolean;
  degraded: string[];
  items: ScoredItem[];
}

export interface ItemList {
  item_id: number;
  model_version: string;
  items: ScoredItem[];
}

export interface PopularList {
  category: string | null;
  model_version: string;
  items: ScoredItem[];
}

/** `GET /trending`: products rising fastest (may hold fewer than k items, or none). */
export type TrendingList = PopularList;

export interface ProductPage {
  total: number;
  page: number;
  page_size: number;
  items: Product[];
}

/** `GET /products?ids=`: the products found, in the requested order, and the ids not found. */
export interface ProductsByIds extends ProductPage {
  missing: number[];
}

export interface Category {
  name: string;
  count: number;
  children?: Category[];
}

export interface Shopper {
  user_id: number;
  events: number;
  favourite_category: string;
}

export type EventType = "view" | "add_to_cart" | "purchase";

export interface ShopEvent {
  user_id: number;
  item_id: number;
  event_type: EventType;
  session_id?: number;
  price?: number;
  quantity?: number;
  variant?: string;
  model_version?: string;
}

/** Which model (and A/B variant, for personal lists) served a list: carried into the events. */
export interface Attribution {
  model_version?: string;
  variant?: string;
}

/** A product of a list, with the reason it is shown. */
export interface ListedProduct {
  product: Product;
  reason: string;
}

/** What served one list on the page, for the model panel. */
export interface ServedList {
  name: string;
  model_version: string;
  variant?: string;
  note?: string;
}
