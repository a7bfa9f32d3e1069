import type { ReactNode } from "react";

import { ProductCard } from "./ProductCard";
import { productHref } from "@/lib/links";
import type { Attribution, ListedProduct } from "@/lib/types";

interface Props {
  /** Used for the heading's id, test ids and the links' `from`. */
  id: string;
  title: string;
  subtitle?: ReactNode;
  items: ListedProduct[];
  attribution?: Attribution;
  timing?: string;
  empty?: string;
  extra?: Record<string, string>;
}

/** A titled grid of products with the reason each one is shown. */
export function ProductList({ id, title, subtitle, items, attribution = {}, timing, empty, extra }: Props) {
  return (
    <section className="list" aria-labelledby={`${id}-title`} data-testid={`list-${id}`} {...extra}>
      <h2 id={`${id}-title`}>{title}</h2>
      {subtitle && <p className="subtitle">{subtitle}</p>}
      {items.length === 0 ? (
        <p className="empty">{empty ?? "Nothing to show yet."}</p>
      ) : (
        <ul className="grid row-on-phone">
          {items.map(({ product, reason }, i) => (
            <li key={product.item_id}>
              <ProductCard
                product={product}
                reason={reason}
                href={productHref(product.item_id, id, attribution)}
                timing={i === 0 ? timing : undefined}
              />
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
