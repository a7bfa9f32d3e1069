import type { Metadata, Viewport } from "next";
import type { ReactNode } from "react";

import "./globals.css";
import { Header } from "@/components/Header";
import { ShopperProvider } from "@/components/ShopperProvider";
import { currentShopper } from "@/lib/shopper";

export const metadata: Metadata = {
  title: { default: "Recommndr shop", template: "%s · Recommndr shop" },
  description: "A demo shop served by the Recommndr recommendation API.",
};

export const viewport: Viewport = { width: "device-width", initialScale: 1 };

export default async function RootLayout({ children }: { children: ReactNode }) {
  const { userId, shoppers } = await currentShopper();
  return (
    <html lang="en">
      <body>
        <a href="#main" className="skip-link">
          Skip to content
        </a>
        <ShopperProvider userId={userId}>
          <Header shoppers={shoppers} current={userId} />
          <main id="main" className="container" tabIndex={-1}>
            {children}
          </main>
        </ShopperProvider>
        <footer className="site-footer container">
          Recommndr demo shop · placeholder products and pictures · no payment is ever taken
        </footer>
      </body>
    </html>
  );
}
