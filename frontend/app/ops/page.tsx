import type { Metadata } from "next";

import { OpsConsole } from "@/components/OpsConsole";

export const metadata: Metadata = { title: "Operations", robots: { index: false, follow: false } };

/** The operator's page: models, traffic, the canary, drift, the audit trail and the overrides.
 * Everything is fetched in the browser with the admin token the operator pastes (see
 * components/OpsConsole.tsx); the server renders only the empty frame. */
export default function OpsPage() {
  return (
    <>
      <h1>Operations</h1>
      <OpsConsole />
    </>
  );
}
