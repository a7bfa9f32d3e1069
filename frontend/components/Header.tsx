import Link from "next/link";

import { CartLink } from "./CartLink";
import { ShopperSwitcher } from "./ShopperSwitcher";
import type { Shopper } from "@/lib/types";

export function Header({ shoppers, current }: { shoppers: Shopper[]; current: number }) {
  return (
    <header className="site-header">
      <div className="container header-row">
        <Link href="/" className="brand">
          Recommndr<span aria-hidden="true"> shop</span>
        </Link>
        <nav aria-label="Main">
          <ul className="nav">
            <li>
              <Link href="/">Home</Link>
            </li>
            <li>
              <Link href="/products">Catalogue</Link>
            </li>
            <li>
              <CartLink />
            </li>
          </ul>
        </nav>
        <ShopperSwitcher key={current} shoppers={shoppers} current={current} />
      </div>
    </header>
  );
}
