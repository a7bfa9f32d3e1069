import type { Metadata } from "next";

import { Filters, type FilterValues } from "@/components/Filters";
import { Pagination } from "@/components/Pagination";
import { ProductCard } from "@/components/ProductCard";
import { ApiError, getCategories, getProducts } from "@/lib/api";
import { positiveNumber, text } from "@/lib/format";
import { productHref } from "@/lib/links";
import type { ProductPage } from "@/lib/types";

export const metadata: Metadata = { title: "Catalogue" };

const PAGE_SIZE = 24;

type SearchParams = Record<string, string | string[] | undefined>;

export default async function CataloguePage({ searchParams }: { searchParams: Promise<SearchParams> }) {
  const sp = await searchParams;
  const values: FilterValues = {
    category: text(sp.category),
    q: text(sp.q),
    min_price: positiveNumber(sp.min_price),
    max_price: positiveNumber(sp.max_price),
  };
  const page = Math.max(1, Math.floor(positiveNumber(sp.page) ?? 1));
  const [{ categories }, result] = await Promise.all([
    getCategories(),
    getProducts({ ...values, page, page_size: PAGE_SIZE }).catch((err: unknown) => {
      if (err instanceof ApiError && err.status === 422) return err; // e.g. min price above max
      throw err;
    }),
  ]);
  const query = Object.fromEntries(
    Object.entries(values).flatMap(([k, v]) => (v === undefined ? [] : [[k, String(v)]])),
  );

  return (
    <>
      <h1>Catalogue</h1>
      <Filters categories={categories} values={values} />
      {result instanceof ApiError ? (
        <p className="status error" role="alert">
          {result.message}
        </p>
      ) : (
        <Results result={result} query={query} />
      )}
    </>
  );
}

function Results({ result, query }: { result: ProductPage; query: Record<string, string> }) {
  const pages = Math.max(1, Math.ceil(result.total / result.page_size));
  return (
    <section aria-labelledby="results-title" className="list">
      <h2 id="results-title" className="results-count" data-testid="result-count" data-total={result.total}>
        {result.total} {result.total === 1 ? "product" : "products"}
      </h2>
      {result.items.length === 0 ? (
        <p className="empty">No product matches these filters.</p>
      ) : (
        <ul className="grid" data-testid="catalogue-grid">
          {result.items.map((p, i) => (
            <li key={p.item_id}>
              <ProductCard
                product={p}
                href={productHref(p.item_id, "catalogue")}
                timing={i === 0 ? "catalogue" : undefined}
              />
            </li>
          ))}
        </ul>
      )}
      <Pagination page={result.page} pages={pages} query={query} />
    </section>
  );
}
