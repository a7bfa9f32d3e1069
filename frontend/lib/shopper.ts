/** The current demo shopper (server side): the cookie's, else the first real shopper. */
import { cookies } from "next/headers";
import { cache } from "react";

import { getShoppers } from "./api";
import { SHOPPER_COOKIE, parseShopperId } from "./shopper-cookie";
import type { Shopper } from "./types";

export interface CurrentShopper {
  userId: number;
  /** The real shopper behind the id; undefined for a brand-new one. */
  shopper: Shopper | undefined;
  shoppers: Shopper[];
}

export const currentShopper = cache(async (): Promise<CurrentShopper> => {
  const jar = await cookies();
  // the layout renders this too: an API that is down must leave the page's own error to show
  const shoppers = await getShoppers(6).then(
    (r) => r.shoppers,
    (err: unknown) => {
      console.error("GET /shoppers failed:", err);
      return [] as Shopper[];
    },
  );
  const userId = parseShopperId(jar.get(SHOPPER_COOKIE)?.value) ?? shoppers[0]?.user_id ?? 0;
  return { userId, shopper: shoppers.find((s) => s.user_id === userId), shoppers };
});
