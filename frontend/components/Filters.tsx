import Link from "next/link";

import type { Category } from "@/lib/types";

export interface FilterValues {
  category?: string;
  q?: string;
  min_price?: number;
  max_price?: number;
}

/** The catalogue's filters: a plain GET form (works without JavaScript, fully keyboard usable). */
export function Filters({ categories, values }: { categories: Category[]; values: FilterValues }) {
  return (
    <form className="filters" action="/products" method="get" role="search" aria-label="Filter products">
      <div className="field grow">
        <label htmlFor="q">Search</label>
        <input id="q" name="q" type="search" defaultValue={values.q ?? ""} placeholder="Title, brand or category" />
      </div>
      <div className="field">
        <label htmlFor="category">Category</label>
        <select id="category" name="category" defaultValue={values.category ?? ""}>
          <option value="">All categories</option>
          {categories.map((c) => (
            <optgroup key={c.name} label={c.name}>
              <option value={c.name}>All {c.name} ({c.count})</option>
              {(c.children ?? []).map((child) => (
                <option key={child.name} value={child.name}>
                  {child.name} ({child.count})
                </option>
              ))}
            </optgroup>
          ))}
        </select>
      </div>
      <div className="field price">
        <label htmlFor="min_price">Min price</label>
        <input id="min_price" name="min_price" type="number" min="0" step="any" inputMode="decimal"
          defaultValue={values.min_price ?? ""} />
      </div>
      <div className="field price">
        <label htmlFor="max_price">Max price</label>
        <input id="max_price" name="max_price" type="number" min="0" step="any" inputMode="decimal"
          defaultValue={values.max_price ?? ""} />
      </div>
      <div className="field actions">
        <button type="submit" className="primary">Apply</button>
        <Link href="/products">Clear</Link>
      </div>
    </form>
  );
}
