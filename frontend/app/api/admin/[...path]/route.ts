/**
 * The ops page's way to the API's admin endpoints, kept apart from the shop's proxy
 * (`app/api/[...path]/route.ts`), which passes none of them.
 *
 * Why a route of its own: the API guards admin endpoints with a JWT *and* an IP allow-list. Called
 * from this server, every request would come from this server's address, which on one machine is
 * loopback and so inside the default allow-list: the storefront would turn the allow-list into
 * "anyone who can reach the shop". So this route says who the caller is, and the API believes it
 * only because it is told to trust this server as a proxy:
 *
 * - Off unless `RECOMMNDR_ADMIN_PROXY` is set (403 `admin_proxy_disabled`): `on`, or the local
 *   address to call the API from (e.g. `127.0.0.2`, so that the API can trust exactly that
 *   address and every other local client of the API is still seen as itself). The API must then
 *   list that address in `RECOMMNDR_TRUSTED_PROXIES`; otherwise it sees this server as the caller.
 * - Only these endpoints pass: GET `models/canary`, `models/control`, `models/audit`,
 *   `models/retrain`; POST `models/pause`, `models/promote`, `models/rollback`, `models/retrain`
 *   (the API's own settings say whether a retrain may start). Not the workflow's `PUT models/canary`,
 *   the test-only `models/fault`, `models/traffic` or `monitoring/window` (404 `not_found`).
 * - Only with `Authorization: Bearer <JWT>` (three base64url parts, at most 8 KiB; else 401
 *   `unauthorized`, and the API is not called). That header is forwarded; no other header of the
 *   caller's (cookies included) is.
 * - `X-Forwarded-For` is replaced by one address, the caller's: the socket peer as Next.js sees it
 *   (`lib/peer.ts`: stamped on every request by `instrumentation.ts`, since Next.js itself only
 *   fills `X-Forwarded-For` when the caller sent none), or, when that peer is one of
 *   `RECOMMNDR_STOREFRONT_TRUSTED_PROXIES` (a reverse proxy in front of this server), the last hop
 *   of its `X-Forwarded-For`. Whatever else the caller wrote there is dropped, so nobody can claim
 *   an address inside the allow-list. An unknown caller is refused (403 `forbidden`).
 * - A POST passes the shop's write checks (`lib/proxy.ts`): Origin of this host (403
 *   `forbidden_origin`), JSON (415 `unsupported_media_type`), at most MAX_BODY bytes (413
 *   `payload_too_large`). A cross-site page can send neither an Authorization header nor a JSON
 *   body without a CORS preflight, which this route never grants (Next.js answers OPTIONS with no
 *   Access-Control-Allow-* header).
 *
 * The API still checks the token (signature, issuer, audience, expiry, lifetime) and the caller's
 * address against its allow-list: this route adds no power, it only keeps the caller's identity.
 * Where the API runs in the Azure Functions host, whose front end appends the address it sees,
 * the API sees this server's outbound address instead: list it only if this server is itself
 * inside the admin network (e.g. the storefront run on an operator's machine).
 */
import type { NextRequest } from "next/server";

import { adminProxySetting, callApi, callerAddress, trustedProxies, UpstreamError } from "@/lib/admin-proxy";
import { apiUrl } from "@/lib/config";
import { checkedWrite, error } from "@/lib/proxy";

const READABLE = [/^models\/canary$/, /^models\/control$/, /^models\/audit$/, /^models\/retrain$/];
const WRITABLE = [/^models\/pause$/, /^models\/promote$/, /^models\/rollback$/, /^models\/retrain$/];
/** Bytes: an admin body is a reason of at most 500 characters and a flag. */
const MAX_BODY = 16_384;
const BEARER = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/i;
const MAX_AUTHORIZATION = 8_192;

type Context = { params: Promise<{ path: string[] }> };

async function forward(request: NextRequest, { params }: Context): Promise<Response> {
  const setting = adminProxySetting();
  if (setting.on === false) {
    return error(
      403,
      "admin_proxy_disabled",
      "the storefront does not pass admin requests: set RECOMMNDR_ADMIN_PROXY (see frontend/README.md)",
    );
  }
  const trusted = trustedProxies();
  if (setting.on === "invalid" || trusted === null) {
    return error(
      500,
      "admin_proxy_misconfigured",
      "RECOMMNDR_ADMIN_PROXY must be off, on or an IP address, and RECOMMNDR_STOREFRONT_TRUSTED_PROXIES " +
        "a list of networks (CIDR)",
    );
  }
  const path = (await params).path.join("/");
  const allowed = request.method === "POST" ? WRITABLE : READABLE;
  if (!allowed.some((re) => re.test(path))) {
    return error(404, "not_found", `${request.method} /${path} is not available through the storefront`);
  }
  const authorization = request.headers.get("authorization") ?? "";
  const token = authorization.length <= MAX_AUTHORIZATION ? BEARER.exec(authorization.trim())?.[1] : undefined;
  if (!token) {
    return error(401, "unauthorized", "an admin token is required (Authorization: Bearer <JWT>)");
  }
  const caller = callerAddress(request.headers, trusted);
  if (caller === null) return error(403, "forbidden", "the client address is unknown");

  const headers: Record<string, string> = {
    accept: "application/json",
    authorization: `Bearer ${token}`,
    "x-forwarded-for": caller,
  };
  let body: Uint8Array | null = null;
  if (request.method === "POST") {
    const checked = await checkedWrite(request, MAX_BODY);
    if (checked instanceof Response) return checked;
    body = checked;
    headers["content-type"] = "application/json";
  }
  const url = new URL(`${apiUrl()}/${path}`);
  if (request.method === "GET") url.search = request.nextUrl.search;
  try {
    const answer = await callApi(url, request.method, headers, body, setting.source);
    return new Response(new Uint8Array(answer.body), {
      status: answer.status,
      headers: { "content-type": answer.contentType, "cache-control": "no-store" },
    });
  } catch (err) {
    const message = err instanceof UpstreamError ? err.message : String(err);
    return error(502, "api_unreachable", `the Recommndr API is unreachable: ${message}`);
  }
}

export const GET = forward;
export const POST = forward;
