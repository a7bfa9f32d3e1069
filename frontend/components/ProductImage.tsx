import Image from "next/image";

import { placeholderSvg } from "@/lib/placeholder";
import type { Product } from "@/lib/types";

/** The product's placeholder picture (an inline SVG data URL: no network, never optimised). */
export function ProductImage({ product, size = "card" }: { product: Product; size?: "card" | "large" }) {
  const [width, height] = size === "large" ? [480, 360] : [160, 120];
  return (
    <Image
      className="product-image"
      src={placeholderSvg(product)}
      alt={`${product.title}: ${product.category_l2} by ${product.brand}`}
      width={width}
      height={height}
    />
  );
}
