import { ModelPanel } from "@/components/ModelPanel";
import { ProductList } from "@/components/ProductList";
import { getCategories, getPopular, getRecommendations, getTrending, withProductsEach } from "@/lib/api";
import { currentShopper } from "@/lib/shopper";
import type { Category, ScoredItem } from "@/lib/types";

const K = 10;

function largest(categories: Category[]): string | undefined {
  return [...categories].sort((a, b) => b.count - a.count)[0]?.name;
}

/** The first `K` items not already shown higher up the page (each row asks for 2K). */
function unseen(items: ScoredItem[], shown: Set<number>): ScoredItem[] {
  const fresh = items.filter((it) => !shown.has(it.item_id)).slice(0, K);
  fresh.forEach((it) => shown.add(it.item_id));
  return fresh;
}

export default async function HomePage() {
  const { userId, shopper } = await currentShopper();
  // "Popular in": the shopper's favourite category; for a new shopper, the biggest one
  const category = shopper
    ? Promise.resolve(shopper.favourite_category)
    : getCategories().then((r) => largest(r.categories));
  const [recs, trending, popularIn] = await Promise.all([
    getRecommendations(userId, K),
    getTrending(2 * K),
    category.then((c) => (c ? getPopular(2 * K, c) : null)),
  ]);
  // a product appears once on the page (a new shopper's recommendations are the top popular items)
  const shown = new Set(recs.items.map((it) => it.item_id));
  let trendingRow = unseen(trending.items, shown);
  // little data (or only products already picked above): the most popular ones instead, said so
  const fallback = trendingRow.length === 0 ? await getPopular(2 * K) : null;
  if (fallback) trendingRow = unseen(fallback.items, shown);
  const popularRow = popularIn ? unseen(popularIn.items, shown) : [];
  // one /products?ids= call for the whole page
  const [recItems, trendingItems, popularItems] = await withProductsEach([recs.items, trendingRow, popularRow]);
  const trendingSource = fallback ?? trending;
  const personal = { variant: recs.variant, model_version: recs.model_version };

  return (
    <>
      <h1 className="visually-hidden">Recommndr shop</h1>
      <ProductList
        id="recommended"
        title="Recommended for you"
        subtitle={
          recs.cold_start
            ? "You are new here: these are the most popular picks until we learn what you like."
            : `Picked for shopper ${userId} from what they viewed and bought.`
        }
        items={recItems}
        attribution={personal}
        timing="recommendations"
        extra={{ "data-cold-start": String(recs.cold_start), "data-user-id": String(userId) }}
      />
      <ProductList
        id="trending"
        title="Trending"
        subtitle={
          fallback
            ? trending.items.length === 0
              ? "Nothing is trending yet (too few views and purchases last week), so these are the most popular products lately, beyond the picks above."
              : "Everything trending is already among the picks above, so these are the most popular products lately."
            : "Rising fastest: last week's daily views and purchases against the month's, beyond the picks above."
        }
        items={trendingItems}
        attribution={{ model_version: trendingSource.model_version }}
        extra={{ "data-source": fallback ? "popular" : "trending" }}
      />
      {popularIn?.category && (
        <ProductList
          id="popular-in-category"
          title={`Popular in ${popularIn.category}`}
          items={popularItems}
          attribution={{ model_version: popularIn.model_version }}
        />
      )}
      <ModelPanel
        lists={[
          {
            name: "Recommended for you",
            model_version: recs.model_version,
            variant: recs.variant,
            note: [recs.cold_start ? "cold start" : "", ...recs.degraded].filter(Boolean).join(", ") || undefined,
          },
          {
            name: "Trending",
            model_version: trendingSource.model_version,
            note: fallback ? "popularity: nothing trending" : "trending",
          },
          ...(popularIn?.category
            ? [{ name: `Popular in ${popularIn.category}`, model_version: popularIn.model_version, note: "popularity" }]
            : []),
        ]}
      />
    </>
  );
}
