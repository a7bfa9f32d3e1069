/**
 * Server side, Node.js only: who is on the other end of each request's socket, as Next.js sees it.
 *
 * Next.js gives a route handler no socket address: it only fills `X-Forwarded-For` with it when
 * the request has none, so a caller that sends its own header chooses what a handler reads there.
 * The admin route (`app/api/admin/[...path]/route.ts`) must know the real caller, so
 * `instrumentation.ts` calls `stampPeers()` once at start: on Node's `http.server.request.start`
 * diagnostics channel, published for every request before Next.js sees it, the socket's address is
 * written into PEER_HEADER together with a random nonce of this process, replacing whatever the
 * caller sent there. `peerOf()` believes the header only with that nonce: a request parsed before
 * the stamp was installed, or a forged header, yields null (the admin route then refuses).
 */
import { randomBytes } from "node:crypto";
import { subscribe } from "node:diagnostics_channel";
import type { IncomingMessage } from "node:http";
import { isIP, type Socket } from "node:net";

export const PEER_HEADER = "x-recommndr-peer";
/** Shared through globalThis: the instrumentation hook and the route are separate bundles. */
const NONCE = Symbol.for("recommndr.peer-nonce");

type WithNonce = typeof globalThis & { [NONCE]?: string };

/** Install the stamp (once per process). */
export function stampPeers(): void {
  const g = globalThis as WithNonce;
  if (g[NONCE]) return;
  const nonce = randomBytes(18).toString("base64url");
  subscribe("http.server.request.start", (message) => {
    const { request, socket } = message as { request: IncomingMessage; socket: Socket };
    const address = socket.remoteAddress;
    if (address) request.headers[PEER_HEADER] = `${nonce} ${address}`;
    else delete request.headers[PEER_HEADER];
  });
  g[NONCE] = nonce;
}

/** An address as the API's allow-list compares it: IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a
 * dual-stack socket reports) as plain IPv4; null unless it is an IP address. */
export function normaliseAddress(address: string | null | undefined): string | null {
  if (!address) return null;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const plain = mapped?.[1] ?? address;
  return isIP(plain) ? plain : null;
}

/** The socket address of the request with these headers, or null when it was not stamped by this
 * process (no stamp installed, a request from before it, or a header the caller made up). */
export function peerOf(headers: Headers): string | null {
  const nonce = (globalThis as WithNonce)[NONCE];
  const value = headers.get(PEER_HEADER);
  if (!nonce || !value) return null;
  const space = value.indexOf(" ");
  if (space < 0 || value.slice(0, space) !== nonce) return null;
  return normaliseAddress(value.slice(space + 1));
}
