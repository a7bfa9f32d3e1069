// The Element Timing API's attribute (Chromium): the storefront marks its first recommendation so
// the browser reports when the list was painted (see e2e/storefront.test.mjs).
import "react";

declare module "react" {
  // merging needs the same type parameter as React's declaration, used or not
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  interface HTMLAttributes<T> {
    elementtiming?: string;
  }
}
