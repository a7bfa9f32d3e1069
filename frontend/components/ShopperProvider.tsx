"use client";

import { createContext, useContext, type ReactNode } from "react";

const ShopperContext = createContext<number | null>(null);

/** The current shopper's id for client components (the server decides it from the cookie). */
export function ShopperProvider({ userId, children }: { userId: number; children: ReactNode }) {
  return <ShopperContext.Provider value={userId}>{children}</ShopperContext.Provider>;
}

export function useShopperId(): number {
  const id = useContext(ShopperContext);
  if (id === null) throw new Error("useShopperId outside ShopperProvider");
  return id;
}
