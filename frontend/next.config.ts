import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  reactStrictMode: true,
  poweredByHeader: false,
  // Azure Static Web Apps (hybrid Next.js) deploys the smaller standalone server; `next start`, as
  // `make demo` and the tests use it, needs the regular output.
  output: process.env.RECOMMNDR_STANDALONE === "1" ? "standalone" : undefined,
};

export default nextConfig;
