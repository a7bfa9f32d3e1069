import type { Metadata } from "next";
import Link from "next/link";
import { notFound } from "next/navigation";

import { AddToCartButton } from "@/components/AddToCartButton";
import { Carousel } from "@/components/Carousel";
import { ModelPanel } from "@/components/ModelPanel";
import { ProductCard } from "@/components/ProductCard";
import { ProductImage } from "@/components/ProductImage";
import { ViewTracker } from "@/components/ViewTracker";
import { ApiError, getFrequentlyBoughtTogether, getProduct, getSimilar, withProductsEach } from "@/lib/api";
import { formatPrice } from "@/lib/format";
import { attributionFrom, productHref } from "@/lib/links";
import type { Product } from "@/lib/types";

interface Props {
  params: Promise<{ id: string }>;
  searchParams: Promise<Record<string, string | string[] | undefined>>;
}

async function load(id: string): Promise<Product> {
  if (!/^\d{1,15}$/.test(id)) notFound();
  try {
    return await getProduct(Number(id));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) notFound();
    throw err;
  }
}

export async function generateMetadata({ params }: Props): Promise<Metadata> {
  const product = await load((await params).id);
  return { title: product.title };
}

export default async function ProductDetailPage({ params, searchParams }: Props) {
  const [{ id }, sp] = await Promise.all([params, searchParams]);
  const product = await load(id);
  const [similar, fbt] = await Promise.all([
    getSimilar(product.item_id, 10),
    getFrequentlyBoughtTogether(product.item_id, 5),
  ]);
  const [similarItems, fbtItems] = await withProductsEach([similar.items, fbt.items]);
  const attribution = attributionFrom(sp);
  const categoryHref = (c: string) => `/products?${new URLSearchParams({ category: c }).toString()}`;

  return (
    <>
      <ViewTracker product={product} attribution={attribution} />
      <nav aria-label="Breadcrumb" className="breadcrumb">
        <ol>
          <li>
            <Link href="/products">Catalogue</Link>
          </li>
          <li>
            <Link href={categoryHref(product.category_l1)}>{product.category_l1}</Link>
          </li>
          <li>
            <Link href={categoryHref(product.category_l2)}>{product.category_l2}</Link>
          </li>
        </ol>
      </nav>
      <article className="product" data-testid="product-detail" data-item-id={product.item_id}>
        <ProductImage product={product} size="large" />
        <div className="product-info">
          <h1>{product.title}</h1>
          <dl className="facts">
            <dt>Brand</dt>
            <dd>{product.brand}</dd>
            <dt>Category</dt>
            <dd>
              {product.category_l1} › {product.category_l2} › {product.category_l3}
            </dd>
            <dt>Product id</dt>
            <dd>{product.item_id}</dd>
          </dl>
          <p className="price large">{formatPrice(product.price)}</p>
          <AddToCartButton products={[product]} attribution={attribution} />
        </div>
      </article>

      <section className="list" aria-labelledby="similar-title" data-testid="list-similar">
        <h2 id="similar-title">Similar products</h2>
        {similarItems.length === 0 ? (
          <p className="empty">No similar products yet.</p>
        ) : (
          <Carousel label="Similar products">
            {similarItems.map(({ product: p, reason }, i) => (
              <li key={p.item_id}>
                <ProductCard
                  product={p}
                  reason={reason}
                  href={productHref(p.item_id, "similar", { model_version: similar.model_version })}
                  timing={i === 0 ? "similar" : undefined}
                />
              </li>
            ))}
          </Carousel>
        )}
      </section>

      <section className="list" aria-labelledby="fbt-title" data-testid="list-fbt">
        <h2 id="fbt-title">Frequently bought together</h2>
        {fbtItems.length === 0 ? (
          <p className="empty">No other product is often bought with this one yet.</p>
        ) : (
          <>
            <ul className="grid bundle">
              {fbtItems.map(({ product: p, reason }) => (
                <li key={p.item_id}>
                  <ProductCard
                    product={p}
                    reason={reason}
                    href={productHref(p.item_id, "fbt", { model_version: fbt.model_version })}
                  />
                </li>
              ))}
            </ul>
            <AddToCartButton
              products={[product, ...fbtItems.map((x) => x.product)]}
              attribution={attribution.variant ? attribution : { model_version: fbt.model_version }}
              label={`Add all ${fbtItems.length + 1} to cart`}
              testId="add-all"
            />
          </>
        )}
      </section>

      <ModelPanel
        lists={[
          { name: "Similar products", model_version: similar.model_version },
          { name: "Frequently bought together", model_version: fbt.model_version },
        ]}
      />
    </>
  );
}
