import Link from "next/link";

import { ProductImage } from "./ProductImage";
import { formatPrice } from "@/lib/format";
import type { Product } from "@/lib/types";

interface Props {
  product: Product;
  href: string;
  reason?: string;
  /** Element Timing identifier, for the browser tests' "list visible" timing. */
  timing?: string;
}

export function ProductCard({ product, href, reason, timing }: Props) {
  return (
    <article className="card" data-testid="product-card" data-item-id={product.item_id}>
      <ProductImage product={product} />
      {/* Element Timing aggregates text at its block: the heading, not the inline link */}
      <h3 className="card-title" elementtiming={timing}>
        <Link href={href}>{product.title}</Link>
      </h3>
      <p className="card-meta">
        <span data-testid="brand">{product.brand}</span> ·{" "}
        <span data-testid="category">{product.category_l1}</span>
      </p>
      <p className="price" data-testid="price">
        {formatPrice(product.price)}
      </p>
      {reason && (
        <p className="reason" data-testid="reason">
          {reason}
        </p>
      )}
    </article>
  );
}
